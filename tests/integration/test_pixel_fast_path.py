"""The pixel's PostgreSQL fast path (one autocommitted INSERT … SELECT on a connection of its own) refuses
exactly what the portable path refuses: an uninstalled shop and an erased recipient record nothing."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest
import sqlalchemy as sa

from app.contacts.service import ContactService
from app.crypto import Keyring
from app.db import Database
from app.db import utcnow
from app.models import Shop
from app.models import TrackingHit
from app.shops import register_shop
from app.tracking.hits import _local
from app.tracking.hits import _text_array
from app.tracking.hits import close_fast_connection
from app.tracking.hits import record_hit
from app.tracking.tokens import TrackingLink
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.postgresql


def hits(engine: sa.Engine, shop_id: int) -> int:
    with engine.connect() as connection:
        return (
            connection.scalar(sa.select(sa.func.count(TrackingHit.id)).where(TrackingHit.shop_id == shop_id))
            or 0
        )


def installed_shop(engine: sa.Engine) -> tuple[Database, Keyring, int]:
    """The database, a keyring and one installed shop's id."""
    database = Database(str(engine.url), engine=engine)
    keyring = Keyring(TEST_SECRET_KEY)
    with database.write_transaction() as session:
        shop = register_shop(session, keyring, platform="shopify", domain="open.myshopify.com", token="t")
        return database, keyring, shop.id


def test_the_fast_path_records_only_what_it_may(fresh_database: sa.Engine) -> None:
    database = Database(str(fresh_database.url), engine=fresh_database)
    assert database.dialect == "postgresql"
    keyring = Keyring(TEST_SECRET_KEY)
    with database.write_transaction() as session:
        open_shop = register_shop(
            session, keyring, platform="shopify", domain="open.myshopify.com", token="t"
        )
        gone_shop = register_shop(
            session, keyring, platform="shopify", domain="gone.myshopify.com", token="t"
        )
        session.get(Shop, gone_shop.id).uninstalled_at = utcnow()  # type: ignore[union-attr]
        ContactService(database, keyring).suppress(session, open_shop.id, "email", "erased@example.com")
        open_id, gone_id = open_shop.id, gone_shop.id

    def opened(shop_id: int, email: str) -> bool:
        link = TrackingLink(
            shop_id=shop_id, channel="email", message_id="m1", issued_at=utcnow(), email=email
        )
        return record_hit(
            database,
            keyring,
            link,
            "token",
            kind="open",
            user_agent="Mozilla/5.0",
            client_address="192.0.2.1",
            now=utcnow(),
        )

    try:
        assert opened(open_id, "ann@example.com") is True
        assert opened(gone_id, "ann@example.com") is False
        assert opened(open_id, "erased@example.com") is False
    finally:
        close_fast_connection()
    assert hits(fresh_database, open_id) == 1
    assert hits(fresh_database, gone_id) == 0


def test_the_fast_path_reconnects_once_when_the_server_closed_its_connection(
    fresh_database: sa.Engine,
) -> None:
    database, keyring, shop_id = installed_shop(fresh_database)

    def opened(message_id: str = "m1", now: datetime | None = None) -> bool:
        link = TrackingLink(
            shop_id=shop_id, channel="email", message_id=message_id, issued_at=utcnow(), email="a@b.co"
        )
        return record_hit(
            database,
            keyring,
            link,
            "token",
            kind="open",
            user_agent=None,
            client_address=None,
            now=now or utcnow(),
        )

    try:
        assert opened() is True
        with fresh_database.connect() as admin:  # an idle timeout or a restart, as the app sees it
            killed = admin.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE '%tracking_hits%'"
                )
            )
        assert killed == 1
        assert opened() is True
        with pytest.raises(psycopg.DataError):  # libpq would cut the value at the NUL; refused instead
            opened("m\x00evil")
        with pytest.raises(ValueError, match="naive"):  # the server would read it in its own time zone
            opened(now=datetime(2026, 11, 30, 12, 0))
        # A pooler in between, or anything that drops the prepared statement: prepared again, recorded.
        connection = _local.connection
        connection.execute("DEALLOCATE popsync_record_hit")
        assert opened() is True
        assert _local.connection is not connection
    finally:
        close_fast_connection()
    assert hits(fresh_database, shop_id) == 3


def test_the_fast_path_sends_utf8_whatever_the_clients_default_encoding(
    fresh_database: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    database, keyring, shop_id = installed_shop(fresh_database)
    link = TrackingLink(
        shop_id=shop_id, channel="email", message_id="Newsletter — März", issued_at=utcnow(), email="a@b.co"
    )
    try:
        assert record_hit(
            database, keyring, link, "token", kind="open", user_agent=None, client_address=None, now=utcnow()
        )
    finally:
        close_fast_connection()
    with fresh_database.connect() as connection:
        stored = connection.scalar(sa.select(TrackingHit.message_id).where(TrackingHit.shop_id == shop_id))
    assert stored == "Newsletter — März"


def test_the_fast_paths_text_arrays_reach_postgresql_as_they_were(fresh_database: sa.Engine) -> None:
    items = ["abc", 'a "quoted" one', "back\\slash", "comma,brace}{", "", "NULL"]
    with fresh_database.connect() as connection:
        stored = connection.scalar(sa.text("SELECT CAST(:items AS text[])"), {"items": _text_array(items)})
    assert stored == items
