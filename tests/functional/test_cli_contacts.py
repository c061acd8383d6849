"""``popsync contacts import`` and ``popsync contacts export``, run as an operator would: a real process."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.functional.test_cli import assert_one_line_error
from tests.functional.test_cli import migrated_env  # noqa: F401 - the module-scoped fixture
from tests.functional.test_cli import popsync

DOMAIN = "cli-contacts.myshopify.com"


@pytest.fixture(scope="module")
def shop_env(migrated_env: dict[str, str]) -> dict[str, str]:  # noqa: F811
    added = popsync(
        migrated_env,
        "shops",
        "add",
        "--platform",
        "shopify",
        "--domain",
        DOMAIN,
        "--token",
        "t",
        "--region",
        "US",
    )
    assert added.returncode == 0, added.stderr
    return migrated_env


def test_import_prints_the_report_and_export_reads_it_back(shop_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "\ufeffEmail;Phone;First Name;Accepts Email Marketing;Tags\n"
        'ann@example.com;\'+14155552671;=Ann;yes;"vip, new"\n'
        "broken;;Bo;;\n"
        ";;Nobody;;\n",
        encoding="utf-8",
    )
    result = popsync(shop_env, "contacts", "import", str(source), "--domain", DOMAIN)
    assert result.returncode == 0, result.stderr
    assert "3 of 3 rows: 1 created, 0 updated, 1 skipped, 1 errors" in result.stdout
    assert "row 3: email:" in result.stdout

    out = popsync(shop_env, "contacts", "export", "--domain", DOMAIN)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0][:3] == ["email", "phone", "first_name"]
    assert rows[1][:3] == ["ann@example.com", "'+14155552671", "'=Ann"]
    assert rows[1][7] == "subscribed"

    target = tmp_path / "out.csv"
    assert popsync(shop_env, "contacts", "export", "--domain", DOMAIN, "-o", str(target)).returncode == 0
    assert target.read_text(encoding="utf-8") == out.stdout


def test_a_refused_file_is_a_one_line_error(shop_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("first_name,last_name\nAnn,Lee\n", encoding="utf-8")
    result = popsync(shop_env, "contacts", "import", str(bad), "--domain", DOMAIN)
    assert_one_line_error(result, "email or phone")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,first_name\nann@example.com,Jos\u00e9\n".encode("latin-1"))
    assert_one_line_error(popsync(shop_env, "contacts", "import", str(latin), "--domain", DOMAIN), "UTF-8")
    assert_one_line_error(
        popsync(shop_env, "contacts", "import", str(tmp_path / "missing.csv"), "--domain", DOMAIN),
        "missing.csv",
    )
    assert_one_line_error(
        popsync(shop_env, "contacts", "import", str(bad), "--domain", "nope.myshopify.com"), "nope"
    )


def test_export_of_an_unknown_segment_is_a_one_line_error(shop_env: dict[str, str]) -> None:
    assert_one_line_error(
        popsync(shop_env, "contacts", "export", "--domain", DOMAIN, "--segment", "999"), "999"
    )
    assert_one_line_error(
        popsync(shop_env, "contacts", "export", "--domain", DOMAIN, "--segment", "x"), "segment"
    )
