"""Contact list and search latency at 1,000,000 contacts in one shop, on PostgreSQL and on SQLite.

    .venv/bin/python bench/admin.py [--contacts 1000000] [--runs 20] [--explain] [--quick]
                                    [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                    [--pg-database popsync_bench_admin]
                                    [--sqlite /tmp/popsync-bench-admin.sqlite3] [--only postgresql|sqlite]

Builds the data once per database (a marker table remembers what was built; a different --contacts or
--seed builds again): a migrated database with one shop and N contacts with realistic names (Zipf-like
first and last names), 30% gmail.com, phones for half, spread over two years of updates. Loaded fast
(PostgreSQL: COPY; SQLite: executemany), not through the sync rules. Then runs the query mix through the
real query code (``queries.list_contacts``: first page, limit 50, most recently updated first), each query
once to warm up and then ``--runs`` times, and prints p50 / p95 / max per query and the overall p95.
The reference, measured in the same run: the very statements ``list_contacts`` sent for each query (caught
at the driver), run again as raw SQL through the driver with their rows fetched, no ORM objects built.
Also the same mix as a merchant's script or page asks it, ``GET /api/v1/contacts`` through the app (its API
key checked, the JSON built; Flask's test client, no HTTP server), and that overall p95.
Goals: overall p95 < 50 ms on PostgreSQL, < 150 ms on SQLite. ``--quick``: 20,000 contacts in a database of
their own (``popsync_bench_admin_quick``), 5 runs, PostgreSQL only. Prints ``RESULT {json}`` last
(bench/run_all.py; the PostgreSQL figures when both databases ran).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import emit_result
from common import percentile

from app import create_app
from app.cli import upgrade_database
from app.contacts import queries
from app.db import Database
from app.db import get_database
from app.models import Contact
from app.models import Shop
from app.shops import create_api_key
from app.shops import register_shop

PG_DATABASE = "popsync_bench_admin"
SHOP_DOMAIN = "bench-admin.myshopify.com"
FIRST = (  # noqa: SIM905 (a word list reads better as text)
    "james mary robert patricia john jennifer michael linda david elizabeth william barbara richard susan"
    " joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra"
    " mark margaret donald ashley steven kimberly andrew emily paul donna joshua michelle kenneth carol"
    " kevin amanda brian melissa george deborah timothy stephanie ronald rebecca jason sharon edward laura"
    " jeffrey cynthia ryan dorothy jacob amy gary kathleen nicholas angela eric shirley jonathan emma"
    " stephen brenda larry pamela justin nicole scott anna brandon samantha benjamin katherine samuel"
    " christine gregory debra alexander rachel patrick carolyn frank janet raymond maria jack olivia"
    " dennis heather jerry helen tyler catherine aaron diane jose julie adam victoria nathan joyce henry"
    " lauren zachary kelly douglas christina peter ruth kyle joan noah virginia ethan judith jeremy evelyn"
    " christian hannah walter andrea keith megan austin cheryl roger jacqueline terry martha sean madison"
    " gerald teresa carl gloria dylan sara harold janice jordan ann bryan kathryn lawrence abigail arthur"
    " sophia gabriel frances bruce jean logan alice billy judy joe isabella alan julia juan grace"
    " elijah amber willie denise albert danielle wayne marilyn randy beverly mason charlotte vincent"
    " natalie liam theresa roy diana bobby brittany caleb doris bradley kayla russell alexis lucas lori"
    " yuki wei fatima mohammed aisha priya raj mei chen sofia mateo lucia hiroshi ana ines"
).split()
LAST_COMMON = (  # noqa: SIM905
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez"
    " wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark"
    " ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams"
    " nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker"
    " cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper"
    " peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james"
    " bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez"
    " müller schmidt schneider fischer weber meyer wagner becker schulz hoffmann dubois moreau laurent"
    " rossi russo ferrari esposito bianchi romano colombo tanaka suzuki takahashi watanabe ito yamamoto"
    " wang li zhang liu chen yang huang zhao wu zhou kowalski nowak silva santos oliveira souza"
).split()
SYLLABLES = "ka lo mi ra ne to su vi de ba ro li an el or is un ha be ki zu po fe ga".split()  # noqa: SIM905
# A rare last name (a few dozen contacts of a million) and a rare two-letter string (no name has it).
RARE_LAST = "okonkwo"
RARE_PAIR = "qx"
DOMAINS = ("yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "aol.com", "gmx.de")
AREA_CODES = ("212", "310", "415", "512", "617", "646", "702", "808", "917", "206", "303", "404")


def _zipf_choice(rng: random.Random, items: list[str], weights: list[float]) -> str:
    return rng.choices(items, weights)[0]


def contacts(count: int, shop_id: int, seed: int) -> Iterator[dict[str, Any]]:
    """The synthetic contacts, in id order; updated_at grows with the id (two years, a little jitter)."""
    rng = random.Random(seed)
    tail = sorted({(a + b + c).capitalize() for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES})
    rng.shuffle(tail)
    lasts = [name.capitalize() for name in LAST_COMMON] + tail[:3000]
    last_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(lasts))]
    firsts = [name.capitalize() for name in FIRST]
    first_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(firsts))]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=730) / count
    for i in range(count):
        first = rng.choices(firsts, first_weights)[0]
        last = RARE_LAST.capitalize() if i % 25_000 == 7 else rng.choices(lasts, last_weights)[0]
        domain = "gmail.com" if rng.random() < 0.3 else rng.choice(DOMAINS)
        has_email = rng.random() < 0.92
        has_phone = i % 2 == 0 or not has_email
        moment = start + step * i + timedelta(seconds=rng.random())
        yield {
            "shop_id": shop_id,
            "email": f"{first}.{last}{i}@{domain}".lower() if has_email else None,
            "phone": f"+1{rng.choice(AREA_CODES)}{rng.randint(2000000, 9999999)}" if has_phone else None,
            "first_name": first if rng.random() < 0.85 else None,
            "last_name": last if rng.random() < 0.8 else None,
            "country": "US",
            "email_consent": rng.choice(("subscribed", "not_subscribed", "unsubscribed")),
            "sms_consent": "not_subscribed",
            "tags": [],
            "source": "import",
            "sync_status": "local",
            "pending_fields": [],
            "pending_tags": [],
            "created_at": moment,
            "updated_at": moment,
        }


def _marker(db: Database) -> str | None:
    with db.engine.connect() as connection:
        if not sa.inspect(connection).has_table("bench_marker"):
            return None
        return connection.exec_driver_sql("SELECT built FROM bench_marker").scalar()


def build(db: Database, app: Any, count: int, seed: int) -> int:
    """The shop's id, after building its contacts unless the marker says they are there."""
    wanted = f"{count}:{seed}:1"
    if _marker(db) == wanted:
        with db.sessionmaker() as session:
            return session.execute(
                sa.text("SELECT id FROM shops WHERE domain = :d"), {"d": SHOP_DOMAIN}
            ).scalar_one()
    upgrade_database(app)
    with app.app_context(), db.write_transaction() as session:
        session.execute(sa.text("DELETE FROM shops WHERE domain = :d"), {"d": SHOP_DOMAIN})
        shop = register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopify",
            domain=SHOP_DOMAIN,
            token="shpat_bench",  # noqa: S106 (not a credential)
            region="US",
        )
        shop_id = shop.id
    started = time.perf_counter()
    columns = list(next(contacts(1, shop_id, seed)))
    if db.dialect == "postgresql":
        from psycopg.types.json import Jsonb

        with db.engine.begin() as connection:
            driver = connection.connection.driver_connection
            with (
                driver.cursor() as cursor,
                cursor.copy(  # type: ignore[union-attr]
                    f"COPY contacts ({', '.join(columns)}) FROM STDIN"
                ) as copy,
            ):
                for row in contacts(count, shop_id, seed):
                    copy.write_row([Jsonb(v) if isinstance(v, list) else v for v in row.values()])
            connection.exec_driver_sql("ANALYZE contacts")
    else:
        table = Contact.__table__
        with db.engine.begin() as connection:
            batch: list[dict[str, Any]] = []
            for row in contacts(count, shop_id, seed):
                batch.append(row)
                if len(batch) == 20_000:
                    connection.execute(sa.insert(table), batch)
                    batch = []
            if batch:
                connection.execute(sa.insert(table), batch)
            connection.exec_driver_sql("ANALYZE")
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS bench_marker")
        connection.exec_driver_sql("CREATE TABLE bench_marker (built VARCHAR(64))")
        connection.execute(sa.text("INSERT INTO bench_marker (built) VALUES (:b)"), {"b": wanted})
    print(f"  built {count:,} contacts in {time.perf_counter() - started:.0f} s")
    return shop_id


def query_mix(db: Database, shop_id: int) -> list[tuple[str, str]]:
    """(label, q) for the mix, picking an existing email and phone from the data."""
    with db.sessionmaker() as session:
        total = session.scalar(sa.select(sa.func.count()).where(Contact.shop_id == shop_id)) or 0
        middle = session.execute(
            sa.select(Contact.email, Contact.phone)
            .where(Contact.shop_id == shop_id, Contact.email.is_not(None), Contact.phone.is_not(None))
            .order_by(Contact.id)
            .offset(total // 10)
            .limit(1)
        ).one()
    return [
        ("exact email", middle.email),
        ("gmail", "gmail"),
        ("rare last name", RARE_LAST.capitalize()),
        ("common first name", "James"),
        ("phone digits", middle.phone[-6:]),
        ("two letters", "an"),
    ]


def captured_statements(
    db: Database, shop_id: int, q: str | None, channel: str | None
) -> list[tuple[str, Any]]:
    """The SELECT statements (with their driver parameters) one ``list_contacts`` call sends."""
    statements: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.sessionmaker() as session:
            queries.list_contacts(session, shop_id, q=q, channel=channel, limit=50)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    return [(sql, parameters) for sql, parameters in statements if sql.lstrip().upper().startswith("SELECT")]


def raw_timings(db: Database, statements: list[tuple[str, Any]], runs: int) -> list[float]:
    """Milliseconds to run ``statements`` as raw SQL and fetch their rows: the database's part alone."""
    timings = []
    with db.engine.connect() as connection:
        for sql, parameters in statements:  # warm-up, as for the real query
            connection.exec_driver_sql(sql, parameters).fetchall()
        for _ in range(runs):
            started = time.perf_counter()
            for sql, parameters in statements:
                connection.exec_driver_sql(sql, parameters).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def api_timings(client: Any, key: str, q: str | None, channel: str | None, runs: int) -> list[float]:
    """``runs`` timings (ms) of the list's first page through ``GET /api/v1/contacts``, after a warm-up."""
    query = {"limit": "50", **({"q": q} if q else {}), **({"channel": channel} if channel else {})}
    headers = {"Authorization": f"Bearer {key}"}
    timings = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        answer = client.get("/api/v1/contacts", query_string=query, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise SystemExit(
                f"GET /api/v1/contacts answered {answer.status_code}: {answer.get_data(as_text=True)}"
            )
        if attempt:
            timings.append(elapsed)
    return timings


def run(
    db: Database, shop_id: int, runs: int, explain: bool, api: tuple[Any, str]
) -> tuple[list[float], list[float], list[float]]:
    """(timings of the real query code, of the same statements as raw SQL, of the API route) over the mix."""
    everything: list[float] = []
    raw: list[float] = []
    through_api: list[float] = []
    mix = query_mix(db, shop_id)
    cases = [(f"{label} ({q!r})", q, channel) for label, q in mix for channel in (None, "email", "sms")]
    extra = [
        (f"rare two letters ({RARE_PAIR!r}), not in the mix", RARE_PAIR, None),
        ("no q (plain list)", None, None),
    ]
    print(f"  {'query':58} {'channel':7} {'rows':>4} {'p50':>7} {'p95':>7} {'max':>7}  (ms)")
    for label, q, channel in cases + extra:
        timings = []
        with db.sessionmaker() as session:
            page = queries.list_contacts(session, shop_id, q=q, channel=channel, limit=50)  # warm-up
            for _ in range(runs):
                started = time.perf_counter()
                page = queries.list_contacts(session, shop_id, q=q, channel=channel, limit=50)
                timings.append((time.perf_counter() - started) * 1000)
                session.expunge_all()
        if (label, q, channel) in cases:
            everything += timings
            raw += raw_timings(db, captured_statements(db, shop_id, q, channel), runs)
            through_api += api_timings(*api, q, channel, runs)
        ordered = sorted(timings)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        print(
            f"  {label:58} {channel or '-':7} {len(page.contacts):>4} {statistics.median(ordered):7.1f}"
            f" {p95:7.1f} {ordered[-1]:7.1f}"
        )
        if explain:
            _explain(db, shop_id, q, channel)
    return everything, raw, through_api


def _explain(db: Database, shop_id: int, q: str | None, channel: str | None) -> None:
    """The plan of every statement one list_contacts call runs (EXPLAIN ANALYZE / EXPLAIN QUERY PLAN)."""
    statements = captured_statements(db, shop_id, q, channel)
    prefix = "EXPLAIN (ANALYZE, COSTS OFF) " if db.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    with db.engine.connect() as connection:
        for statement, parameters in statements:
            rows = connection.exec_driver_sql(prefix + statement, parameters).all()
            for row in rows:
                line = str(row[-1])
                if len(line) > 150:
                    line = line[:147] + "..."
                print(f"      {line}")
            print()


def database_url(kind: str, server: str, sqlite_path: Path, pg_database: str = PG_DATABASE) -> str:
    if kind == "sqlite":
        return f"sqlite:///{sqlite_path}"
    base = sa.make_url(server)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": pg_database}
        ).scalar()
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{pg_database}"')
    admin.dispose()
    return base.set(database=pg_database).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database", default="postgresql+psycopg://root@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--sqlite", type=Path, default=Path(tempfile.gettempdir()) / "popsync-bench-admin.sqlite3"
    )
    parser.add_argument("--only", choices=("postgresql", "sqlite"))
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--pg-database", default=PG_DATABASE, help="the database kept for the built data")
    parser.add_argument("--quick", action="store_true", help="20,000 contacts, 5 runs, PostgreSQL only")
    args = parser.parse_args()
    if args.quick:
        args.contacts, args.runs, args.only = 20_000, 5, args.only or "postgresql"
        if args.pg_database == PG_DATABASE:
            args.pg_database = f"{PG_DATABASE}_quick"

    goals = {"postgresql": 50.0, "sqlite": 150.0}
    results: dict[str, dict[str, Any]] = {}
    for kind in ("postgresql", "sqlite"):
        if args.only and args.only != kind:
            continue
        url = database_url(kind, args.database, args.sqlite, args.pg_database)
        app = create_app(
            {"DATABASE_URL": url, "SECRET_KEY": f"bench-{uuid.uuid4().hex}", "POPSYNC_ENV": "production"}
        )
        db = get_database(app)
        print(f"{kind}: {args.contacts:,} contacts in one shop")
        shop_id = build(db, app, args.contacts, args.seed)
        with db.write_transaction() as session:
            key = create_api_key(session, session.get(Shop, shop_id))
        timings, raw, through_api = run(db, shop_id, args.runs, args.explain, (app.test_client(), key))
        ordered = sorted(timings)
        p95 = percentile(ordered, 0.95)
        raw_p95 = percentile(raw, 0.95)
        verdict = "met" if p95 < goals[kind] else "NOT met"
        print(
            f"  overall ({len(ordered)} timed queries): p50 {statistics.median(ordered):.1f} ms,"
            f" p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms — goal p95 < {goals[kind]:.0f} ms: {verdict}"
        )
        print(
            f"  the same statements as raw SQL (no ORM): p50 {statistics.median(raw):.1f} ms,"
            f" p95 {raw_p95:.1f} ms"
        )
        api_p95 = percentile(sorted(through_api), 0.95)
        api_p50 = statistics.median(through_api)
        print(
            f"  the same mix through GET /api/v1/contacts (API key, JSON): p50 {api_p50:.1f} ms,"
            f" p95 {api_p95:.1f} ms\n"
        )
        results[kind] = {
            "database": kind,
            "contacts": args.contacts,
            "runs": args.runs,
            "p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(ordered[-1], 2),
            "raw_p50_ms": round(statistics.median(raw), 2),
            "raw_p95_ms": round(raw_p95, 2),
            "api_p50_ms": round(api_p50, 2),
            "api_p95_ms": round(api_p95, 2),
        }
        db.engine.dispose()
    if results:
        emit_result("admin", **results.get("postgresql", next(iter(results.values()))))


if __name__ == "__main__":
    main()
