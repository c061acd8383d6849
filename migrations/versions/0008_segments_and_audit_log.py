"""segments and the audit log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Two new tables; nothing existing is touched, so the release still running beside this one is unaffected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", BigId, nullable=False),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("conditions", app.db.JSONDocument, nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_segments_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
    )
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_segments_shop_id"), ["shop_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("summary", app.db.JSONDocument, nullable=False),
        sa.Column("occurred_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_audit_log_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_shop_id_occurred_at", ["shop_id", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_shop_id_occurred_at")
    op.drop_table("audit_log")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segments_shop_id"))
    op.drop_table("segments")
