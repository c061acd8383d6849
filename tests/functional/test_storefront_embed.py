"""The merchant sees whether popsync's app embed is on in the live theme, and the link that turns it on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from app.platforms.devstore import DevStore
from app.platforms.devstore.shopify_api import THEME_SETTINGS_NOTICE
from app.platforms.devstore.shopify_api import set_theme_settings
from app.platforms.devstore.shopify_api import theme_settings_with_embed
from app.platforms.shopify import embed_switched_on
from tests.conftest import add_api_key
from tests.conftest import add_shop
from tests.devstore_server import RunningDevStore
from tests.devstore_server import running_devstore

API_KEY = "embed-test-client-id"


@pytest.fixture
def devstore() -> Iterator[RunningDevStore]:
    with running_devstore(DevStore()) as running:
        yield running


@pytest.fixture
def app_extra(devstore: RunningDevStore) -> dict[str, Any]:
    return {"SHOPIFY_ADMIN_ORIGIN": devstore.origin, "SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": "s"}


def status(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/v1/storefront-embed", headers=auth)
    assert response.status_code == 200
    return response.get_json()


def test_shopify_embed_off_then_on(
    client: FlaskClient, auth: dict[str, str], devstore: RunningDevStore
) -> None:
    devstore.store.add_shop("shopify", "demo.myshopify.com", "shpat_test_token")
    body = status(client, auth)
    assert body["platform"] == "shopify"
    assert body["enabled"] is False
    assert body["activate_url"] == (
        "https://demo.myshopify.com/admin/themes/current/editor"
        f"?context=apps&template=index&activateAppId={API_KEY}/popsync-embed"
    )
    set_theme_settings(
        devstore.store,
        "demo.myshopify.com",
        theme_settings_with_embed("popsync", "popsync-embed", enabled=True),
    )
    assert status(client, auth)["enabled"] is True
    set_theme_settings(
        devstore.store,
        "demo.myshopify.com",
        theme_settings_with_embed("popsync", "popsync-embed", enabled=False),
    )
    assert status(client, auth)["enabled"] is False


def test_without_the_permission_the_answer_is_unknown_and_says_why(
    client: FlaskClient, auth: dict[str, str], devstore: RunningDevStore
) -> None:
    denied = {
        "errors": [{"message": "Access denied for themes field.", "extensions": {"code": "ACCESS_DENIED"}}]
    }
    with responses.RequestsMock() as mocked:
        mocked.post(f"{devstore.origin}/admin/api/2026-10/graphql.json", json=denied)
        body = status(client, auth)
    assert body["enabled"] is None
    assert "read_themes" in body["detail"]


def test_shopline_cannot_tell_and_links_the_theme_editor(app: Flask, client: FlaskClient) -> None:
    shop = add_shop(app, "demo.myshopline.com", "shopline")
    auth = {"Authorization": f"Bearer {add_api_key(app, shop)}"}
    body = status(client, auth)
    assert (body["platform"], body["enabled"]) == ("shopline", None)
    assert body["activate_url"] == "https://demo.myshopline.com/admin/themes"


def test_the_route_needs_credentials(client: FlaskClient) -> None:
    assert client.get("/api/v1/storefront-embed").status_code == 401


def block(block_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": block_type, "settings": {}, **extra}


POPSYNC = "shopify://apps/popsync/blocks/popsync-embed/0f6e2b9c"


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"current": {"blocks": {"1": block(POPSYNC)}}}, True),
        ({"current": {"blocks": {"1": block(POPSYNC, disabled=True)}}}, False),
        ({"current": {"blocks": {"1": block(POPSYNC, disabled=False)}}}, True),
        ({"current": {"blocks": {"1": block("shopify://apps/other/blocks/popsync-embed-x/1")}}}, False),
        ({"current": {"blocks": {"1": block("shopify://apps/other/blocks/banner/1")}}}, False),
        ({"current": {"sections": {}}}, False),
        ({"current": "Dawn", "presets": {"Dawn": {"blocks": {"1": block(POPSYNC)}}}}, True),
        ([], None),
    ],
)
def test_reading_the_theme_settings(settings: Any, expected: bool | None) -> None:
    assert embed_switched_on(THEME_SETTINGS_NOTICE + json.dumps(settings), "popsync-embed") is expected
    assert embed_switched_on(json.dumps(settings), "popsync-embed") is expected


@pytest.mark.nodb
def test_unreadable_settings_are_unknown() -> None:
    assert embed_switched_on("/* unterminated", "popsync-embed") is None
    assert embed_switched_on("{not json", "popsync-embed") is None
