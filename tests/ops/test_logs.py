"""Structured logs: JSON lines carrying the request id, the id echoed in X-Request-Id, secrets scrubbed,
and gunicorn's access log as JSON without query strings or tokens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest
from flask import Flask
from gunicorn.config import Config

from app import create_app
from app.config import Settings
from app.gunicorn_conf import JsonLogger
from app.gunicorn_conf import gunicorn_options
from app.logging_setup import REQUEST_ID
from app.logging_setup import configure_logging
from app.logging_setup import masked_path
from app.logging_setup import redact
from app.logging_setup import safe_request_id
from tests.conftest import app_config

pytestmark = pytest.mark.nodb

# A database nobody answers on: /readyz logs a warning inside the request, with no database needed.
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pytest.fixture
def broken_app(tmp_path) -> Flask:  # type: ignore[no-untyped-def]
    return create_app(app_config(UNREACHABLE, POPSYNC_INSTANCE_PATH=str(tmp_path)))


@pytest.fixture
def captured(broken_app: Flask) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(broken_app.config["POPSYNC"], stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_of_a_request_carries_its_id_and_the_answer_echoes_it(
    broken_app: Flask, captured: io.StringIO
) -> None:
    response = broken_app.test_client().get("/readyz")
    assert response.status_code == 503
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32
    [line] = [entry for entry in lines(captured) if entry["logger"] == "popsync.ops"]
    assert line["request_id"] == request_id
    assert line["level"] == "warning"
    assert line["message"] == "readiness check failed: OperationalError"
    assert set(line) >= {"time", "level", "logger", "message", "request_id", "pid"}
    # The next request has an id of its own.
    again = broken_app.test_client().get("/readyz")
    assert again.headers["X-Request-Id"] != request_id
    assert lines(captured)[-1]["request_id"] == again.headers["X-Request-Id"]


def test_a_short_plain_incoming_id_is_kept_and_anything_else_replaced(
    broken_app: Flask, captured: io.StringIO
) -> None:
    client = broken_app.test_client()
    kept = client.get("/readyz", headers={"X-Request-Id": "lb-7f3a.42:1"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a.42:1"
    assert lines(captured)[-1]["request_id"] == "lb-7f3a.42:1"
    for hostile in ("a" * 65, '{"level":"error"}', "id with spaces", "ünïcode", "-leading-dash"):
        answer = client.get("/readyz", headers={"X-Request-Id": hostile})
        replaced = answer.headers["X-Request-Id"]
        assert replaced != hostile
        assert len(replaced) == 32
        assert lines(captured)[-1]["request_id"] == replaced


def test_safe_request_id() -> None:
    assert safe_request_id("3f2b9c1e-0d4a-4c1e-9a53-6d3c0e7f1a22") == "3f2b9c1e-0d4a-4c1e-9a53-6d3c0e7f1a22"
    assert safe_request_id(None) is None
    assert safe_request_id("") is None
    assert safe_request_id("x\r\nSet-Cookie: a=b") is None


def test_secrets_are_scrubbed_from_messages_and_tracebacks() -> None:
    # Outside any request (a test client's response left unclosed keeps its id; gunicorn closes each one).
    REQUEST_ID.set(None)
    stream = io.StringIO()
    settings = Settings.from_mapping(app_config("sqlite://"), instance_path="/tmp")
    handler = configure_logging(settings, stream)
    log = logging.getLogger("popsync.test")
    try:
        log.warning(
            "calling https://x.myshopify.com/admin?shop=x&hmac=abc123&code=9f9f&timestamp=1 "
            "with shpat_0123456789ab"
        )
        log.warning("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig and key psk_live0123456789")
        try:
            raise ValueError("refresh_token=r-secret-0001 was refused")
        except ValueError:
            log.exception("token refresh failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    for secret in (
        "abc123",
        "9f9f",
        "shpat_0123456789ab",
        "eyJhbGciOiJIUzI1NiJ9",
        "psk_live0123456789",
        "r-secret",
    ):
        assert secret not in text
    first, second, third = (json.loads(line) for line in text.splitlines())
    assert first["message"] == (
        "calling https://x.myshopify.com/admin?shop=x&hmac=[redacted]&code=[redacted]&timestamp=1 "
        "with shpat_[redacted]"
    )
    assert second["message"] == "Authorization: Bearer [redacted] and key psk_[redacted]"
    assert "refresh_token=[redacted]" in third["exception"]
    assert first["request_id"] is None  # outside a request


def test_redact_leaves_ordinary_words_alone() -> None:
    text = "zipcode=94110 encode=utf-8 signed in; shop demo.myshopify.com, contact 42"
    assert redact(text) == text


def test_development_logs_are_plain_text_with_the_request_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(app_config(UNREACHABLE, POPSYNC_ENV="development", POPSYNC_INSTANCE_PATH=str(tmp_path)))
    stream = io.StringIO()
    handler = configure_logging(app.config["POPSYNC"], stream)
    try:
        response = app.test_client().get("/readyz")
    finally:
        logging.getLogger().removeHandler(handler)
    [line] = [line for line in stream.getvalue().splitlines() if "popsync.ops" in line]
    assert f"[{response.headers['X-Request-Id']}]" in line
    assert "WARNING" in line
    assert not line.startswith("{")


def gunicorn_logger(**settings: object) -> JsonLogger:
    config = Config()
    for name, value in {**gunicorn_options("127.0.0.1", 8000, 1), **settings}.items():
        if name not in ("on_starting", "child_exit"):
            config.set(name, value)
    return JsonLogger(config)


def test_the_access_log_is_json_with_the_request_id_and_no_query_or_token(capsys) -> None:  # type: ignore[no-untyped-def]
    logger = gunicorn_logger()
    token = "A" * 60
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/t/o/{token}.gif",
        "QUERY_STRING": "signature=deadbeef",
        "RAW_URI": f"/t/o/{token}.gif?signature=deadbeef",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_COOKIE": "session=secret-cookie",
        "popsync.request_id": "rid-1",
        "popsync.route": "/t/o/<token>.gif",
    }
    response = SimpleNamespace(status="200 OK", sent=43, headers=[("Set-Cookie", "s=1")])
    request = SimpleNamespace(headers=[("COOKIE", "session=secret-cookie")])
    logger.access(response, request, environ, timedelta(milliseconds=3, microseconds=250))
    output = capsys.readouterr().out
    [line] = [json.loads(text) for text in output.splitlines()]
    assert line["logger"] == "gunicorn.access"
    assert line["request_id"] == "rid-1"
    assert (line["method"], line["route"], line["path"], line["status"], line["bytes"]) == (
        "GET",
        "/t/o/<token>.gif",
        "/t/o/…",
        200,
        43,
    )
    assert line["duration_ms"] == 3.25
    for secret in (token, "deadbeef", "secret-cookie", "signature"):
        assert secret not in output


def test_masked_path_keeps_ordinary_paths() -> None:
    assert masked_path("/api/v1/contacts/42") == "/api/v1/contacts/42"
    assert masked_path("/u/" + "x" * 40) == "/u/…"
    assert len(masked_path("/" + "a/" * 300)) == 200
