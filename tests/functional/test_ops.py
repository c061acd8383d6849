"""Health and readiness, and errors in JSON."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.conftest import app_config


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"ok": True}
    assert client.get("/readyz").json == {"ok": True}


def test_readyz_is_503_when_the_database_does_not_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = create_app(app_config("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"ok": False, "error": "database unavailable"}


def test_unknown_api_routes_answer_json(client: FlaskClient, app: Flask) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["ok"] is False
    assert client.put("/storefront/submissions").status_code == 405
