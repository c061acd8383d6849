"""Logs: one JSON object a line in production (plain text in development), each carrying the request id.

Every HTTP request gets an id (app/ops/requests.py) kept in a context variable for as long as the request
runs; every log line written meanwhile carries it, and the answer echoes it in ``X-Request-Id``. What is
logged never holds secrets: messages are scrubbed of anything shaped like a token, an API key, a bearer
credential or a signed query parameter before they are written (a net under the rule that code logs ids
and reasons, never bodies, tokens, query strings or cookies).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import TextIO

from app.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("popsync_request_id", default=None)
# An incoming X-Request-Id is kept only when it is this short and plain (a proxy's or a client's id);
# anything else could forge log lines or carry data, and is replaced by a new id.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

# Shapes of secrets that must never reach a log line, whatever the code that logged them meant to do.
_SECRET_PATTERNS = (
    # popsync admin API keys, Shopify tokens (shpat_, shpua_, shpca_, shpss_), refresh tokens
    (re.compile(r"\b(psk|shp[a-z]{2}|shprt)_[A-Za-z0-9_\-]{6,}"), r"\1_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 [redacted]"),
    # signed or secret query parameters: app proxy and install signatures, OAuth codes, ID tokens
    (
        re.compile(
            r"(?i)\b(signature|hmac|sign|code|id_token|access_token|refresh_token|token|state|password)"
            r"=[^&\s\"']+"
        ),
        r"\1=[redacted]",
    ),
)

# What a record carries besides the standard attributes: ``extra={"fields": {...}}`` adds named values.
FIELDS_ATTRIBUTE = "fields"


def new_request_id() -> str:
    return uuid.uuid4().hex


def safe_request_id(value: str | None) -> str | None:
    """The incoming id when it is short and plain, else None (the caller makes a new one)."""
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return None


def current_request_id() -> str | None:
    return REQUEST_ID.get()


# A path segment this long is an opaque token (pixel, click and unsubscribe links): masked wherever a path
# is logged (gunicorn's access log, the error handlers' lines).
LONG_SEGMENT = 40


def masked_path(path: str) -> str:
    """The path with each long segment (an opaque token) replaced by ``…``, cut to 200 characters."""
    return "/".join("…" if len(segment) >= LONG_SEGMENT else segment for segment in path.split("/"))[:200]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (None outside a request: the worker, the CLI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, pid, and the
    record's ``fields``; an exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "pid": record.process,
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                entry.setdefault(name, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Development: a readable line, with the request id when there is one (scrubbed all the same)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(request_suffix)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        record.request_suffix = f" [{request_id}]" if request_id else ""
        return redact(super().format(record))


def formatter_for(settings: Settings) -> logging.Formatter:
    return TextFormatter() if settings.development else JsonFormatter()


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (popsync's, SQLAlchemy's, the libraries') to ``stream`` (stderr) as JSON in
    production, as text in development. Idempotent: calling it again replaces the handler it installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_popsync", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter_for(settings))
    handler.addFilter(RequestIdFilter())
    handler._popsync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Libraries speak at WARNING and up (httpx, for one, logs every URL it calls at INFO); popsync and
    # Alembic's "Running upgrade …" lines (the release step's record) at INFO.
    root.setLevel(logging.WARNING)
    for name in ("popsync", "alembic"):
        logging.getLogger(name).setLevel(logging.INFO)
    return handler
