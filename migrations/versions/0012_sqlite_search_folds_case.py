"""SQLite's contact search folds the case of every letter, not only ASCII's

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

SQLite's built-in ``lower()`` and the trigram table's ``LIKE`` fold ASCII letters only, so on SQLite (the
default install and ``popsync demo``) a search for "émile" or "łukasz" did not find "Émile Łukasz".
PostgreSQL folds every letter (in a UTF-8 database). popsync's SQLite connections now replace ``lower()``
with Python's (app/db.py, ``unicode_lower``), and the trigram table of migration 0010 holds the lowered
search text, kept so by its triggers, so that the lowered needle matches it whatever the case. This
migration rewrites the triggers and refills the table; PostgreSQL is unchanged.
"""

from __future__ import annotations

from typing import Any

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The text migration 0010 indexes, for a row: the two names, the email and the phone.
SEARCH_TEXT = (
    "coalesce({row}.first_name, '') || ' ' || coalesce({row}.last_name, '') || ' ' || coalesce({row}.email, '')"
    " || ' ' || coalesce({row}.phone, '')"
)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _rebuild(text: str) -> None:
    """The triggers and the table's content, with ``text`` (a template on ``{row}``) as the search text."""
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT lower('É')").scalar() != "é":
        # A connection alembic made itself (popsync's own already fold every letter, app/db.py): the same
        # lower() for the refill below. Such a connection is closed when the migration ends.
        bind.connection.driver_connection.create_function("lower", 1, _lower, deterministic=True)  # type: ignore[union-attr]
    for trigger in ("contacts_search_insert", "contacts_search_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute(
        "CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts BEGIN"  # noqa: S608 (constant SQL, no input)
        f" INSERT INTO contacts_search (rowid, search) VALUES (new.id, {text.format(row='new')});"
        " END"
    )
    op.execute(
        "CREATE TRIGGER contacts_search_update AFTER UPDATE OF first_name, last_name, email, phone"  # noqa: S608 (constant SQL, no input)
        " ON contacts BEGIN"
        f" UPDATE contacts_search SET search = {text.format(row='new')} WHERE rowid = new.id;"
        " END"
    )
    op.execute("DELETE FROM contacts_search")
    op.execute(
        "INSERT INTO contacts_search (rowid, search)"  # noqa: S608 (constant SQL, no input)
        f" SELECT contacts.id, {text.format(row='contacts')} FROM contacts"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(f"lower({SEARCH_TEXT})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(SEARCH_TEXT)
