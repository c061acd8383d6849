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


def test_import_answers_match_the_description(
    app: Flask, client: FlaskClient, shop: Shop, auth: dict[str, str], tmp_path: Any
) -> None:
    import io

    from app.imports import ImportRunner

    app.instance_path = str(tmp_path)
    spec = description(client)
    content = b"email,first_name\nann@example.com,Ann\nbad,Bo\n"
    data = {"file": (io.BytesIO(content), "c.csv"), "write_platform": "true"}
    started = client.post("/api/v1/imports", data=data, headers=auth, content_type="multipart/form-data")
    check(spec, "/api/v1/imports", "post", 202, started.json)
    refused = {"file": (io.BytesIO(b"name\nAnn\n"), "c.csv")}
    bad = client.post("/api/v1/imports", data=refused, headers=auth, content_type="multipart/form-data")
    check(spec, "/api/v1/imports", "post", 422, bad.json)
    ImportRunner(app.extensions["popsync.db"], app.extensions["popsync.contacts"]).step(started.json["id"])
    done = client.get(f"/api/v1/imports/{started.json['id']}", headers=auth).json
    assert done["errors"]
    assert "estimated_platform_seconds" in done
    check(spec, "/api/v1/imports/{id}", "get", 200, done)
    check(spec, "/api/v1/imports/{id}", "get", 404, client.get("/api/v1/imports/999999", headers=auth).json)
    export = client.get("/api/v1/contacts/export.csv?channel=fax", headers=auth)
    check(spec, "/api/v1/contacts/export.csv", "get", 422, export.json)


def test_contact_changes_and_segments_match_the_description(
    client: FlaskClient, service: ContactService, shop: Shop, auth: dict[str, str]
) -> None:
    spec = description(client)
    ann = service.sync(shop.id, Collected(email="ann@example.com"), source=Source.FORM).contact_id
    bo = service.sync(shop.id, Collected(email="bo@example.com"), source=Source.FORM).contact_id
    item = "/api/v1/contacts/{id}"

    def answer(path: str, method: str, response: Any, status: int) -> None:
        assert response.status_code == status, response.json
        check(spec, path, method, status, response.json)

    answer(
        item, "patch", client.patch(f"/api/v1/contacts/{ann}", json={"first_name": "Ann"}, headers=auth), 200
    )
    answer(item, "patch", client.patch(f"/api/v1/contacts/{ann}", json={"email": "x"}, headers=auth), 422)
    answer(item, "patch", client.patch("/api/v1/contacts/999999", json={}, headers=auth), 404)
    answer(item, "patch", client.patch(f"/api/v1/contacts/{ann}", json=[], headers=auth), 400)
    consent = {"ids": [ann, bo], "channel": "email", "state": "subscribed"}
    answer(
        "/api/v1/contacts/consent",
        "post",
        client.post("/api/v1/contacts/consent", json=consent, headers=auth),
        200,
    )
    bad = client.post("/api/v1/contacts/consent", json={**consent, "state": "maybe"}, headers=auth)
    answer("/api/v1/contacts/consent", "post", bad, 422)
    deleted = client.post("/api/v1/contacts/delete", json={"ids": [bo]}, headers=auth)
    answer("/api/v1/contacts/delete", "post", deleted, 200)
    answer(
        "/api/v1/contacts/delete", "post", client.post("/api/v1/contacts/delete", json={}, headers=auth), 422
    )
    assert client.delete(f"/api/v1/contacts/{ann}", headers=auth).status_code == 204
    assert "204" in spec["paths"][item]["delete"]["responses"]
    answer(item, "delete", client.delete(f"/api/v1/contacts/{ann}", headers=auth), 404)

    body = {"name": "Tagged", "conditions": [{"field": "tag", "op": "has", "value": "vip"}]}
    created = client.post("/api/v1/segments", json=body, headers=auth)
    answer("/api/v1/segments", "post", created, 201)
    answer("/api/v1/segments", "post", client.post("/api/v1/segments", json={"name": ""}, headers=auth), 422)
    answer("/api/v1/segments", "get", client.get("/api/v1/segments", headers=auth), 200)
    one = f"/api/v1/segments/{created.json['id']}"
    answer("/api/v1/segments/{id}", "get", client.get(one, headers=auth), 200)
    answer("/api/v1/segments/{id}", "patch", client.patch(one, json={"match": "any"}, headers=auth), 200)
    answer("/api/v1/segments/{id}", "patch", client.patch(one, json={"match": "x"}, headers=auth), 422)
    listed = client.get(f"/api/v1/contacts?segment={created.json['id']}", headers=auth)
    answer("/api/v1/contacts", "get", listed, 200)
    assert client.delete(one, headers=auth).status_code == 204
    answer("/api/v1/segments/{id}", "get", client.get(one, headers=auth), 404)
    answer("/api/v1/segments/{id}", "delete", client.delete(one, headers=auth), 404)
