"""CSV import and export throughput through the real path (the sync rules, set-based batches).

    .venv/bin/python bench/import.py [--rows 1000000] [--batch 1000]
                                     [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]

Generates a realistic CSV (names from a small pool of common names, 30% gmail.com, phones for half the
rows, a few tags, consent words), imports it into a fresh shop of a fresh database (a new PostgreSQL
database on that server, else a temporary SQLite file) with pass 1 and pass 2 as the CLI runs them, then
exports every contact to a file, and imports the same rows again with one more tag each (every row an
update of a stored contact). Prints rows/s for each and the peak traced memory (tracemalloc) and RSS.
Goals: import >= 10,000 rows/s and export >= 100,000 rows/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa
from common import drop_database
from common import emit_result
from common import fresh_database
from common import process_stat

from app import create_app
from app.admin.imports import export_statement
from app.cli import upgrade_database
from app.contacts import import_rows
from app.contacts.csvio import export_lines
from app.contacts.queries import export_rows
from app.db import Database
from app.db import get_database
from app.imports import COMMITS_IN_FLIGHT
from app.imports import ImportRunner
from app.imports import start_import
from app.shops import register_shop

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Sofia",
    "Lucas",
    "Mia",
    "Yuki",
    "Wei",
    "Fatima",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Chen",
    "Kim",
    "Nguyen",
    "Müller",
]
DOMAINS = ["yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "example.org"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["email", "phone", "first_name", "last_name", "birthday", "gender", "country", "email_consent",
             "sms_consent", "tags"]
        )  # fmt: skip
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            domain = "gmail.com" if rng.random() < 0.3 else rng.choice(DOMAINS)
            email = f"{first}.{last}.{i}@{domain}".lower()
            phone = f"+1415{rng.randint(200, 999)}{rng.randint(0, 9999):04d}" if i % 2 == 0 else ""
            birthday = f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            writer.writerow(
                [
                    email,
                    phone,
                    first,
                    last,
                    birthday if rng.random() < 0.3 else "",
                    rng.choice(["female", "male", "", ""]),
                    "US",
                    rng.choice(["yes", "no", "", "subscribed"]),
                    rng.choice(["yes", "no", ""]) if phone else "",
                    rng.choice(["", "vip", "newsletter, vip", "wholesale"]),
                ]
            )


def with_one_more_tag(source: Path, target: Path, tag: str) -> None:
    """``source`` again with ``tag`` added to every row's tags: importing it updates every contact."""
    with (
        open(source, encoding="utf-8", newline="") as rows,
        open(target, "w", encoding="utf-8", newline="") as out,
    ):
        reader, writer = csv.reader(rows), csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        tags = header.index("tags")
        for cells in reader:
            cells[tags] = f"{cells[tags]}, {tag}" if cells[tags] else tag
            writer.writerow(cells)


def fresh_database_url(server: str | None, folder: Path) -> str:
    if server:
        return fresh_database(server)[0]
    return f"sqlite:///{folder / 'bench.sqlite3'}"


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(db: Database) -> float:
    """CPU time of the PostgreSQL backends serving this benchmark's database (same machine: /proc), so the
    figures split into the app's share and the database's whatever else runs on the machine."""
    if db.dialect != "postgresql":
        return 0.0
    with db.engine.connect() as connection:
        pids = connection.scalars(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).all()
    stats = (process_stat(pid) for pid in pids)
    return sum(stat.cpu_seconds for stat in stats if stat is not None)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument(
        "--commits-in-flight",
        type=int,
        default=COMMITS_IN_FLIGHT,
        help="batches committing at once on PostgreSQL (app/imports.py; 1 is the one-ahead pipeline)",
    )
    parser.add_argument("--profile", action="store_true", help="profile the import with pyinstrument")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="popsync-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "contacts.csv"
        started = time.perf_counter()
        generate(source, args.rows)
        again = folder / "contacts-again.csv"  # made now: an import removes its file when it is done
        with_one_more_tag(source, again, "spring-list")
        print(
            f"generated {args.rows:,} rows ({source.stat().st_size / 1e6:.1f} MB)"
            f" in {time.perf_counter() - started:.1f} s"
        )
        url = fresh_database_url(args.database, folder)
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench-secret-key-0123456789abcdef",
                "POPSYNC_ENV": "production",
            }
        )
        upgrade_database(app)
        db = get_database(app)
        with app.app_context():
            with db.write_transaction() as session:
                shop = register_shop(
                    session,
                    app.extensions["popsync.keyring"],
                    platform="shopify",
                    domain="bench.myshopify.com",
                    token="shpat_bench",  # noqa: S106 (not a credential)
                    region="US",
                )
                shop_id = shop.id
            started = time.perf_counter()
            record = start_import(db, shop_id, source, filename="contacts.csv", write_platform=False)
            pass1 = time.perf_counter() - started
            runner = ImportRunner(
                db,
                app.extensions["popsync.contacts"],
                batch_size=args.batch,
                commits_in_flight=args.commits_in_flight,
            )
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler()
                profiler.start()
            started, app_cpu, db_cpu = time.perf_counter(), cpu_seconds(), server_cpu_seconds(db)
            parser_cpu = import_rows.parser_cpu.seconds
            runner.run(record.id)
            pass2 = time.perf_counter() - started
            # Backends that closed during the run are not counted: the pool keeps its connections open. The
            # parsing process reports its CPU time when it ends (with each step).
            app_cpu, db_cpu = cpu_seconds() - app_cpu, server_cpu_seconds(db) - db_cpu
            parser_cpu = import_rows.parser_cpu.seconds - parser_cpu
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False)[:6000])
            with db.sessionmaker() as session:
                counts = session.execute(
                    sa.text("SELECT created, updated, skipped, error_count FROM imports WHERE id = :id"),
                    {"id": record.id},
                ).one()
            print(f"database: {db.dialect}")
            print(f"import pass 1 (check and count): {pass1:.1f} s, {args.rows / pass1:,.0f} rows/s")
            print(
                f"import pass 2 (sync rules, batches of {args.batch}): {pass2:.1f} s,"
                f" {args.rows / pass2:,.0f} rows/s"
            )
            print(
                f"  CPU per row: the app {app_cpu / args.rows * 1e6:.0f} us (and its parsing process"
                f" {parser_cpu / args.rows * 1e6:.0f} us), the database's backends"
                f" {db_cpu / args.rows * 1e6:.0f} us (wall {pass2 / args.rows * 1e6:.0f} us)"
            )
            print(f"import overall: {args.rows / (pass1 + pass2):,.0f} rows/s; outcome {tuple(counts)}")
            figures = {
                "rows": args.rows,
                "rows_per_s": round(args.rows / (pass1 + pass2)),
                "pass2_rows_per_s": round(args.rows / pass2),
                "app_cpu_us_per_row": round(app_cpu / args.rows * 1e6),
                "parser_cpu_us_per_row": round(parser_cpu / args.rows * 1e6),
                "database_cpu_us_per_row": round(db_cpu / args.rows * 1e6),
            }
            print(f"RSS after import: {rss_mb():.0f} MB")

            target = folder / "export.csv"
            # A live table has planner statistics; this one was filled seconds ago and autovacuum may not
            # have analysed it yet (without them the keyset page by id can be planned as a scan of the
            # shop's contacts and a sort, which measures the missing ANALYZE, not the export).
            with db.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
            with db.sessionmaker() as session:
                statement = export_statement(session, shop_id)
            # The reader the admin route and `popsync contacts export` use (Core rows of 5,000, tags as
            # JSON text) and the CSV writer.
            readers = {"export (queries.export_rows)": lambda: export_rows(db, statement)}
            for label, read in readers.items():
                started = time.perf_counter()
                with open(target, "w", encoding="utf-8", newline="") as out:
                    out.writelines(export_lines(read()))
                seconds = time.perf_counter() - started
                # Memory measured on a second run: tracemalloc slows Python down several times.
                tracemalloc.start()
                with open(target, "w", encoding="utf-8", newline="") as out:
                    out.writelines(export_lines(read()))
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                exported = sum(1 for _ in open(target, encoding="utf-8")) - 1  # noqa: SIM115
                print(
                    f"{label}: {exported:,} rows in {seconds:.1f} s, {exported / seconds:,.0f} rows/s,"
                    f" peak traced memory {peak / 1e6:.1f} MB"
                )
            figures["export_rows_per_s"] = round(exported / seconds)

            # A merchant importing the same list again, changed: every row an update of a stored contact.
            record = start_import(db, shop_id, again, filename="contacts-again.csv", write_platform=False)
            started, app_cpu = time.perf_counter(), cpu_seconds()
            runner.run(record.id)
            seconds, app_cpu = time.perf_counter() - started, cpu_seconds() - app_cpu
            with db.sessionmaker() as session:
                updated = session.scalar(
                    sa.text("SELECT updated FROM imports WHERE id = :id"), {"id": record.id}
                )
            print(
                f"re-import of the same rows with one more tag (every row an update): {seconds:.1f} s,"
                f" {args.rows / seconds:,.0f} rows/s (pass 2), {updated:,} updated,"
                f" app CPU {app_cpu / args.rows * 1e6:.0f} us a row"
            )
            figures["reimport_rows_per_s"] = round(args.rows / seconds)
            print(f"RSS at the end: {rss_mb():.0f} MB")
        db.engine.dispose()
        if args.database:
            drop_database(args.database, str(sa.make_url(url).database))
    emit_result("import", database=db.dialect, **figures)


if __name__ == "__main__":
    main()
