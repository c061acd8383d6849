"""Schemathesis over ``/api/v1/openapi.json``: every described operation, admin routes authenticated, for a
shop that has contacts, a form, a segment, an import and tracking links. Each answer must be no 5xx and
exactly what the description says (status code, content type, body schema, headers).

The storefront and tracking routes are in the public description (CONTRACT.md: it describes "every route in
this table and the storefront routes"), so they are fuzzed from the same document. Generated values that
could only ever miss (a random shop, id, token or proxy signature) are swapped, for most examples, for the
test shop's real ones, so that the fuzzer reaches the code behind the 404s and 401s.

Bounded for CI: a fixed number of examples per operation, derandomised (the same requests every run).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

import jwt
import pytest
import schemathesis
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import response_headers_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance

from app import create_app
from app.admin.openapi import build_description
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.db import get_database
from app.enums import Source
from app.models import Shop
from tests.conftest import add_api_key
from tests.conftest import add_shop
from tests.conftest import app_config

# About 0.5 s an operation, some 45 operations: one slow module (CI runs it on both databases).
pytestmark = pytest.mark.slow

API_KEY = "fuzz-client-id"
API_SECRET = "fuzz-client-secret-0123456789abcdef"
EXAMPLES_PER_OPERATION = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

schema = schemathesis.openapi.from_dict(build_description("http://popsync.test"))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    deterministic=True,
    database="none",
)
schema.config.phases.update(phases=["examples", "fuzzing"])


def session_token(domain: str) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://{domain}/admin",
        "dest": f"https://{domain}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": "fuzz",
        "sid": "fuzz",
    }
    return jwt.encode(claims, API_SECRET, algorithm="HS256")


def signed_proxy_query(domain: str, customer: str) -> dict[str, str]:
    params = {
        "shop": domain,
        "logged_in_customer_id": customer,
        "path_prefix": "/apps/popsync",
        "timestamp": str(int(time.time())),
    }
    message = "".join(sorted(f"{k}={v}" for k, v in params.items()))
    params["signature"] = hmac.new(API_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    return params


@dataclass
class World:
    """The test shop and what it holds; ``ids`` maps a path's resource to real ids to swap in."""

    shop: Shop
    api_key: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    form_id: str = ""
    calls: int = 0

    def credentials(self) -> dict[str, str]:
        # Every other call uses a Shopify session token instead of the psk_ key: both ways in are fuzzed.
        self.calls += 1
        token = self.api_key if self.calls % 2 else session_token(self.shop.domain)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def seeded(engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, World]]:
    """One app and one seeded shop for the module, in a transaction rolled back at its end."""
    with engine.connect() as connection:
        transaction = connection.begin()
        config = app_config(
            engine.url.render_as_string(hide_password=False),
            DATABASE_ENGINE=engine,
            POPSYNC_INSTANCE_PATH=str(tmp_path_factory.mktemp("fuzz-instance")),
            SHOPIFY_API_KEY=API_KEY,
            SHOPIFY_API_SECRET=API_SECRET,
            # A closed local port: a route that calls the platform fails at once, offline.
            SHOPIFY_ADMIN_ORIGIN="http://127.0.0.1:9",
        )
        app = create_app(config)
        app.config["TESTING"] = True
        get_database(app).bind_to(connection)
        yield app, seed(app)
        transaction.rollback()


@pytest.fixture
def fuzz_app(seeded: tuple[Flask, World]) -> Iterator[Flask]:
    """Each operation starts from the seeded shop: what it changed is rolled back to a savepoint."""
    app, _ = seeded
    connection = get_database(app).sessionmaker.kw["bind"]
    savepoint = connection.begin_nested()
    yield app
    if savepoint.is_active:
        savepoint.rollback()


@pytest.fixture
def world(seeded: tuple[Flask, World]) -> World:
    return seeded[1]


def seed(app: Flask) -> World:
    """A shop with contacts, a form, a segment, an import and tracking links."""
    shop = add_shop(app)
    api_key = add_api_key(app, shop)
    service: ContactService = app.extensions["popsync.contacts"]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {api_key}"}
    contacts = [
        service.sync(
            shop.id,
            Collected(email="ann@example.com", first_name="Ann", email_consent=ConsentIntent.SUBSCRIBE),
            source=Source.FORM,
        ).contact_id,
        service.sync(shop.id, Collected(phone="+14155552671", tags=("vip",)), source=Source.FORM).contact_id,
        service.sync(
            shop.id, Collected(email="bo@example.com", phone="+14155552672"), source=Source.IMPORT
        ).contact_id,
    ]
    form = client.post("/api/v1/forms", json={"name": "Fuzz form", "active": True}, headers=auth)
    assert form.status_code == 201, form.json
    segment = client.post(
        "/api/v1/segments",
        json={"name": "VIPs", "conditions": [{"field": "tag", "op": "has", "value": "vip"}]},
        headers=auth,
    )
    assert segment.status_code == 201, segment.json
    upload = {"file": (io.BytesIO(b"email,first_name\ncy@example.com,Cy\nbad,Di\n"), "c.csv")}
    started = client.post("/api/v1/imports", data=upload, headers=auth, content_type="multipart/form-data")
    assert started.status_code == 202, started.json
    links = client.post(
        "/api/v1/tracking-links",
        json={
            "channel": "email",
            "email": "ann@example.com",
            "message_id": "m1",
            "url": "https://example.com/",
        },
        headers=auth,
    )
    assert links.status_code == 201, links.json
    tokens = [urlsplit(links.json[name]).path.rsplit("/", 1)[1].removesuffix(".gif") for name in links.json]
    return World(
        shop=shop,
        api_key=api_key,
        ids={
            "contacts": contacts,
            "forms": [int(form.json["id"])],
            "segments": [segment.json["id"]],
            "imports": [started.json["id"]],
        },
        tokens=tokens,
        form_id=str(form.json["id"]),
    )


def aim(case: schemathesis.Case, world: World) -> dict[str, str]:
    """Point most generated requests at the test shop's real resources; the headers to send."""
    path = case.operation.path
    params = case.path_parameters or {}
    # A stable hash (``hash`` is salted per process): the same case is aimed the same way every run.
    pick = zlib.crc32(repr((params, case.query, case.body)).encode()) % 4
    if "id" in params and isinstance(params["id"], int) and pick:
        resource = path.split("/")[3] if path.startswith("/api/v1/") else "forms"
        real = world.ids.get(resource)
        if real:
            params["id"] = real[pick % len(real)]
    if "token" in params and pick:
        params["token"] = world.tokens[pick % len(world.tokens)]
    if isinstance(case.body, dict) and "shop" in case.body and pick:
        case.body["shop"] = world.shop.domain
        if "form_id" in case.body:
            case.body["form_id"] = world.form_id
    if isinstance(case.query, dict) and "shop" in case.query and pick and path == "/storefront/forms":
        case.query["shop"] = world.shop.domain
    if path == "/proxy/submissions" and pick and isinstance(case.query, dict):
        customer = case.query.get("logged_in_customer_id")
        case.query = signed_proxy_query(world.shop.domain, customer if isinstance(customer, str) else "")
    if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
        return world.credentials()
    return {}


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_every_operation_answers_as_described(case: schemathesis.Case, fuzz_app: Flask, world: World) -> None:
    headers = aim(case, world)
    case.call_and_validate(app=fuzz_app, headers=headers, checks=CHECKS)
