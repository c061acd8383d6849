"""A token restored while a worker is still handling the old token's refusal: the shop must not be marked
as needing re-authorisation, and the write must not be parked (nothing would queue it again: the restore
has already queued the shop's failed writes)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app import jobs as worker_jobs
from app.contacts.rules import Collected
from app.contacts.service import ContactService
from app.db import Database
from app.enums import Source
from app.jobs import Worker
from app.models import Contact
from app.models import Shop
from app.platforms.base import AuthFailed
from app.shops import register_shop
from tests.fakes import MemoryPlatform


def test_a_token_restored_during_the_refusal_is_not_marked_revoked(
    app: Flask, db: Database, service: ContactService, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = MemoryPlatform()
    worker = Worker(
        db,
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        service,
        rng=random.Random(1),
        client_factory=lambda _shop: platform,
        base_backoff=0.0,
    )
    result = service.sync(shop.id, Collected(email="ann@example.com"), source=Source.FORM)
    platform.failures = [AuthFailed("Shopify refused the access token (HTTP 401)")]

    def refused_then_restored(*args: Any, refused_token: str | None = None, **kwargs: Any) -> bool:
        if refused_token is None:
            return False  # the check before the push: nothing due
        # The refresh is refused … and the merchant re-installs at that moment (a new token is stored).
        with db.write_transaction() as session:
            register_shop(
                session,
                app.extensions["popsync.keyring"],
                platform="shopify",
                domain=shop.domain,
                token="shpat_new_after_reinstall",
            )
        raise AuthFailed("Shopify refused the access token and it has no refresh token")

    monkeypatch.setattr(worker_jobs, "refresh_if_due", refused_then_restored)
    worker.run_once()
    monkeypatch.undo()

    with db.sessionmaker() as session:
        assert session.get(Shop, shop.id).needs_reauth is False  # type: ignore[union-attr]
    worker.run(until_idle=True)
    with db.sessionmaker() as session:
        contact = session.get(Contact, result.contact_id)
        assert contact is not None
        assert contact.sync_status == "synced", contact.sync_detail
        assert session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 1
    assert len(platform.customers) == 1
