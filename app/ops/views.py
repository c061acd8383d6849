"""Operations: liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint
from flask import jsonify
from sqlalchemy.exc import SQLAlchemyError

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
