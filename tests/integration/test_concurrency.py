"""Rule 10: concurrent submissions for the same people give the same contacts as one after another.

32 threads submit overlapping records with real commits on a fresh database. Transactions that touch the
same identifiers or contacts are serialised by the locks, in the order they decided; the test replays the
records one by one in that order into another shop and compares the two contact lists.
Records that share nothing commute but for their contacts' updated_at (rule 5 reads it later), which the
replay order keeps.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.contacts.service import ContactService
from app.crypto import Keyring
from app.db import Database
from app.enums import Source
from app.models import Contact
from app.models import ContactEvent
from app.shops import register_shop
from tests.conftest import TEST_SECRET_KEY

THREADS = 32
PER_THREAD = 12
EMAILS = [f"p{i}@example.com" for i in range(5)]
PHONES = [f"+1415555{2670 + i:04d}" for i in range(5)]


def make_records(seed: int) -> list[Collected]:
    rng = random.Random(seed)
    records = []
    for _ in range(THREADS * PER_THREAD):
        shape = rng.choice(("email", "phone", "both", "both"))
        records.append(
            Collected(
                email=rng.choice(EMAILS) if shape in ("email", "both") else None,
                phone=rng.choice(PHONES) if shape in ("phone", "both") else None,
                first_name=rng.choice((None, "Ann", "Bo", "Cy")),
                last_name=rng.choice((None, "Lee", "Ng")),
                tags=tuple(rng.sample(("vip", "popup", "sale"), rng.randint(0, 2))),
                email_consent=rng.choice((None, ConsentIntent.SUBSCRIBE)),
                sms_consent=rng.choice((None, ConsentIntent.SUBSCRIBE)),
            )
        )
    return records


def contact_state(database: Database, shop_id: int) -> list[tuple[Any, ...]]:
    with database.sessionmaker() as session:
        found = session.scalars(sa.select(Contact).where(Contact.shop_id == shop_id))
        return sorted(
            (
                c.email or "",
                c.phone or "",
                c.first_name or "",
                c.last_name or "",
                tuple(sorted(c.tags)),
                c.email_consent,
                c.sms_consent,
            )
            for c in found
        )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_concurrent_submissions_equal_the_same_submissions_in_sequence(
    fresh_database: sa.Engine, seed: int
) -> None:
    database = Database(str(fresh_database.url), engine=fresh_database)
    keyring = Keyring(TEST_SECRET_KEY)
    service = ContactService(database, keyring)
    with database.write_transaction() as session:
        concurrent_shop = register_shop(
            session, keyring, platform="shopify", domain="c.myshopify.com", token="t"
        )
        sequential_shop = register_shop(
            session, keyring, platform="shopify", domain="s.myshopify.com", token="t"
        )
    records = make_records(seed)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def submit(thread_index: int) -> None:
        try:
            start.wait()
            for i in range(thread_index, len(records), THREADS):
                service.sync(concurrent_shop.id, records[i], source=Source.FORM, evidence={"record": i})
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    # Replayed in the order the syncs decided (their events' time, which is also the contacts' updated_at):
    # for syncs that conflict it is the order the locks gave them; for syncs that share nothing it is the
    # order rule 5 later sees in updated_at, when a record holding identifiers of both picks the most
    # recently updated. (The events' ids are not that order: a sync that decided first may insert its event
    # after one that decided later, and replaying by id then failed now and then.)
    with database.sessionmaker() as session:
        order = session.scalars(
            sa.select(ContactEvent.data["record"].as_integer())
            .where(ContactEvent.shop_id == concurrent_shop.id, ContactEvent.kind == "submitted")
            .order_by(ContactEvent.occurred_at, ContactEvent.id)
        ).all()
    assert sorted(order) == list(range(len(records)))  # every record landed exactly once

    for i in order:
        service.sync(sequential_shop.id, records[i], source=Source.FORM)

    concurrent = contact_state(database, concurrent_shop.id)
    assert concurrent == contact_state(database, sequential_shop.id)
    # No duplicate was created by a race: a pair (email, phone) is held by at most one contact.
    pairs = [(email, phone) for email, phone, *_ in concurrent]
    assert len(pairs) == len(set(pairs))
