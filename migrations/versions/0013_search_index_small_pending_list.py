"""The search index's pending list flushed in small steps

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

PostgreSQL's GIN index (``ix_contacts_search_trgm``, migration 0010) keeps new entries in a pending list
and merges the list into the index when it passes ``gin_pending_list_limit`` (4 MB by default). The
insert that passes the limit does the merge, and every other insert into the index waits for it. At 4 MB
that was one contact in about 5,000 taking 24 to 31 ms instead of 0.3, with the storefront's submissions
queued behind it (docs/performance.md, "The search index's pending list"). At 256 kB a merge takes a few
milliseconds; the mean insert did not change.

SQLite's search table (FTS5) has no pending list: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PENDING_LIST_KB = 256


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER INDEX IF EXISTS ix_contacts_search_trgm SET (gin_pending_list_limit = {PENDING_LIST_KB})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX IF EXISTS ix_contacts_search_trgm RESET (gin_pending_list_limit)")
