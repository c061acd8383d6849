"""customer pulls, used signatures, daily schedule

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

A migration must not lock a busy table for long, and must not break the release still running beside it
(add first, backfill, switch the code, remove in a later release). See docs/deploy.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_signatures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_used_signatures")),
        sa.UniqueConstraint("purpose", "digest", name=op.f("uq_used_signatures_purpose_digest")),
    )
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_used_signatures_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "customer_pulls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_since", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cursor", app.db.JSONDocument, nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_customer_pulls_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_pulls")),
    )
    with op.batch_alter_table("customer_pulls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_pulls_shop_id_kind_status", ["shop_id", "kind", "status"], unique=False
        )

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_due_at", app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_shops_daily_due_at"), ["daily_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shops_daily_due_at"))
        batch_op.drop_column("daily_due_at")

    with op.batch_alter_table("customer_pulls", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_pulls_shop_id_kind_status")

    op.drop_table("customer_pulls")
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_signatures_expires_at"))

    op.drop_table("used_signatures")
