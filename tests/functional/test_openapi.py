"""The OpenAPI description is valid, lists every admin and storefront route, and matches real answers."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.enums import Source
from app.models import Shop


def description(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def test_the_description_is_valid_openapi_3_1(client: FlaskClient) -> None:
    spec = description(client)
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_admin_and_storefront_route_is_described(app: Flask, client: FlaskClient) -> None:
    paths = description(client)["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/", "/storefront/", "/proxy/")):
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "{id}", rule.rule)
        assert path in paths, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], (method, path)


def check(spec: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    schema = spec["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    resolver_schema = {**schema, "components": spec["components"]}
    jsonschema.validate(body, resolver_schema, cls=jsonschema.Draft202012Validator)


def test_real_answers_match_the_description(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    spec = description(client)
    result = service.sync(shop.id, Collected(email="ann@example.com", first_name="Ann"), source=Source.FORM)
    check(spec, "/api/v1/contacts", "get", 200, client.get("/api/v1/contacts", headers=auth).json)
    check(
        spec,
        "/api/v1/contacts/{id}",
        "get",
        200,
        client.get(f"/api/v1/contacts/{result.contact_id}", headers=auth).json,
    )
    check(spec, "/api/v1/contacts/{id}", "get", 404, client.get("/api/v1/contacts/999999", headers=auth).json)
    check(spec, "/api/v1/contacts", "get", 401, client.get("/api/v1/contacts").json)
    check(spec, "/api/v1/contacts", "get", 422, client.get("/api/v1/contacts?limit=0", headers=auth).json)
    ok = client.post("/storefront/submissions", json={"shop": shop.domain, "email": "bo@example.com"})
    check(spec, "/storefront/submissions", "post", 200, ok.json)
    bad = client.post("/storefront/submissions", json={"shop": shop.domain, "email": "nope"})
    check(spec, "/storefront/submissions", "post", 422, bad.json)
    check(spec, "/readyz", "get", 200, client.get("/readyz").json)
