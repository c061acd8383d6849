"""PostgreSQL's plans for the erasure list's look-ups, on a list of tens of thousands of entries with its
statistics: each one an index probe by shop, kind and digest, never a read of the whole list.

The list's only index is (shop_id, kind, digest). A look-up by shop and digest alone cannot use its digest
column, and once a shop had erased tens of thousands of people PostgreSQL read the whole table instead, on
every submission (7 ms at 100,000 entries); naming the kinds (models.SUPPRESSION_KINDS) makes it a probe.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.contacts.service import _READ_ONE
from app.contacts.service import _SUPPRESSED
from app.prepared import _compiled
from app.tracking.hits import _FAST_INSERT

pytestmark = pytest.mark.postgresql  # the plans are PostgreSQL's

ERASED = 40_000


@pytest.fixture
def erasures(fresh_database: sa.Engine) -> sa.Engine:
    with fresh_database.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO shops (id, platform, domain, needs_reauth, installed_at, created_at, updated_at)"
            " VALUES (1, 'shopify', 'a.myshopify.com', false, now(), now(), now()),"
            " (2, 'shopify', 'b.myshopify.com', false, now(), now(), now())"
        )
        connection.execute(
            sa.text(
                "INSERT INTO suppressions (shop_id, kind, digest, created_at)"
                " SELECT 1 + mod(i, 2), CASE WHEN mod(i, 3) = 0 THEN 'phone' ELSE 'email' END,"
                " md5(i::text), now() FROM generate_series(1, :erased) AS i"
            ),
            {"erased": ERASED},
        )
    with fresh_database.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return fresh_database


def _suppression_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes that read the suppressions table."""
    found = [plan] if plan.get("Relation Name") == "suppressions" else []
    for child in plan.get("Plans", ()):
        found += _suppression_scans(child)
    return found


def _assert_probes(connection: sa.Connection, explain: str) -> None:
    (document,) = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {explain}").one()
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    scans = _suppression_scans(plan)
    assert scans, plan
    for scan in scans:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), scan
        condition = scan.get("Index Cond") or scan.get("Recheck Cond", "")
        assert "kind" in condition, scan
        assert "digest" in condition, scan


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_a_syncs_read_of_one_record_probes_the_list(erasures: sa.Engine, plan_cache_mode: str) -> None:
    compiled = _compiled(_READ_ONE, {})
    assert compiled is not None
    with erasures.connect() as connection:
        connection.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        connection.exec_driver_sql(f"PREPARE read_one AS {compiled.text}")
        _assert_probes(connection, "EXECUTE read_one(1, 'ann@example.com', NULL, ARRAY['ab12', 'cd34'])")


def test_a_batchs_read_probes_the_list(erasures: sa.Engine) -> None:
    statement = _SUPPRESSED.params(shop_id=1, digests=["ab12", "cd34", "ef56"])
    sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with erasures.connect() as connection:
        _assert_probes(connection, sql)


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_pixels_insert_probes_the_list(erasures: sa.Engine, plan_cache_mode: str) -> None:
    with erasures.connect() as connection:
        connection.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        connection.exec_driver_sql(f"PREPARE record_hit AS {_FAST_INSERT.decode()}")
        _assert_probes(
            connection,
            "EXECUTE record_hit('open', 'm1', 't1', 'agent', false, '10.0.0.1', now(), 1, ARRAY['ab12'])",
        )
