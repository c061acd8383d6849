"""The pixel's PostgreSQL fast path (one autocommitted INSERT … SELECT on a connection of its own) refuses
exactly what the portable path refuses: an uninstalled shop and an erased recipient record nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.contacts.service import ContactService
from app.crypto import Keyring
from app.db import Database
from app.db import utcnow
from app.models import Shop
from app.models import TrackingHit
from app.shops import register_shop
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
