"""Shopify's own linter finds nothing in the theme app extension: zero offenses of any severity.

Runs scripts/theme_check.mjs (@shopify/theme-check-node with its theme-app-extension config). Node and the
npm packages are part of the test setup (`make install` runs `npm ci`): when they are missing this test
fails with the reason, it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]


def test_shopify_extension_has_no_theme_check_offense() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: theme-check needs Node.js (apt-get install -y nodejs npm)")
    if not (ROOT / "node_modules" / "@shopify" / "theme-check-node").is_dir():
        pytest.fail("@shopify/theme-check-node is not installed: run `npm ci` (make install does)")
    result = subprocess.run(
        [node, "scripts/theme_check.mjs", "extensions/popsync-embed"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, f"theme-check offenses:\n{result.stderr}\n{result.stdout}"
    assert "0 offense(s)" in result.stdout
