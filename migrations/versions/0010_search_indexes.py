"""Search indexes for the contact list's ``q``

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``q`` matches part of the first or last name or the email (any case), or the digits of the phone
(app/contacts/queries.py). A ``LIKE '%x%'`` cannot use a B-tree, so each database gets a trigram index over
one search text made of those four values; the query uses it as a prefilter (every exact match contains
the needle in that text) and keeps the exact condition as the recheck, so results are the same with or
without the index.

- PostgreSQL: ``pg_trgm`` and one GIN index (``gin_trgm_ops``) on the expression
  ``lower(first_name || ' ' || last_name || ' ' || email || ' ' || phone)`` (each coalesced to ''). One
  expression index rather than four column indexes: an import writes one GIN entry set per contact
  instead of four, a search is one bitmap scan instead of a BitmapOr of four, and there is no stored
  column for a write path to forget.
- SQLite: an FTS5 table with the ``trigram`` tokenizer (SQLite >= 3.34), ``contacts_search(search)``
  whose rowid is the contact's id, kept in step with ``contacts`` by three triggers.

Production note (PostgreSQL): Alembic runs each migration in a transaction, where ``CREATE INDEX
CONCURRENTLY`` is not allowed, so this takes a plain ``CREATE INDEX``, which blocks writes to ``contacts``
while it builds (about a minute per few million contacts). On a large live database, create the index
by hand first, outside a transaction, with the same name::

    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_contacts_search_trgm ON contacts USING gin (<expression>
    below> gin_trgm_ops);

and this migration then finds it there (``IF NOT EXISTS``) and only records the revision. The extension
needs a role allowed to create it (pg_trgm is a trusted extension since PostgreSQL 13: the database
owner may).
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Keep in step with app/contacts/queries.py (SEARCH_TEXT): the query must use the very same expression
# for PostgreSQL to match it to the index.
PG_SEARCH_TEXT = (
    "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '')"
    " || ' ' || coalesce(phone, ''))"
)
SQLITE_SEARCH_TEXT = (
    "coalesce({row}.first_name, '') || ' ' || coalesce({row}.last_name, '') || ' ' || coalesce({row}.email, '')"
    " || ' ' || coalesce({row}.phone, '')"
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_contacts_search_trgm ON contacts"
            f" USING gin (({PG_SEARCH_TEXT}) gin_trgm_ops)"
        )
    elif dialect == "sqlite":
        op.execute("CREATE VIRTUAL TABLE contacts_search USING fts5(search, tokenize = 'trigram')")
        op.execute(
            "INSERT INTO contacts_search (rowid, search)"  # noqa: S608 (constant SQL, no input)
            f" SELECT contacts.id, {SQLITE_SEARCH_TEXT.format(row='contacts')} FROM contacts"
        )
        op.execute(
            "CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts BEGIN"  # noqa: S608 (constant SQL, no input)
            f" INSERT INTO contacts_search (rowid, search) VALUES (new.id, {SQLITE_SEARCH_TEXT.format(row='new')});"
            " END"
        )
        op.execute(
            "CREATE TRIGGER contacts_search_update AFTER UPDATE OF first_name, last_name, email, phone"  # noqa: S608 (constant SQL, no input)
            " ON contacts BEGIN"
            f" UPDATE contacts_search SET search = {SQLITE_SEARCH_TEXT.format(row='new')} WHERE rowid = new.id;"
            " END"
        )
        op.execute(
            "CREATE TRIGGER contacts_search_delete AFTER DELETE ON contacts BEGIN"
            " DELETE FROM contacts_search WHERE rowid = old.id;"
            " END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # The extension stays: other objects may use it, and dropping it needs more rights than this.
        op.execute("DROP INDEX IF EXISTS ix_contacts_search_trgm")
    elif dialect == "sqlite":
        for trigger in ("contacts_search_insert", "contacts_search_update", "contacts_search_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS contacts_search")
