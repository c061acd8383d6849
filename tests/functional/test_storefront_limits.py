"""Storefront rate limits: per client address and per shop, 429 with Retry-After, 0 turns a limit off, counted
exactly across processes in the database, and the client address as PROXY_COUNT says (never further)."""

from __future__ import annotations

import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import RateLimit
from app.db import Database
from app.db import get_database
from app.models import Contact
from app.models import ContactEvent
from app.models import RateLimitCounter
from app.models import Shop
from app.storefront import rate_limit
from app.storefront.rate_limit import DatabaseRateLimiter
from app.storefront.rate_limit import Limit
from tests.conftest import add_shop
from tests.conftest import app_config

SHOP = "demo.myshopify.com"


@pytest.fixture
def app_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


def submit(client: FlaskClient, peer: str = "203.0.113.7", shop: str = SHOP, **headers: str) -> Any:
    return client.post(
        "/storefront/submissions",
        json={"shop": shop, "email": "ann@example.com"},
        headers=headers,
        environ_base={"REMOTE_ADDR": peer},
    )


def contacts(db: Database) -> int:
    with db.sessionmaker() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Contact)) or 0


PER_CLIENT = {"SUBMISSION_RATE_LIMIT": "3/minute", "SHOP_RATE_LIMIT": "0"}
PER_SHOP = {"SUBMISSION_RATE_LIMIT": "0", "SHOP_RATE_LIMIT": "3/minute"}


@pytest.mark.parametrize("app_extra", [PER_CLIENT], indirect=True)
def test_a_client_over_its_limit_gets_429_with_retry_after(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    assert [submit(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = submit(client)
    assert refused.status_code == 429
    assert refused.json["ok"] is False
    assert refused.json["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Another address is not held back by this one.
    assert submit(client, peer="203.0.113.8").status_code == 200


@pytest.mark.parametrize("app_extra", [PER_CLIENT], indirect=True)
def test_a_refused_submission_syncs_nothing(client: FlaskClient, db: Database, shop: Shop) -> None:
    for _ in range(3):
        submit(client)
    with db.sessionmaker() as session:
        events_before = session.scalar(sa.select(sa.func.count()).select_from(ContactEvent))
    assert submit(client).status_code == 429
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ContactEvent)) == events_before


@pytest.mark.parametrize("app_extra", [PER_SHOP], indirect=True)
def test_a_shop_over_its_limit_gets_429_from_any_client(app: Flask, client: FlaskClient, shop: Shop) -> None:
    add_shop(app, "other.myshopify.com")
    statuses = [submit(client, peer=f"198.51.100.{i}").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    # Another shop has its own allowance.
    assert submit(client, peer="198.51.100.99", shop="other.myshopify.com").status_code == 200


@pytest.mark.parametrize(
    "app_extra", [{"SUBMISSION_RATE_LIMIT": "2/minute", "SHOP_RATE_LIMIT": "4/minute"}], indirect=True
)
def test_a_client_refused_by_its_own_limit_does_not_use_up_the_shops(client: FlaskClient, shop: Shop) -> None:
    assert [submit(client).status_code for _ in range(10)] == [200, 200] + [429] * 8
    assert [submit(client, peer="198.51.100.1").status_code for _ in range(2)] == [200, 200]


def test_zero_turns_the_limits_off(client: FlaskClient, db: Database, shop: Shop) -> None:
    # The test configuration sets both limits to 0.
    assert {submit(client).status_code for _ in range(40)} == {200}
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RateLimitCounter)) == 0


@pytest.mark.parametrize("app_extra", [PER_CLIENT], indirect=True)
def test_the_view_beacon_is_limited_too(
    client: FlaskClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    form_id = client.post("/api/v1/forms", json={"name": "F"}, headers=auth).json["id"]
    # Views are counted apart from submissions: a shopper who saw the popup can still submit.
    statuses = [
        client.post(f"/storefront/forms/{form_id}/views", json={"shop": SHOP}).status_code for _ in range(4)
    ]
    assert statuses == [204, 204, 204, 429]
    assert submit(client, peer="127.0.0.1").status_code == 200


# --- the client address --------------------------------------------------------------------------------


def test_without_proxies_x_forwarded_for_is_not_trusted(app: Flask, client: FlaskClient, shop: Shop) -> None:
    app.config["POPSYNC"] = app.config["POPSYNC"].__class__(
        **{**app.config["POPSYNC"].__dict__, "submission_rate_limit": RateLimit(2, 60)}
    )
    statuses = [submit(client, **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("app_extra", [{**PER_CLIENT, "PROXY_COUNT": "1"}], indirect=True)
def test_behind_one_proxy_the_last_forwarded_entry_is_the_client(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    # The browser may send its own X-Forwarded-For; only the entry our proxy appended counts.
    spoofed = [
        submit(client, **{"X-Forwarded-For": f"10.0.0.{i}, 198.51.100.5"}).status_code for i in range(4)
    ]
    assert spoofed == [200, 200, 200, 429]
    assert submit(client, **{"X-Forwarded-For": "198.51.100.6"}).status_code == 200
    with db.sessionmaker() as session:
        ips = {e.data["client_ip"] for e in session.scalars(sa.select(ContactEvent))}
    assert ips == {"198.51.100.5", "198.51.100.6"}


@pytest.mark.parametrize("app_extra", [{**PER_CLIENT, "PROXY_COUNT": "2"}], indirect=True)
def test_behind_two_proxies_the_entry_two_hops_from_the_right_is_the_client(
    client: FlaskClient, db: Database, shop: Shop
) -> None:
    for i in range(3):
        submit(client, **{"X-Forwarded-For": f"10.9.9.{i}, 198.51.100.5, 10.0.0.{i}"})
    assert submit(client, **{"X-Forwarded-For": "1.1.1.1, 198.51.100.5, 10.0.0.9"}).status_code == 429
    with db.sessionmaker() as session:
        assert {e.data["client_ip"] for e in session.scalars(sa.select(ContactEvent))} == {"198.51.100.5"}


# --- the limiter itself --------------------------------------------------------------------------------

NOON = datetime(2026, 11, 30, 12, 0, 45, tzinfo=UTC)


def test_retry_after_is_the_rest_of_the_window(db: Database) -> None:
    limiter = DatabaseRateLimiter(db)
    limit = [Limit("test:client:a", RateLimit(1, 60))]
    assert limiter.hit(limit, NOON).allowed
    verdict = limiter.hit(limit, NOON)
    assert (verdict.allowed, verdict.retry_after, verdict.refused_by) == (False, 15, "test:client:a")
    # The next window starts afresh.
    assert limiter.hit(limit, NOON + timedelta(seconds=15)).allowed
    hourly = [Limit("test:client:b", RateLimit(1, 3600))]
    limiter.hit(hourly, NOON)
    assert limiter.hit(hourly, NOON).retry_after == 3600 - 45


def test_old_windows_are_deleted_opportunistically(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = DatabaseRateLimiter(db)
    limiter.hit([Limit("test:old", RateLimit(5, 60))], NOON - timedelta(days=2))
    limiter.hit([Limit("test:recent", RateLimit(5, 3600))], NOON - timedelta(minutes=30))
    monkeypatch.setattr(rate_limit.random, "randrange", lambda _n: 0)
    limiter.hit([Limit("test:new", RateLimit(5, 60))], NOON)
    with db.sessionmaker() as session:
        keys = set(session.scalars(sa.select(RateLimitCounter.key)))
    assert keys == {"test:recent", "test:new"}


def test_a_limit_that_refuses_leaves_the_later_ones_uncounted_on_a_real_database(
    fresh_database: sa.Engine,
) -> None:
    """With its own pool (PostgreSQL: every limit in one autocommitted statement), as with the tests' one
    connection above: the first limit over refuses, the later ones are not counted, and one key counted
    twice in a request is added to twice."""
    limiter = DatabaseRateLimiter(Database(str(fresh_database.url), engine=fresh_database))

    def counts() -> dict[str, int]:
        with fresh_database.connect() as connection:
            rows = connection.execute(sa.select(RateLimitCounter.key, RateLimitCounter.count))
            return {row.key: row.count for row in rows}

    limits = [Limit("test:client:x", RateLimit(1, 60)), Limit("test:shop:x", RateLimit(100, 60))]
    assert limiter.hit(limits, NOON).allowed
    verdict = limiter.hit(limits, NOON)
    assert (verdict.allowed, verdict.refused_by) == (False, "test:client:x")
    assert counts() == {"test:client:x": 2, "test:shop:x": 1}
    shop_over = [Limit("test:client:y", RateLimit(5, 60)), Limit("test:shop:x", RateLimit(1, 60))]
    verdict = limiter.hit(shop_over, NOON)
    assert (verdict.allowed, verdict.refused_by) == (False, "test:shop:x")
    twice = [Limit("test:twice", RateLimit(5, 60)), Limit("test:twice", RateLimit(50, 60))]
    assert limiter.hit(twice, NOON).allowed
    assert counts() == {"test:client:x": 2, "test:shop:x": 2, "test:client:y": 1, "test:twice": 2}


def test_counts_are_exact_across_processes(fresh_database: sa.Engine) -> None:
    """Separate apps (as separate processes would have), one real database, all hitting at once."""
    url = fresh_database.url.render_as_string(hide_password=False)
    apps = [create_app(app_config(url)) for _ in range(8)]
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(len(apps))

    def hammer(application: Flask) -> None:
        limiter = DatabaseRateLimiter(get_database(application))
        start.wait()
        for _ in range(5):
            verdict = limiter.hit([Limit("test:shared", RateLimit(7, 3600))], NOON)
            with lock:
                allowed.append(verdict.allowed)

    threads = [threading.Thread(target=hammer, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 40
    assert allowed.count(True) == 7
    with fresh_database.connect() as connection:
        assert connection.scalar(sa.select(RateLimitCounter.count)) == 40
    for application in apps:
        get_database(application).engine.dispose()


def test_submissions_are_limited_exactly_across_processes(fresh_database: sa.Engine) -> None:
    url = fresh_database.url.render_as_string(hide_password=False)
    limits = {"SUBMISSION_RATE_LIMIT": "0", "SHOP_RATE_LIMIT": "5/day"}
    apps = [create_app(app_config(url, **limits)) for _ in range(6)]
    add_shop(apps[0])
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(apps))

    def post(application: Flask, index: int) -> None:
        client = application.test_client()
        start.wait()
        for n in range(3):
            response = client.post(
                "/storefront/submissions",
                json={"shop": SHOP, "email": f"p{index}-{n}@example.com"},
                environ_base={"REMOTE_ADDR": f"198.51.100.{index}"},
            )
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=post, args=(a, i)) for i, a in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 5 + [429] * 13
    with fresh_database.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Contact)) == 5
    for application in apps:
        get_database(application).engine.dispose()
