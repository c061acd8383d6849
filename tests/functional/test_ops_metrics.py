"""GET /metrics: guarded by METRICS_TOKEN, Prometheus text that prometheus_client's parser reads, counters
that move with real requests, syncs and platform writes, and the outbox read at scrape time."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.jobs import Worker
from app.models import Shop
from app.platforms.base import RetryLater
from tests.fakes import MemoryPlatform

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {"METRICS_TOKEN": TOKEN}


def scrape(client: FlaskClient) -> Samples:
    with client.get("/metrics", headers=AUTH) as response:
        assert response.status_code == 200
        assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
        text = response.get_data(as_text=True)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def submit(client: FlaskClient, body: dict[str, Any]) -> int:
    with client.post(
        "/storefront/submissions", data=json.dumps(body), content_type="application/json"
    ) as response:
        return response.status_code


def test_metrics_need_the_token(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        with client.get("/metrics", headers=headers) as response:
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "METRICS_TOKEN" in response.json["error"]
    with client.get("/metrics", headers=AUTH) as response:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"


def test_metrics_are_off_without_a_token(app: Flask, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app import create_app
    from tests.conftest import app_config

    plain = create_app(app_config("sqlite://", POPSYNC_INSTANCE_PATH=str(tmp_path)))
    with plain.test_client().get("/metrics", headers=AUTH) as response:
        assert response.status_code == 404
        assert response.json["ok"] is False


def test_requests_and_syncs_are_counted_and_the_outbox_read(client: FlaskClient, shop: Shop) -> None:
    before = scrape(client)
    assert submit(client, {"shop": shop.domain, "email": "ann@example.com", "first_name": "Ann"}) == 200
    assert submit(client, {"shop": shop.domain, "email": "ann@example.com", "last_name": "Lee"}) == 200
    assert submit(client, {"shop": shop.domain, "email": "not an email"}) == 422
    with client.get(f"/api/v1/contacts/{10**9}") as response:
        assert response.status_code == 401
    with client.get("/no/such/page") as response:
        assert response.status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/storefront/submissions"
    assert moved("popsync_http_requests_total", route=route, method="POST", status="2xx") == 2
    assert moved("popsync_http_requests_total", route=route, method="POST", status="4xx") == 1
    assert moved("popsync_http_request_duration_seconds_count", route=route) == 3
    contact_route = "/api/v1/contacts/<int:contact_id>"
    assert moved("popsync_http_requests_total", route=contact_route, method="GET", status="4xx") == 1
    # An unknown path is one label, not a new series per path.
    assert moved("popsync_http_requests_total", route="unmatched", method="GET", status="4xx") == 1
    assert moved("popsync_contact_syncs_total", source="form", action="create") == 1
    assert moved("popsync_contact_syncs_total", source="form", action="update") == 1
    # One push waits for the worker: both syncs joined it.
    assert value(after, "popsync_outbox_depth", kind="push_contact", status="pending") == 1
    assert 0 <= value(after, "popsync_outbox_oldest_pending_age_seconds", kind="push_contact") < 60
    assert value(after, "popsync_database_up") == 1
    assert ("popsync_tracking_hits_pending", frozenset()) in after


def test_the_scrape_reveals_no_shop_data(client: FlaskClient, shop: Shop) -> None:
    assert submit(client, {"shop": shop.domain, "email": "private.person@example.com"}) == 200
    with client.get("/metrics", headers=AUTH) as response:
        text = response.get_data(as_text=True)
    for secret in (shop.domain, "private.person", "example.com", TOKEN):
        assert secret not in text


def test_platform_writes_and_errors_are_counted_by_kind(
    app: Flask, client: FlaskClient, db: Database, service: ContactService, shop: Shop
) -> None:
    platform = MemoryPlatform()
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        rng=random.Random(3),
        client_factory=lambda _shop: platform,
        base_backoff=0.01,
    )
    service.sync(shop.id, Collected(email="bo@example.com"), source=Source.FORM)
    platform.failures = [
        RetryLater("Shopify answered HTTP 503 to the customer lookup", 0),
        RetryLater("Shopify did not answer the customer lookup in time", 0),
        RetryLater("Shopify throttled the customer lookup", 0, throttled=True),
        RetryLater("Shopify rate budget spent (customer lookup)", 0, throttled=True),
    ]
    before = scrape(client)
    worker.drain(timeout=30)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    errors = "popsync_platform_errors_total"
    assert moved(errors, platform="shopify", kind="server_error") == 1
    assert moved(errors, platform="shopify", kind="timeout") == 1
    # The platform's throttling counts; popsync pacing itself by its own budget does not.
    assert moved(errors, platform="shopify", kind="throttled") == 1
    assert (
        sum(v for (name, _), v in after.items() if name == errors)
        - sum(v for (name, _), v in before.items() if name == errors)
        == 3
    )
    assert moved("popsync_platform_writes_total", platform="shopify", outcome="created") == 1
    assert value(after, "popsync_outbox_depth", kind="push_contact", status="pending") == 0
    assert value(after, "popsync_outbox_oldest_pending_age_seconds", kind="push_contact") == 0


def test_opens_synced_by_the_drain_are_counted(
    client: FlaskClient, app: Flask, shop: Shop, service: ContactService
) -> None:
    from app.db import utcnow
    from app.tracking.drain import HitDrain
    from app.tracking.tokens import TrackingLink
    from app.tracking.tokens import seal

    before = scrape(client)
    link = TrackingLink(shop.id, "email", "m-1", utcnow(), email="opened@example.com")
    token = seal(app.extensions["popsync.keyring"], link)
    with client.get(f"/t/o/{token}.gif") as response:
        assert response.status_code == 200
    assert value(scrape(client), "popsync_contact_syncs_total", source="open", action="create") == value(
        before, "popsync_contact_syncs_total", source="open", action="create"
    )  # a hit is only recorded in the request; the sync is the drain's
    assert HitDrain(service).run_once() == 1
    after = scrape(client)
    moved = value(after, "popsync_contact_syncs_total", source="open", action="create") - value(
        before, "popsync_contact_syncs_total", source="open", action="create"
    )
    assert moved == 1
