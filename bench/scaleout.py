"""Scale-out: the submission load with 1, 2 and 4 web workers and 1 and 2 background workers on one
PostgreSQL. How far does the web tier go, and does the outbox drain keep up with what it accepts?

    .venv/bin/python bench/scaleout.py [--seconds 20] [--web 1,2,4] [--background 1,2] [--shops 10]
                                       [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                       [--quick] [--write-docs docs/scaling.md]

One fresh PostgreSQL database (synchronous commit) with ``--shops`` shops, each with a popup form and a
store in the development store, which throttles like Shopify Plus (1,000 points/s, a 20,000-point bucket:
the platform is not the limit being measured) and runs in this process over real HTTP. For each pair
(web workers W, background workers B): ``popsync serve --no-worker --workers W`` and B ``popsync worker``
processes; a short warm-up; then ``wrk`` (closed loop, bench/submissions.lua's varied bodies) for
``--seconds``. Counted over the measured window: submissions answered per second, outbox rows queued per
second, platform writes done per second, and the backlog left at the end. "Keeping up": the workers did
at least 95% of what was queued in the window. The outbox is emptied between pairs.

Everything shares this machine's cores (web workers, background workers, PostgreSQL, the development
store, wrk): the table shows where one machine saturates, not how far many machines go (docs/scaling.md).
``--write-docs`` replaces the table between the ``scaleout`` markers of that file. Prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from common import DEFAULT_SERVER
from common import SECRET
from common import BenchShop
from common import add_shops
from common import analyze
from common import bench_env
from common import durability
from common import emit_result
from common import free_port
from common import fresh_postgres
from common import migrate
from common import require_tools
from common import run_wrk
from common import serve_app
from common import settle
from common import start_worker
from common import stop
from common import warm_up
from submissions import PATH
from submissions import check_answer
from submissions import load_script
from submissions import server_settings
from werkzeug.serving import make_server

from app import create_app
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore

BEGIN_MARK = "<!-- scaleout:begin -->"
END_MARK = "<!-- scaleout:end -->"
KEEPING_UP = 0.95


@dataclass(frozen=True)
class Step:
    web: int
    background: int
    submissions_per_s: float
    queued_per_s: float
    done_per_s: float
    backlog: int

    @property
    def keeping_up(self) -> bool:
        return self.done_per_s >= KEEPING_UP * self.queued_per_s


def outbox_counts(engine: sa.Engine, since: datetime) -> tuple[int, int, int]:
    """(rows queued since ``since``, rows done, rows still pending or running)."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE created_at >= :since),"
                " count(*) FILTER (WHERE status = 'done'),"
                " count(*) FILTER (WHERE status IN ('pending', 'running'))"
                " FROM outbox_items"
            ),
            {"since": since},
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def measure(
    web: int,
    background: int,
    *,
    env: dict[str, str],
    folder: Path,
    engine: sa.Engine,
    args: argparse.Namespace,
    script: Path,
    shop: BenchShop,
) -> Step:
    with engine.begin() as connection:  # each pair starts with an empty outbox
        connection.exec_driver_sql("DELETE FROM outbox_items")
    port = free_port()
    server = serve_app(port, web, env, folder / f"web-{web}-{background}.log")
    workers = [start_worker(env, folder / f"worker-{web}-{background}-{n}.log") for n in range(background)]
    try:
        url = f"http://127.0.0.1:{port}{PATH}"
        check_answer(port, shop)
        tag = f"w{web}b{background}"
        warm_up(url, web * 2, script=script, script_args=[f"{tag}-warm"])
        analyze(engine)
        settle(port)
        since = datetime.now(UTC)
        _, done_before, _ = outbox_counts(engine, since)
        started = time.monotonic()
        peak = run_wrk(url, args.seconds, args.connections, script=script, script_args=[tag])
        elapsed = time.monotonic() - started
        queued, done_after, backlog = outbox_counts(engine, since)
    finally:
        stop(server)
        for worker in workers:
            stop(worker)
    if peak.non_2xx:
        print(f"  WARNING: {peak.non_2xx} answers were not 2xx")
    return Step(
        web,
        background,
        peak.rate,
        queued / elapsed,
        (done_after - done_before) / elapsed,
        backlog,
    )


def markdown(steps: list[Step], *, seconds: float, shops: int, when: str, load: str) -> str:
    lines = [
        f"Measured {when} by `bench/scaleout.py --seconds {seconds:g}` ({shops} shops; load average {load}).",
        "",
        "| web workers | background workers | submissions/s | outbox rows queued/s | platform writes done/s "
        "| backlog at the end | drain keeping up? |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        lines.append(
            f"| {step.web} | {step.background} | {step.submissions_per_s:,.0f} | {step.queued_per_s:,.0f} "
            f"| {step.done_per_s:,.0f} | {step.backlog:,} | {'yes' if step.keeping_up else '**no**'} |"
        )
    lines += ["", "Submissions/s by web workers (one background worker):", "", "```"]
    first = [step for step in steps if step.background == min(s.background for s in steps)]
    top = max((step.submissions_per_s for step in first), default=1) or 1
    for step in first:
        bar = "#" * max(1, round(40 * step.submissions_per_s / top))
        lines.append(f"{step.web} web  {bar} {step.submissions_per_s:,.0f}/s")
    lines.append("```")
    return "\n".join(lines)


def write_docs(path: Path, table: str) -> None:
    text = path.read_text()
    if BEGIN_MARK not in text or END_MARK not in text:
        raise SystemExit(f"{path} has no {BEGIN_MARK} … {END_MARK} section to replace")
    before, rest = text.split(BEGIN_MARK, 1)
    _, after = rest.split(END_MARK, 1)
    path.write_text(f"{before}{BEGIN_MARK}\n{table}\n{END_MARK}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default=DEFAULT_SERVER, help="a PostgreSQL server URL")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load per pair")
    parser.add_argument("--web", default="1,2,4", help="web worker counts")
    parser.add_argument("--background", default="1,2", help="background worker counts")
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="4-second runs (a smoke run)")
    parser.add_argument("--write-docs", type=Path, default=None, help="replace the table in this file")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 4.0
    require_tools("wrk")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per call to the development store

    store = DevStore(shopify_restore_rate=1000.0, shopify_bucket_size=20000.0)
    store_server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    threading.Thread(target=store_server.serve_forever, daemon=True).start()
    folder = Path(tempfile.mkdtemp(prefix="popsync-scaleout-"))
    steps: list[Step] = []
    try:
        with fresh_postgres(args.database) as url:
            settings = {
                **server_settings(url, rate_limits=True),
                "SHOPIFY_ADMIN_ORIGIN": f"http://127.0.0.1:{store_server.server_port}",
                "WORKER_POLL_INTERVAL": "0.2",
            }
            app = create_app({**settings, "SECRET_KEY": SECRET})
            migrate(app)
            shops = add_shops(app, args.shops)
            for shop in shops:
                store.add_shop("shopify", shop.domain, shop.token)
            print(f"PostgreSQL: {durability(url)}")
            env = bench_env(**settings)
            script = load_script(folder, shops)
            engine = sa.create_engine(url)
            for web in (int(n) for n in args.web.split(",")):
                for background in (int(n) for n in args.background.split(",")):
                    step = measure(web, background, env=env, folder=folder, engine=engine, args=args,
                                   script=script, shop=shops[0])  # fmt: skip
                    steps.append(step)
                    print(
                        f"web {web} background {background}: {step.submissions_per_s:,.0f} submissions/s, "
                        f"queued {step.queued_per_s:,.0f}/s, done {step.done_per_s:,.0f}/s, "
                        f"backlog {step.backlog:,}, keeping up: {step.keeping_up}",
                        flush=True,
                    )
            engine.dispose()
    finally:
        store_server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    table = markdown(
        steps, seconds=args.seconds, shops=args.shops, when=datetime.now(UTC).strftime("%Y-%m-%d"), load=load
    )
    print()
    print(table)
    if args.write_docs:
        write_docs(args.write_docs, table)
        print(f"\n(written to {args.write_docs})")
    emit_result(
        "scaleout",
        seconds=args.seconds,
        steps=[asdict(step) | {"keeping_up": step.keeping_up} for step in steps],
    )


if __name__ == "__main__":
    main()
