"""CSV imports and their per-batch row outcomes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Two new tables; nothing existing is touched, so the release still running beside this one is unaffected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", BigId, nullable=False),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("write_platform", sa.Boolean(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("errors", app.db.JSONDocument, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_imports_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.create_index("ix_imports_shop_id_id", ["shop_id", "id"], unique=False)

    op.create_table(
        "import_batches",
        sa.Column("id", BigId, nullable=False),
        sa.Column("import_id", BigId, nullable=False),
        sa.Column("first_row", sa.Integer(), nullable=False),
        sa.Column("entries", app.db.JSONDocument, nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["imports.id"],
            name=op.f("fk_import_batches_import_id_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_batches")),
        sa.UniqueConstraint("import_id", "first_row", name=op.f("uq_import_batches_import_id_first_row")),
    )


def downgrade() -> None:
    op.drop_table("import_batches")
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.drop_index("ix_imports_shop_id_id")
    op.drop_table("imports")
