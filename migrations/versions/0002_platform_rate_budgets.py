"""platform rate budgets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

A migration must not lock a busy table for long, and must not break the release still running beside it
(add first, backfill, switch the code, remove in a later release). See docs/deploy.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_budgets",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("capacity", sa.Float(), nullable=False),
        sa.Column("available", sa.Float(), nullable=False),
        sa.Column("restore_rate", sa.Float(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_platform_budgets_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_platform_budgets")),
    )


def downgrade() -> None:
    op.drop_table("platform_budgets")
