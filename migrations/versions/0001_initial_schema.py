"""initial schema: shops, contacts, events, outbox, suppressions

Revision ID: 0001
Revises:
Create Date: 2026-11-29

A migration must not lock a busy table for long, and must not break the release still running beside it
(add first, backfill, switch the code, remove in a later release). See docs/deploy.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_token_expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("refresh_token_expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scopes", sa.String(length=1024), nullable=True),
        sa.Column("needs_reauth", sa.Boolean(), nullable=False),
        sa.Column("installed_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("uninstalled_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shops")),
        sa.UniqueConstraint("domain", name=op.f("uq_shops_domain")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_api_keys_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_shop_id"), ["shop_id"], unique=False)

    op.create_table(
        "contacts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("gender", sa.String(length=16), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("email_consent", sa.String(length=16), nullable=False),
        sa.Column("email_consent_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("email_consent_source", sa.String(length=16), nullable=True),
        sa.Column("sms_consent", sa.String(length=16), nullable=False),
        sa.Column("sms_consent_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sms_consent_source", sa.String(length=16), nullable=True),
        sa.Column("tags", app.db.JSONDocument, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("platform_customer_id", sa.String(length=128), nullable=True),
        sa.Column("platform_updated_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sync_status", sa.String(length=16), nullable=False),
        sa.Column("sync_detail", sa.Text(), nullable=True),
        sa.Column("pending_fields", app.db.JSONDocument, nullable=False),
        sa.Column("pending_tags", app.db.JSONDocument, nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_contacts_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index("ix_contacts_shop_id_email", ["shop_id", "email"], unique=False)
        batch_op.create_index("ix_contacts_shop_id_phone", ["shop_id", "phone"], unique=False)
        batch_op.create_index(
            "ix_contacts_shop_id_platform_customer_id", ["shop_id", "platform_customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_contacts_shop_id_updated_at_id", ["shop_id", "updated_at", "id"], unique=False
        )

    op.create_table(
        "shop_domains",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_shop_domains_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_domains")),
        sa.UniqueConstraint("origin", name=op.f("uq_shop_domains_origin")),
    )
    with op.batch_alter_table("shop_domains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shop_domains_shop_id"), ["shop_id"], unique=False)

    op.create_table(
        "suppressions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_suppressions_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("shop_id", "kind", "digest", name=op.f("uq_suppressions_shop_id_kind_digest")),
    )
    op.create_table(
        "contact_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("contact_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", app.db.JSONDocument, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_events_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_contact_events_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_events")),
    )
    with op.batch_alter_table("contact_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_events_contact_id_occurred_at", ["contact_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_contact_events_shop_id_kind_occurred_at", ["shop_id", "kind", "occurred_at"], unique=False
        )

    op.create_table(
        "outbox_items",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("contact_id", BIG_ID, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", app.db.JSONDocument, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("leased_until", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_failed_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_outbox_items_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_outbox_items_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_items")),
    )
    with op.batch_alter_table("outbox_items", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_items_shop_id_status", ["shop_id", "status"], unique=False)
        batch_op.create_index("ix_outbox_items_status_due_at", ["status", "due_at"], unique=False)
        batch_op.create_index(
            "uq_outbox_items_pending_push",
            ["contact_id"],
            unique=True,
            postgresql_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
            sqlite_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_items", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_outbox_items_pending_push",
            postgresql_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
            sqlite_where=sa.text("status = 'pending' AND kind = 'push_contact'"),
        )
        batch_op.drop_index("ix_outbox_items_status_due_at")
        batch_op.drop_index("ix_outbox_items_shop_id_status")

    op.drop_table("outbox_items")
    with op.batch_alter_table("contact_events", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_events_shop_id_kind_occurred_at")
        batch_op.drop_index("ix_contact_events_contact_id_occurred_at")

    op.drop_table("contact_events")
    op.drop_table("suppressions")
    with op.batch_alter_table("shop_domains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shop_domains_shop_id"))

    op.drop_table("shop_domains")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_shop_id_updated_at_id")
        batch_op.drop_index("ix_contacts_shop_id_platform_customer_id")
        batch_op.drop_index("ix_contacts_shop_id_phone")
        batch_op.drop_index("ix_contacts_shop_id_email")

    op.drop_table("contacts")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_shop_id"))

    op.drop_table("api_keys")
    op.drop_table("shops")
