"""tracking hits (opens and clicks) and the once-per-message syncs they caused

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Two new tables; nothing existing is touched, so the release still running beside this one is unaffected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tracking_hits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("agent", sa.String(length=24), nullable=False),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("contact_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_tracking_hits_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_tracking_hits_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_hits")),
    )
    with op.batch_alter_table("tracking_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tracking_hits_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(
            "ix_tracking_hits_pending",
            ["id"],
            unique=False,
            postgresql_where=sa.text("processed_at IS NULL"),
            sqlite_where=sa.text("processed_at IS NULL"),
        )
        batch_op.create_index(
            "ix_tracking_hits_shop_id_occurred_at", ["shop_id", "occurred_at"], unique=False
        )

    op.create_table(
        "tracking_syncs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("recipient_key", sa.String(length=64), nullable=False),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("synced_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_tracking_syncs_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_tracking_syncs_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_syncs")),
        sa.UniqueConstraint(
            "shop_id",
            "kind",
            "message_id",
            "recipient_key",
            name=op.f("uq_tracking_syncs_shop_id_kind_message_id_recipient_key"),
        ),
    )
    with op.batch_alter_table("tracking_syncs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tracking_syncs_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tracking_syncs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_syncs_contact_id"))
    op.drop_table("tracking_syncs")
    with op.batch_alter_table("tracking_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_tracking_hits_shop_id_occurred_at")
        batch_op.drop_index("ix_tracking_hits_pending")
        batch_op.drop_index(batch_op.f("ix_tracking_hits_contact_id"))
    op.drop_table("tracking_hits")
