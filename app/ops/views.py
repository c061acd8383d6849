"""Operations: liveness and readiness for load balancers and orchestrators, and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import jsonify
from flask import request
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.config import current_settings
from app.db import get_database

bp = Blueprint("ops", __name__)
log = logging.getLogger("popsync.ops")


@bp.get("/healthz")
def healthz() -> Any:
    """The process answers."""
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz() -> Any:
    """The database answers; 503 while it does not."""
    try:
        get_database().ping()
    except SQLAlchemyError as error:
        log.warning("readiness check failed: %s", type(error).__name__)
        response = jsonify({"ok": False, "error": "database unavailable"})
        response.status_code = 503
        return response
    return jsonify({"ok": True})


@bp.get("/metrics")
def prometheus_metrics() -> Any:
    """Prometheus text format, for ``Authorization: Bearer <METRICS_TOKEN>``; 404 while METRICS_TOKEN is
    unset (metrics are off), 401 for a missing or wrong token."""
    token = current_settings().metrics_token
    if not token:
        abort(404)
    offered = request.headers.get("Authorization", "")
    scheme, _, credential = offered.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
        response = jsonify({"ok": False, "error": "metrics need Authorization: Bearer <METRICS_TOKEN>"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = Response(metrics.render(get_database()), mimetype=None, content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
