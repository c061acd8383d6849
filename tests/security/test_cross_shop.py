"""Another shop's ids: every admin API route and every admin page, with every way to authenticate.

The routes come from the app's own URL map (so a new route is attacked without anyone editing this file)
and are checked against the OpenAPI description. A route with an id in its path, called by the attacking
shop with one of the victim's ids, answers 404: not 403 (which would confirm the id exists), and never the
victim's data. Routes without an id must not show the victim's data either, and ids in a body are ignored
or refused. At the end the victim's data is exactly as it was.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from app.admin.openapi import build_description
from app.auth.admin import CSRF_HEADER
from app.auth.admin import csrf_token
from app.auth.admin_session import COOKIE_NAME
from app.auth.admin_session import seal_session
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.db import utcnow
from app.enums import Source
from app.models import DataRequest
from tests.security.conftest import Tenant
from tests.security.conftest import session_token

VICTIM_EMAIL = "victim.person@example.com"
VICTIM_NAME = "Vickysecret"
VICTIM_FORM = "Victim-only form"
VICTIM_SEGMENT = "Victim-only segment"
VICTIM_FILE = "victim-only-list.csv"
# What must never appear in an answer to the attacker.
VICTIM_MARKERS = (
    VICTIM_EMAIL,
    VICTIM_NAME.lower(),
    VICTIM_FORM.lower(),
    VICTIM_SEGMENT.lower(),
    "victim-only",
)

# Routes that are not the merchant's: public descriptions and the pages' static files.
NOT_SHOP_DATA = {"admin_api.openapi_description", "admin_pages.static", "admin_pages.form_preview"}
# The admin pages' way in for `popsync demo` (404 outside development) is no shop's page either.
NOT_SHOP_DATA |= {"admin_pages.demo_admin"}

# A body that passes validation, per endpoint, so that a 404 cannot hide behind a 422.
BODIES: dict[str, Any] = {
    "admin_api.edit_contact": {"first_name": "Mallory", "email_consent": "unsubscribed"},
    "admin_api.update_form": {"name": "Taken over"},
    "admin_api.update_segment": {"name": "Taken over"},
}


@dataclass
class VictimData:
    ids: dict[str, int]


def _api_rules(app: Flask) -> list[Rule]:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin_api.") and rule.endpoint not in NOT_SHOP_DATA
    ]


def _page_rules(app: Flask) -> list[Rule]:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin_pages.") and rule.endpoint not in NOT_SHOP_DATA
    ]


def _methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


@pytest.fixture
def victim_data(
    app: Flask, client: FlaskClient, db: Database, service: ContactService, victim: Tenant
) -> VictimData:
    auth = victim.key_auth
    contact = service.sync(
        victim.shop.id,
        Collected(email=VICTIM_EMAIL, first_name=VICTIM_NAME, phone="+14155550199"),
        source=Source.FORM,
    )
    form = client.post("/api/v1/forms", json={"name": VICTIM_FORM, "template": "newsletter"}, headers=auth)
    assert form.status_code == 201, form.json
    segment = client.post(
        "/api/v1/segments",
        json={
            "name": VICTIM_SEGMENT,
            "conditions": [{"field": "form", "op": "submitted", "value": form.json["id"]}],
        },
        headers=auth,
    )
    assert segment.status_code == 201, segment.json
    upload = client.post(
        "/api/v1/imports",
        data={"file": (io.BytesIO(f"email\n{VICTIM_EMAIL}\n".encode()), VICTIM_FILE)},
        headers=auth,
    )
    assert upload.status_code == 202, upload.json
    pull = client.post("/api/v1/customer-pulls", json={"kind": "backfill"}, headers=auth)
    assert pull.status_code == 202, pull.json
    with db.write_transaction() as session:
        request = DataRequest(
            shop_id=victim.shop.id,
            subject={"emails": [VICTIM_EMAIL]},
            export={"contacts": [{"email": VICTIM_EMAIL}]},
        )
        session.add(request)
        session.flush()
        request_id = request.id
    return VictimData(
        ids={
            "contact_id": contact.contact_id or 0,
            "form_id": int(form.json["id"]),
            "segment_id": int(segment.json["id"]),
            "import_id": int(upload.json["id"]),
            "pull_id": int(pull.json["id"]),
            "request_id": request_id,
        }
    )


def victim_view(client: FlaskClient, victim: Tenant, data: VictimData) -> dict[str, Any]:
    """Everything the victim's own key sees (times of reading left out)."""
    auth = victim.key_auth
    view = {
        "contacts": client.get("/api/v1/contacts", headers=auth).json,
        "contact": client.get(f"/api/v1/contacts/{data.ids['contact_id']}", headers=auth).json,
        "forms": client.get("/api/v1/forms", headers=auth).json,
        "segments": client.get("/api/v1/segments", headers=auth).json,
        "import": client.get(f"/api/v1/imports/{data.ids['import_id']}", headers=auth).json,
        "pulls": client.get("/api/v1/customer-pulls", headers=auth).json,
        "requests": client.get("/api/v1/data-requests", headers=auth).json,
    }
    return json.loads(json.dumps(view, sort_keys=True))


def _cookie_auth(app: Flask, client: FlaskClient, tenant: Tenant) -> dict[str, str]:
    """Sign the attacker in with the admin pages' session cookie; the CSRF header their pages send."""
    with app.app_context():
        value = seal_session(app.extensions["popsync.keyring"], tenant.shop, utcnow())
        token = csrf_token(value)
    client.set_cookie(COOKIE_NAME, value)
    return {CSRF_HEADER: token}


def _path(rule: Rule, ids: dict[str, int]) -> str:
    unknown = set(rule.arguments) - set(ids)
    if unknown:
        pytest.fail(
            f"{rule.rule} takes {sorted(unknown)}: add a factory for the victim's {sorted(unknown)} to "
            "tests/security/test_cross_shop.py so the route is attacked too"
        )
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), rule.rule)


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [marker for marker in VICTIM_MARKERS if marker in lowered]


def _attack_api(
    app: Flask, client: FlaskClient, data: VictimData, auth: Callable[[], dict[str, str]], how: str
) -> list[str]:
    """Call every admin API route as the attacker; the problems found, in words."""
    problems: list[str] = []
    for rule in _api_rules(app):
        path = _path(rule, data.ids)
        for method in _methods(rule):
            body = BODIES.get(rule.endpoint, {"ids": list(data.ids.values())})
            kwargs: dict[str, Any] = {"headers": auth()}
            if method != "GET":
                kwargs["json"] = body
            answer = client.open(path, method=method, **kwargs)
            text = answer.get_data(as_text=True)
            where = f"{how} {method} {path}"
            if rule.arguments and answer.status_code != 404:
                problems.append(f"{where}: {answer.status_code}, not 404")
            elif answer.status_code in (401, 403, 500):
                problems.append(f"{where}: {answer.status_code}")
            if leaked := _leaks(text):
                problems.append(f"{where}: shows the victim's {leaked}")
            if not rule.arguments and method == "POST" and answer.is_json:
                # Bulk routes take ids in the body: the victim's are ignored.
                for counted in ("updated", "deleted"):
                    if answer.json.get(counted):
                        problems.append(f"{where}: {counted} {answer.json[counted]} of the victim's")
    return problems


def test_the_route_list_covers_the_openapi_description(app: Flask) -> None:
    described = {
        (method.upper(), re.sub(r"\{\w+\}", "<id>", path))
        for path, item in build_description("http://popsync.test")["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    }
    attacked = {
        (method, re.sub(r"<(?:\w+:)?\w+>", "<id>", rule.rule))
        for rule in _api_rules(app)
        for method in _methods(rule)
    }
    missing = {(method, path) for method, path in described if path != "/api/v1/openapi.json"} - attacked
    assert not missing, f"described in OpenAPI but not attacked (not in the URL map?): {sorted(missing)}"
    assert len(attacked) >= 30


@pytest.mark.parametrize("how", ["psk_ key", "session token", "session cookie"])
def test_every_admin_api_route_hides_another_shops_data(
    app: Flask,
    client: FlaskClient,
    mallory: Tenant,
    victim: Tenant,
    victim_data: VictimData,
    how: str,
) -> None:
    before = victim_view(client, victim, victim_data)
    if how == "psk_ key":
        problems = _attack_api(app, client, victim_data, lambda: mallory.key_auth, how)
    elif how == "session token":
        problems = _attack_api(app, client, victim_data, lambda: mallory.token_auth, how)
    else:
        csrf = _cookie_auth(app, client, mallory)
        problems = _attack_api(app, client, victim_data, lambda: csrf, how)
        client.delete_cookie(COOKIE_NAME)
    assert problems == []
    assert victim_view(client, victim, victim_data) == before


def test_list_filters_with_another_shops_segment_are_404(
    client: FlaskClient, mallory: Tenant, victim_data: VictimData
) -> None:
    segment = victim_data.ids["segment_id"]
    for path in ("/api/v1/contacts", "/api/v1/contacts/export.csv"):
        answer = client.get(f"{path}?segment={segment}", headers=mallory.key_auth)
        assert answer.status_code == 404, path
        assert not _leaks(answer.get_data(as_text=True))


def test_a_segment_cannot_name_another_shops_form(
    client: FlaskClient, mallory: Tenant, victim_data: VictimData
) -> None:
    condition = {"field": "form", "op": "submitted", "value": victim_data.ids["form_id"]}
    created = client.post(
        "/api/v1/segments", json={"name": "Spy", "conditions": [condition]}, headers=mallory.key_auth
    )
    assert created.status_code == 422
    assert created.json["errors"] == {"conditions[0].value": "no such form"}
    # The builder's live count only ever counts the attacker's own contacts.
    counted = client.post(
        "/admin/segments/count", json={"match": "all", "conditions": [condition]}, headers=mallory.key_auth
    )
    assert counted.status_code == 200
    assert counted.json == {"count": 0}


@pytest.mark.parametrize("how", ["id_token", "session cookie"])
def test_every_admin_page_with_another_shops_id_is_404(
    app: Flask, client: FlaskClient, mallory: Tenant, victim: Tenant, victim_data: VictimData, how: str
) -> None:
    headers: dict[str, str] = {}
    query = ""
    if how == "id_token":
        query = f"?id_token={session_token(mallory.shop.domain)}"
    else:
        headers = _cookie_auth(app, client, mallory)
    problems = []
    checked = 0
    for rule in _page_rules(app):
        path = _path(rule, victim_data.ids)
        for method in _methods(rule):
            # The pages' own fetches (the segment builder's count) carry the session token as Bearer.
            fetch_auth = mallory.token_auth if how == "id_token" and method != "GET" else {}
            answer = client.open(
                path + query,
                method=method,
                headers={**headers, **fetch_auth},
                json={"match": "all", "conditions": []},
            )
            checked += 1
            where = f"{how} {method} {path}"
            if rule.arguments and answer.status_code != 404:
                problems.append(f"{where}: {answer.status_code}, not 404")
            if not rule.arguments and answer.status_code != 200:
                problems.append(f"{where}: {answer.status_code}, not the attacker's own page")
            if leaked := _leaks(answer.get_data(as_text=True)):
                problems.append(f"{where}: shows the victim's {leaked}")
    assert problems == []
    assert checked >= 10
    # The same pages are the victim's own: the ids are real (so the 404s above are about ownership).
    victim_query = f"?id_token={session_token(victim.shop.domain)}"
    for name, prefix in (("contact_id", "contacts"), ("form_id", "forms"), ("segment_id", "segments")):
        own = client.get(f"/admin/{prefix}/{victim_data.ids[name]}{victim_query}")
        assert own.status_code == 200, prefix
