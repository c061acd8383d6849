"""Counters add up across processes (prometheus_client's multiprocess mode, as `popsync serve` runs it),
and platform failures are sorted into kinds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import platform_error_kind
from app.platforms.base import AuthFailed
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import RetryLater

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]

COUNT = """
from app import metrics
for _ in range({n}):
    metrics.record_request("/healthz", "GET", 200, 0.001)
metrics.record_syncs("form", {{"create": {n}}})
"""

SCRAPE = """
import sqlalchemy as sa
from app import metrics


class Unreachable:
    def sessionmaker(self):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


print(metrics.render(Unreachable()).decode())
"""


def run(code: str, directory: Path | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_of_several_processes_add_up(tmp_path: Path) -> None:
    run(COUNT.format(n=3), tmp_path)
    run(COUNT.format(n=4), tmp_path)
    scraped = samples(run(SCRAPE, tmp_path))
    labels = frozenset({"route": "/healthz", "method": "GET", "status": "2xx"}.items())
    assert scraped[("popsync_http_requests_total", labels)] == 7
    assert (
        scraped[("popsync_contact_syncs_total", frozenset({"source": "form", "action": "create"}.items()))]
        == 7
    )
    # The database could not be read: said so, and the counters are still served.
    assert scraped[("popsync_database_up", frozenset())] == 0


def test_building_the_app_does_not_import_prometheus_client(tmp_path: Path) -> None:
    """The mode is fixed when prometheus_client is first imported; gunicorn's master builds the app before
    `popsync serve` sets the directory, so the import must wait for the first count, in the worker."""
    code = f"""
    import sys
    from app import create_app
    app = create_app({{"DATABASE_URL": "sqlite:///{tmp_path}/x.sqlite3", "SECRET_KEY": "k" * 32,
                       "POPSYNC_INSTANCE_PATH": "{tmp_path}"}})
    print("prometheus_client" in sys.modules)
    """
    assert run(code, None).strip() == "False"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RetryLater("Shopify answered HTTP 502 to the customer create", 1), "server_error"),
        (RetryLater("SHOPLINE answered 503 to the customer update", 1), "server_error"),
        (RetryLater("Shopify did not answer the customer create in time", 1), "timeout"),
        (RetryLater("could not reach Shopify for the customer create", 1), "unreachable"),
        (RetryLater("the customer create failed on the way (ChunkedEncodingError)", 1), "unreachable"),
        (RetryLater("Shopify rate-limited the customer create (HTTP 429)", 2, throttled=True), "throttled"),
        (RetryLater("SHOPLINE request budget is used up for now", 2, throttled=True), None),
        (RetryLater("Shopify's answer to the customer create was not JSON", 1), "other"),
        (AuthFailed("Shopify refused the access token (HTTP 401)"), "auth"),
        (FailedForGood("Shopify answered HTTP 400 to the customer create"), "refused"),
        (IdentifierTaken(["email"]), None),
        (ValueError("a bug"), None),
    ],
)
def test_platform_error_kinds(error: Exception, kind: str | None) -> None:
    assert platform_error_kind(error) == kind
