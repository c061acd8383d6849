"""Errors answer in JSON on every machine-facing route, never with an HTML page or a traceback.

A database that cannot be reached (restarting, failing over, out of connections) is not a bug: the request
answers ``503`` with ``Retry-After``, so storefronts, platforms (webhooks) and scripts retry, and nothing was
half-written (every write is one transaction, rolled back with the connection).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError
from werkzeug.exceptions import ServiceUnavailable

from app.logging_setup import masked_path

log = logging.getLogger("popsync.errors")
JSON_PREFIXES = ("/api/", "/storefront/", "/proxy/", "/webhooks/", "/t/", "/healthz", "/readyz", "/metrics")
# Seconds a client is asked to wait after a database outage: a PostgreSQL restart or fail-over takes a few.
DATABASE_RETRY_AFTER = 5
DATABASE_UNAVAILABLE = "the database is unavailable just now; try again shortly"


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached or dropped the connection (retry later),
    rather than a statement popsync got wrong (a bug: 500)."""
    if isinstance(error, sa.exc.DisconnectionError | sa.exc.TimeoutError):
        return True  # a connection the pool could not revive, or no connection free in time
    if isinstance(error, sa.exc.DBAPIError):
        # OperationalError: connection refused or lost, server shutting down, SQLite busy, serialisation.
        lost = isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        return lost or error.connection_invalidated
    return False


def _unavailable_response() -> Response:
    if wants_json():
        response = jsonify({"ok": False, "error": DATABASE_UNAVAILABLE})
        response.status_code = 503
    else:
        response = ServiceUnavailable(DATABASE_UNAVAILABLE).get_response()
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response


def _logged_path() -> str:
    """The request's route template (``/u/<token>``), or its path with tokens masked: never a token."""
    rule = request.url_rule
    return rule.rule if rule is not None else masked_path(request.path)


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if not wants_json():
            return error
        body = {"ok": False, "error": error.description or error.name}
        response = jsonify(body)
        response.status_code = error.code or 500
        for name, value in error.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def on_unexpected_error(error: Exception):  # type: ignore[no-untyped-def]
        if database_unavailable(error):
            # Only the error's class: SQLAlchemy's message quotes the statement and its parameters
            # (personal data).
            cause = type(getattr(error, "orig", None) or error).__name__
            log.warning("database unavailable on %s %s (%s)", request.method, _logged_path(), cause)
            return _unavailable_response()
        # Logged with the route only: request bodies carry personal data and are never logged.
        log.exception("unhandled error on %s %s", request.method, _logged_path())
        if not wants_json():
            return InternalServerError()
        response = jsonify({"ok": False, "error": "internal error"})
        response.status_code = 500
        return response
