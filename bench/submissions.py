"""Storefront submissions over HTTP: the real route shoppers use, on PostgreSQL at full durability, against
a bare Flask route in the same gunicorn configuration, measured side by side in one run.

    .venv/bin/python bench/submissions.py [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                          [--seconds 15] [--rounds 3] [--workers 5] [--connections 32]
                                          [--shops 10] [--no-rate-limits] [--quick]

1. A fresh PostgreSQL database (migrated; ``synchronous_commit`` as the server has it, which must be ``on``):
   ``--shops`` installed shops, each with an active popup form.
2. ``popsync serve --no-worker`` (gunicorn, ``--workers`` sync workers, app/gunicorn_conf.py) and a bare
   Flask route (bench/bare_routes.py: the same JSON body parsing, answering ``{"ok": true}``) served by
   bench/wsgi_serve.py in the same configuration. The background worker is not started: what it does
   after the answer is measured by bench/outbox.py and bench/scaleout.py.
3. Peak: ``wrk`` (closed loop), ``--seconds`` on each side in all, bare then app ``--rounds`` times (the
   rates are the rounds' medians, the ratio the median of the rounds' ratios, and each phase's CPU is read
   by part: bench/common.py ``alternate_peaks``), posting to ``POST /storefront/submissions`` with
   varied bodies (bench/submissions.lua: a new email for ~80% of the requests, a returning shopper with a
   new first name for the rest, spread over the shops, each with its form id, the consent tick and text,
   the page URL, the shop's ``Origin`` and a client address in ``X-Forwarded-For`` (``PROXY_COUNT=1``).
   The rate limits stay in the path, counted in the database as in production, with limits no run
   reaches (``--no-rate-limits`` turns them off to see what they cost).
4. Latency: open loop at half the app's peak (bench/common.py ``run_open_loop``: each request leaves on
   schedule on its own connection, whether or not earlier ones were answered, its latency counted from
   when it was due), the same mix of new and returning shoppers; p50 / p99. (Not ``h2load --rps``: its
   pacing is lost against gunicorn's sync workers, which close the connection after each answer.)
5. Every submission answered 2xx must be committed: ``submitted`` events in the database against the 2xx
   answers of both phases.

Goal: >= 15% of the bare route, p99 < 50 ms at half the app's peak, nothing answered and missing.
Needs ``wrk``. Prints ``RESULT {json}`` last (bench/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy as sa
from common import DEFAULT_SERVER
from common import SECRET
from common import BenchShop
from common import Target
from common import add_shops
from common import alternate_peaks
from common import analyze
from common import bench_env
from common import durability
from common import emit_result
from common import free_port
from common import fresh_postgres
from common import http_request
from common import migrate
from common import require_tools
from common import run_open_loop
from common import serve_app
from common import serve_wsgi
from common import settle
from common import stop
from common import warm_up

from app import create_app

PATH = "/storefront/submissions"
LUA_TEMPLATE = Path(__file__).with_name("submissions.lua")
UNREACHED_LIMIT = "100000000/minute"  # counted exactly like the default, never refusing in a run


def load_script(folder: Path, shops: list[BenchShop]) -> Path:
    """bench/submissions.lua with the shops (domain, form id) filled in."""
    table = ", ".join(f'{{"{shop.domain}", {shop.form_id or 0}}}' for shop in shops)
    script = folder / "submissions.lua"
    script.write_text(LUA_TEMPLATE.read_text().replace("--SHOPS--", table))
    return script


def shopper(number: int, shop: BenchShop, *, first_name: str = "Ann") -> tuple[bytes, list[str]]:
    """Shopper ``number``'s submission to ``shop``: the JSON body and the headers a browser sends."""
    body = {
        "shop": shop.domain,
        "form_id": str(shop.form_id),
        "email": f"open-{number}@example.com",
        "first_name": first_name,
        "email_consent": True,
        "email_consent_text": "Yes, email me offers.",
        "page_url": f"https://{shop.domain}/products/tea",
    }
    address = f"10.250.{number // 250}.{number % 250 + 1}"
    headers = [f"Origin: https://{shop.domain}", f"X-Forwarded-For: {address}"]
    return json.dumps(body).encode(), headers


def mixed_requests(shops: list[BenchShop], count: int, seed: int = 5) -> list[bytes]:
    """``count`` submissions as bench/submissions.lua mixes them: ~80% new shoppers, the rest returning
    with a new first name, spread over the shops, each with its shop's Origin and its own client address."""
    rng = random.Random(seed)
    names = ("Ann", "Bo", "Cy", "Dee", "Eli", "Fay")
    requests_to_send = []
    for sent in range(count):
        person = rng.randrange(sent) if sent > 20 and rng.random() < 0.2 else sent
        body, headers = shopper(person, shops[person % len(shops)], first_name=rng.choice(names))
        fields = dict(header.split(": ", 1) for header in headers)
        requests_to_send.append(
            http_request("POST", PATH, {**fields, "Content-Type": "application/json"}, body)
        )
    return requests_to_send


def count_submitted(engine: sa.Engine) -> tuple[int, int]:
    """(``submitted`` events, contacts): what the database holds."""
    with engine.connect() as connection:
        events = connection.scalar(sa.text("SELECT count(*) FROM contact_events WHERE kind = 'submitted'"))
        contacts = connection.scalar(sa.text("SELECT count(*) FROM contacts"))
    return int(events or 0), int(contacts or 0)


def bytes_per_row(engine: sa.Engine) -> dict[str, int]:
    """On-disk bytes per row, indexes included, of the tables a submission writes (small tables carry
    mostly empty pages: an upper bound)."""
    sizes = {}
    with engine.connect() as connection:
        for table in ("contacts", "contact_events", "outbox_items"):
            rows = connection.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608 (a fixed name)
            size = connection.scalar(
                sa.text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
            )
            sizes[table] = round(size / rows) if rows else 0
    return sizes


def wal_and_commits(engine: sa.Engine) -> tuple[int, int]:
    """(WAL position in bytes, transactions committed in this database so far): their growth over a run is
    what each submission costs the database server in log volume and commits."""
    with engine.connect() as connection:
        wal = connection.scalar(sa.text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
        commits = connection.scalar(
            sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        )
    return int(wal or 0), int(commits or 0)


def check_answer(port: int, shop: BenchShop) -> None:
    """One submission before the load: the route must accept the benchmark's bodies (not measure 4xx)."""
    body, headers = shopper(999_999, shop)
    answer = requests.post(
        f"http://127.0.0.1:{port}{PATH}",
        data=body,
        headers=dict(header.split(": ", 1) for header in headers),
        timeout=10,
    )
    if answer.status_code != 200:
        raise SystemExit(f"the route answered {answer.status_code}: {answer.text[:300]}")


def error_lines(log: Path) -> list[str]:
    """Error-level lines of a server's JSON log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or " ERROR " in line:
                found.append(line)
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            found.append(line)
    return found


def server_settings(url: str, *, rate_limits: bool) -> dict[str, str]:
    limit = UNREACHED_LIMIT if rate_limits else "0"
    return {
        "DATABASE_URL": url,
        "APP_URL": "http://127.0.0.1",
        "PROXY_COUNT": "1",
        "SUBMISSION_RATE_LIMIT": limit,
        "SHOP_RATE_LIMIT": limit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default=DEFAULT_SERVER, help="a PostgreSQL server URL")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of each phase")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="bare and app phases taken turn about")
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--no-rate-limits", action="store_true", help="turn the counted rate limits off")
    parser.add_argument("--quick", action="store_true", help="3-second phases (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    require_tools("wrk")

    folder = Path(tempfile.mkdtemp(prefix="popsync-submissions-"))
    try:
        with fresh_postgres(args.database) as url:
            settings = server_settings(url, rate_limits=not args.no_rate_limits)
            app = create_app({**settings, "SECRET_KEY": SECRET})
            migrate(app)
            shops = add_shops(app, args.shops)
            durable = durability(url)
            if durable["synchronous_commit"] != "on" or durable["fsync"] != "on":
                print(f"WARNING: the server is not at full durability: {durable}")
            env = bench_env(**settings)
            script = load_script(folder, shops)
            engine = sa.create_engine(url)
            bare_port, app_port = free_port(), free_port()
            bare = serve_wsgi(
                "bare_routes:submissions_app", bare_port, args.workers, env, folder / "bare.log",
                probe="/healthz",
            )  # fmt: skip
            try:
                real = serve_app(app_port, args.workers, env, folder / "app.log")
            except BaseException:
                stop(bare)
                raise
            try:
                check_answer(bare_port, shops[0])
                check_answer(app_port, shops[0])
                warm_up(
                    f"http://127.0.0.1:{bare_port}{PATH}",
                    args.workers,
                    script=script,
                    script_args=["bare-warm"],
                )
                warm_up(
                    f"http://127.0.0.1:{app_port}{PATH}", args.workers, script=script, script_args=["warm"]
                )
                analyze(engine)
                settle(app_port)
                before, _ = count_submitted(engine)
                wal_before, commits_before = wal_and_commits(engine)
                rounds = alternate_peaks(
                    Target(f"http://127.0.0.1:{bare_port}{PATH}", bare_port, bare.pid, script=script,
                           script_args=["bare{round}"]),
                    Target(f"http://127.0.0.1:{app_port}{PATH}", app_port, real.pid, script=script,
                           script_args=["peak{round}"]),
                    args.seconds, args.connections, args.rounds,
                )  # fmt: skip
                stop(bare)
                settle(app_port)
                time.sleep(1)  # the backends' statistics reach pg_stat_database within a second
                wal_after, commits_after = wal_and_commits(engine)
                # Answers wrk never received (its last in-flight requests) are committed too: counted now.
                after_peak, _ = count_submitted(engine)
                target = max(rounds.app_rate / 2, 1.0)
                latency = run_open_loop(app_port, mixed_requests(shops, int(target * args.seconds)), target)
                time.sleep(1)
                after, contacts = count_submitted(engine)
                row_bytes = bytes_per_row(engine)
            finally:
                stop(bare)
                stop(real)
            engine.dispose()
            errors = error_lines(folder / "app.log")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    answered = rounds.app_total("ok") + latency.ok
    peak_committed = max(after_peak - before, 1)
    wal_per_submission = (wal_after - wal_before) / peak_committed
    # Less the probes' own reads (count_submitted, this function): a few transactions of hundreds.
    commits_per_submission = (commits_after - commits_before) / peak_committed
    committed = after - before
    # Each phase on its own: a phase's extra rows (requests wrk gave up on) must not hide another's missing.
    peak_ok = rounds.app_total("ok")
    missing = max(peak_ok - (after_peak - before), 0) + max(latency.ok - (after - after_peak), 0)
    limits = "off" if args.no_rate_limits else "counted in the database"
    print(
        f"gunicorn: {args.workers} sync workers each (popsync serve's configuration); "
        f"wrk -t2 -c{args.connections}, {args.rounds} rounds of {max(1.0, args.seconds / args.rounds):.0f} s "
        f"each side taken turn about; {args.shops} shops; rate limits {limits}; "
        f"PostgreSQL synchronous_commit={durable['synchronous_commit']} fsync={durable['fsync']}"
    )
    for line in rounds.describe("bare Flask JSON route", "submissions (PostgreSQL)"):
        print(line)
    print(f"bare Flask JSON route   : {rounds.reference_rate:8.0f} req/s (median of the rounds)")
    print(
        f"submissions (PostgreSQL): {rounds.app_rate:8.0f} req/s  = {100 * rounds.ratio:.1f}% of bare "
        f"(the median of the rounds' ratios; non-2xx {rounds.app_total('non_2xx')}, "
        f"socket errors {rounds.app_total('socket_errors')})"
    )
    print(
        f"open loop at {target:.0f} req/s (a connection per request, new and returning shoppers): "
        f"p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, {latency.failed} failed, "
        f"{latency.non_2xx} non-2xx; the generator's own lag at most {latency.send_lag_ms:.0f} ms"
    )
    print(
        f"submissions answered 2xx: {answered}; submitted events committed: {committed} "
        f"({contacts} contacts); missing: {missing}; server error lines: {len(errors)}"
    )
    print(
        f"database cost per submission at the peak: {wal_per_submission / 1024:.1f} KB of WAL, "
        f"{commits_per_submission:.1f} committed transactions"
    )
    print(
        "on disk per row, indexes included: "
        + ", ".join(f"{table} {size:,} B" for table, size in row_bytes.items())
    )
    for line in errors[:5]:
        print(f"  {line[:300]}")
    emit_result(
        "submissions",
        workers=args.workers,
        seconds=args.seconds,
        rate_limits=not args.no_rate_limits,
        bare_per_s=round(rounds.reference_rate, 1),
        submissions_per_s=round(rounds.app_rate, 1),
        ratio=round(rounds.ratio, 4),
        non_2xx=rounds.app_total("non_2xx") + latency.non_2xx,
        latency_rate=round(target, 1),
        p50_ms=round(latency.p50_ms, 2),
        p99_ms=round(latency.p99_ms, 2),
        latency_failed=latency.failed,
        answered_2xx=answered,
        committed=committed,
        missing=missing,
        error_lines=len(errors),
        synchronous_commit=durable["synchronous_commit"],
        wal_bytes_per_submission=round(wal_per_submission),
        commits_per_submission=round(commits_per_submission, 2),
        bytes_per_row=row_bytes,
        **rounds.figures(),
    )


if __name__ == "__main__":
    main()
