"""Errors answer in JSON on every machine-facing route, never with an HTML page or a traceback."""

from __future__ import annotations

import logging

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

log = logging.getLogger("popsync.errors")
JSON_PREFIXES = ("/api/", "/storefront/", "/proxy/", "/webhooks/", "/t/", "/healthz", "/readyz")


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


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
        # Logged with the route only: request bodies carry personal data and are never logged.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not wants_json():
            return InternalServerError()
        response = jsonify({"ok": False, "error": "internal error"})
        response.status_code = 500
        return response
