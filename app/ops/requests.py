"""Every request's id and count: a WSGI middleware around the whole app.

The id is the incoming ``X-Request-Id`` when it is short and plain (a proxy's id joins its logs to ours),
else a new one. It is set for the request's log lines (app/logging_setup.py), put in the WSGI environ for
gunicorn's access log (app/gunicorn_conf.py), and echoed in the answer's ``X-Request-Id``. When the answer
has been sent (its body iterated and closed, so streamed exports count whole), the request is counted by
route template, method and status class (app/metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from flask import Flask
from flask import request

from app import metrics
from app.logging_setup import REQUEST_ID
from app.logging_setup import new_request_id
from app.logging_setup import safe_request_id

REQUEST_ID_ENVIRON = "popsync.request_id"
ROUTE_ENVIRON = "popsync.route"
REQUEST_ID_HEADER = "X-Request-Id"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestContextMiddleware:
    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = safe_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        environ[REQUEST_ID_ENVIRON] = request_id
        REQUEST_ID.set(request_id)
        started = time.perf_counter()
        answered: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered[:] = [int(status.split(" ", 1)[0])]
            headers = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        def finish() -> None:
            metrics.record_request(
                environ.get(ROUTE_ENVIRON),
                environ.get("REQUEST_METHOD", "GET"),
                answered[0] if answered else 500,
                time.perf_counter() - started,
            )
            REQUEST_ID.set(None)

        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            finish()
            raise
        return _Closing(body, finish)


class _Closing:
    """The app's body, passed through; ``finish`` runs once when the server closes it (PEP 3333)."""

    def __init__(self, body: Iterable[bytes], finish: Callable[[], None]) -> None:
        self.body = body
        self.finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.finish()


def init_app(app: Flask) -> None:
    """Wrap the app (outermost, so the id covers ProxyFix and every error page) and note each request's
    route template: the metric's label and the access log's, never the path with its ids and tokens."""
    app.wsgi_app = RequestContextMiddleware(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def note_route() -> None:
        rule = request.url_rule
        request.environ[ROUTE_ENVIRON] = rule.rule if rule is not None else None
