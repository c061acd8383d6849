"""The limit for CSV import: PostgreSQL ``COPY`` of the same generated rows into the same table.

    .venv/bin/python bench/copy_reference.py [--rows 200000] [--seed 7]
                                             [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]

Generates the CSV bench/import.py imports (its ``generate``, same rows and seed), turns each row into the
``contacts`` row an import would write (normalised values, consent words as states, tags as a JSON list)
and, untimed, into COPY's text format. Then, timed: one ``COPY contacts (…) FROM STDIN`` of those rows into
a fresh migrated database (so the table carries every index and constraint the import writes through:
the B-trees and the trigram search index), committed. No rules, no events, no outbox: what the database
alone can take. Prints rows/s and ``RESULT {json}`` last (bench/run_all.py compares the import with it).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path

from common import DEFAULT_SERVER
from common import SECRET
from common import add_shops
from common import emit_result
from common import fresh_postgres
from common import migrate

from app import create_app
from app.db import get_database

COLUMNS = (
    "shop_id", "email", "phone", "first_name", "last_name", "birthday", "gender", "country",
    "email_consent", "sms_consent", "tags", "source", "sync_status", "pending_fields", "pending_tags",
    "created_at", "updated_at",
)  # fmt: skip
SUBSCRIBE = {"yes", "true", "subscribed"}


def _text(value: str | None) -> str:
    """One field in COPY's text format."""
    if value is None or value == "":
        return r"\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def contact_lines(source: Path, shop_id: int) -> Iterator[str]:
    """The CSV's rows as COPY lines of the ``contacts`` table."""
    now = datetime.now(UTC).isoformat()
    with open(source, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            tags = [tag.strip() for tag in (row["tags"] or "").split(",") if tag.strip()]
            values = [
                str(shop_id),
                row["email"].strip().lower() or None,
                row["phone"] or None,
                row["first_name"],
                row["last_name"],
                row["birthday"],
                row["gender"],
                row["country"],
                "subscribed" if row["email_consent"] in SUBSCRIBE else "not_subscribed",
                "subscribed" if row["sms_consent"] in SUBSCRIBE else "not_subscribed",
                json.dumps(tags),
                "import",
                "local",
                "[]",
                "[]",
                now,
                now,
            ]
            yield "\t".join(_text(value) for value in values) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7, help="bench/import.py's generator seed")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="a PostgreSQL server URL")
    args = parser.parse_args()
    generate = importlib.import_module("import").generate  # bench/import.py (``import`` is a keyword)

    with tempfile.TemporaryDirectory(prefix="popsync-copy-") as tmp:
        source = Path(tmp) / "contacts.csv"
        generate(source, args.rows, args.seed)
        with fresh_postgres(args.database) as url:
            app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET})
            migrate(app)
            (shop,) = add_shops(app, 1, with_form=False)
            data = "".join(contact_lines(source, shop.id)).encode()
            engine = get_database(app).engine
            with engine.connect() as connection:
                driver = connection.connection.driver_connection
                started = time.perf_counter()
                statement = f"COPY contacts ({', '.join(COLUMNS)}) FROM STDIN"
                with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                    for offset in range(0, len(data), 1 << 20):
                        copy.write(data[offset : offset + (1 << 20)])
                driver.commit()  # type: ignore[union-attr]
                seconds = time.perf_counter() - started
            engine.dispose()
    print(
        f"COPY of {args.rows:,} generated rows into contacts (every index in place): {seconds:.2f} s, "
        f"{args.rows / seconds:,.0f} rows/s"
    )
    emit_result(
        "copy_reference", rows=args.rows, seconds=round(seconds, 3), rows_per_s=round(args.rows / seconds)
    )


if __name__ == "__main__":
    main()
