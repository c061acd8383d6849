"""The shipped popup script: one source, two byte-identical built copies, inside the size budgets.

storefront_js/popup.js is the source; scripts/build_storefront.py minifies it (pinned terser, `npm ci`) into
the Shopify extension's asset and the file the app serves at /storefront/popup.js.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "storefront_js" / "popup.js"
SHOPIFY_COPY = ROOT / "extensions" / "popsync-embed" / "assets" / "popup.js"
SERVED_COPY = ROOT / "app" / "storefront" / "static" / "popup.js"
SHOPIFY_BLOCK = ROOT / "extensions" / "popsync-embed" / "blocks" / "popsync-embed.liquid"
SHOPLINE_BLOCK = ROOT / "extensions" / "shopline-popsync-embed" / "blocks" / "popsync-embed.html"
GZIP_BUDGET = 10_240  # DESIGN: at most 10 KB gzipped
THEME_CHECK_LIMIT = 10_000  # theme-check's AssetSizeAppBlockJavaScript counts the file's bytes on disk


def test_both_copies_are_byte_identical() -> None:
    assert SHOPIFY_COPY.read_bytes() == SERVED_COPY.read_bytes()


def test_copies_are_a_fresh_build_of_the_source() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_storefront.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode == 2:
        pytest.fail(f"cannot build the storefront script (run `npm ci`, or `make install`):\n{result.stderr}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_script_fits_the_budgets() -> None:
    shipped = SHOPIFY_COPY.read_bytes()
    assert len(gzip.compress(shipped, compresslevel=9)) <= GZIP_BUDGET
    assert len(shipped) <= THEME_CHECK_LIMIT


def test_source_never_writes_html_from_data() -> None:
    source = SOURCE.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, f"popup.js must not use {sink}"


def test_source_is_plain_modern_javascript_without_dependencies() -> None:
    source = SOURCE.read_text()
    assert not re.search(r"^\s*(import|export)\b|\brequire\(", source, flags=re.MULTILINE)
    node = subprocess.run(["node", "--check", str(SOURCE)], capture_output=True, text=True, check=False)
    assert node.returncode == 0, node.stderr


def _schema(block: Path, opening: str, closing: str) -> dict:
    text = block.read_text()
    return json.loads(text.split(opening, 1)[1].split(closing, 1)[0])


def _setting(schema: dict, setting_id: str) -> dict:
    return next(setting for setting in schema["settings"] if setting.get("id") == setting_id)


def test_embed_defaults_follow_the_app_configuration() -> None:
    app = tomllib.loads((ROOT / "shopify.app.toml").read_text())
    app_url = app["application_url"].rstrip("/")
    proxy_path = f"/{app['app_proxy']['prefix']}/{app['app_proxy']['subpath']}"

    shopify = _schema(SHOPIFY_BLOCK, "{% schema %}", "{% endschema %}")
    assert shopify["target"] == "body"
    assert shopify["javascript"] == "popup.js"
    assert _setting(shopify, "app_url")["default"] == app_url
    assert _setting(shopify, "proxy_path")["default"] == proxy_path

    shopline = _schema(SHOPLINE_BLOCK, "{{#schema}}", "{{/schema}}")
    assert shopline["target"] == "body"
    assert _setting(shopline, "app_url")["default"] == app_url


def test_shopify_embed_renders_the_root_the_script_reads() -> None:
    block = SHOPIFY_BLOCK.read_text()
    for attribute in (
        'id="popsync-root"',
        'data-platform="shopify"',
        'data-shop="{{ shop.permanent_domain | escape }}"',
        "{% if customer %}{{ customer.id }}{% endif %}",
        'data-locale="{{ request.locale.iso_code | escape }}"',
    ):
        assert attribute in block
    assert "<script" not in block, "Shopify loads the asset itself; a script tag here would be remote"


def test_shopline_embed_never_identifies_the_shopper() -> None:
    block = SHOPLINE_BLOCK.read_text()
    assert 'data-platform="shopline"' in block
    assert 'data-customer-id=""' in block
    assert "customer" not in block.replace('data-customer-id=""', "")
