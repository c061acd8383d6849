"""shop platform state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

A migration must not lock a busy table for long, and must not break the release still running beside it
(add first, backfill, switch the code, remove in a later release). See docs/deploy.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        # Existing shops start with an empty state; the server default only fills the rows already there.
        batch_op.add_column(
            sa.Column("platform_state", app.db.JSONDocument, nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("platform_state")
