"""Leaner contact writes: partial phone and platform-customer indexes, no redundant event foreign key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Every contact written (an import writes thousands a second) pays for each index entry and each foreign key
check. Three of them bought nothing (docs/performance.md, "Import and export"):

- ``ix_contacts_shop_id_phone`` and ``ix_contacts_shop_id_platform_customer_id`` held an entry for every
  contact, also for the half without a phone and the many not (yet) linked to a platform customer. Every
  query they serve looks a value up (``phone = …``, ``platform_customer_id = …``), which implies the
  column is not null, so partial indexes ``WHERE … IS NOT NULL`` serve them the same with fewer entries.
- ``contact_events.shop_id`` referenced ``shops``: a check per event, on the one shop row every event of a
  shop points at. An event always belongs to a contact (``contact_id``, ``ON DELETE CASCADE``), which
  belongs to its shop (``ON DELETE CASCADE``): the chain already removes a shop's events, and
  ``shop_id`` stays as the copy of the contact's shop that scopes queries.

Production note (PostgreSQL): the two indexes are rebuilt with a plain ``CREATE INDEX``, which blocks
writes to ``contacts`` while it builds (seconds per million contacts, as only the rows with a value are
indexed). SQLite rebuilds ``contact_events`` to drop the constraint.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PARTIAL_INDEXES = {
    "ix_contacts_shop_id_phone": "phone",
    "ix_contacts_shop_id_platform_customer_id": "platform_customer_id",
}
EVENT_SHOP_FOREIGN_KEY = "fk_contact_events_shop_id_shops"


def upgrade() -> None:
    for name, column in PARTIAL_INDEXES.items():
        op.drop_index(name, table_name="contacts")
        op.create_index(
            name,
            "contacts",
            ["shop_id", column],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
        )
    with op.batch_alter_table("contact_events") as batch:
        batch.drop_constraint(EVENT_SHOP_FOREIGN_KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("contact_events") as batch:
        batch.create_foreign_key(EVENT_SHOP_FOREIGN_KEY, "shops", ["shop_id"], ["id"], ondelete="CASCADE")
    for name, column in PARTIAL_INDEXES.items():
        op.drop_index(name, table_name="contacts")
        op.create_index(name, "contacts", ["shop_id", column])
