"""Open pixel throughput and latency: the real app on PostgreSQL against a bare Flask route returning the
same GIF, in the same gunicorn configuration, measured side by side in one run.

    .venv/bin/python bench/pixel.py [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                    [--seconds 15] [--rounds 3] [--workers 5] [--connections 32]
                                    [--quick]

1. A fresh PostgreSQL database (migrated), one shop, one valid pixel token.
2. ``popsync serve --no-worker`` (``--workers`` sync workers, app/gunicorn_conf.py) serving the app, and a
   bare Flask app whose only route answers the same 43-byte GIF with the same headers
   (bench/bare_routes.py) served by bench/wsgi_serve.py in the same gunicorn configuration.
3. Peak: ``wrk``, closed loop, ``--seconds`` on each side in all, after a short warm-up of both: bare then
   pixel, ``--rounds`` times, each phase after the server has settled (bench/common.py
   ``alternate_peaks``). The rates are the rounds' medians and the ratio the median of the rounds' ratios.
   Each phase also reads the CPU spent by the server's processes, by PostgreSQL and by wrk (/proc), printed
   as microseconds per answer: where the machine's time goes.
4. Latency: open loop at half of the pixel's peak (bench/common.py ``run_open_loop``: each request leaves
   on schedule on its own connection whether or not earlier ones were answered, its latency counted from
   when it was due); p50/p99. (Not ``h2load --rps``, used here before: its pacing is lost against
   gunicorn's sync workers, which close the connection after each answer, so it measured a burst.)
5. Every answered open counted: the rows in ``tracking_hits`` against the 200s of both phases.

Needs ``wrk`` (Debian: ``apt-get install wrk``). Not part of the test suite.
Prints ``RESULT {json}`` last (bench/run_all.py). bench/soak.py imports the database and server helpers
from here (they live in bench/common.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from common import DEFAULT_SERVER
from common import SECRET
from common import Target
from common import alternate_peaks
from common import bench_env
from common import drop_database
from common import emit_result
from common import free_port
from common import fresh_database
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
from app.db import get_database
from app.db import utcnow
from app.shops import register_shop
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal

__all__ = ["drop_database", "free_port", "fresh_database", "migrate", "stop"]  # bench/soak.py uses them


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default=DEFAULT_SERVER)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="bare and pixel phases taken turn about")
    parser.add_argument("--quick", action="store_true", help="3-second phases (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    require_tools("wrk")

    url, name = fresh_database(args.database)
    folder = Path(tempfile.mkdtemp(prefix="popsync-pixel-"))
    try:
        config = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "APP_URL": "http://127.0.0.1"}
        app = create_app(config)
        migrate(app)
        with get_database(app).write_transaction() as session:
            shop = register_shop(
                session,
                app.extensions["popsync.keyring"],
                platform="shopify",
                domain="bench.myshopify.com",
                token="shpat_bench",  # noqa: S106 (not a credential)
            )
        token = seal(
            app.extensions["popsync.keyring"],
            TrackingLink(shop.id, "email", "bench-1", utcnow(), email="reader@example.com"),
        )
        engine = get_database(app).engine
        env = bench_env(**config)
        path = f"/t/o/{token}.gif"
        port_bare, port_app = free_port(), free_port()
        bare = serve_wsgi("bare_routes:pixel_app", port_bare, args.workers, env, folder / "bare.log",
                          probe=path)  # fmt: skip
        try:
            real = serve_app(port_app, args.workers, env, folder / "app.log")
        except BaseException:
            stop(bare)
            raise
        try:
            bare_url, app_url = f"http://127.0.0.1:{port_bare}{path}", f"http://127.0.0.1:{port_app}{path}"
            warm_up(bare_url, args.workers)
            warm_up(app_url, args.workers)
            settle(port_app)
            with engine.connect() as connection:  # the warm-up opens are not counted
                before = connection.scalar(sa.text("SELECT count(*) FROM tracking_hits"))
            rounds = alternate_peaks(
                Target(bare_url, port_bare, bare.pid, settle_path=path),
                Target(app_url, port_app, real.pid),
                args.seconds,
                args.connections,
                args.rounds,
            )
            stop(bare)
            settle(port_app)
            target = rounds.app_rate / 2
            latency = run_open_loop(
                port_app, [http_request("GET", path)] * int(target * args.seconds), target
            )
            time.sleep(1)
            with engine.connect() as connection:
                rows = connection.scalar(sa.text("SELECT count(*) FROM tracking_hits")) - before
        finally:
            stop(bare)
            stop(real)
        engine.dispose()
    finally:
        drop_database(args.database, name)
        shutil.rmtree(folder, ignore_errors=True)

    answered = rounds.app_total("ok") + latency.ok
    print(
        f"gunicorn: {args.workers} sync workers each (popsync serve's configuration); "
        f"wrk -t2 -c{args.connections}, {args.rounds} rounds of {max(1.0, args.seconds / args.rounds):.0f} s "
        "each side, taken turn about"
    )
    for line in rounds.describe("bare Flask GIF route", "open pixel (PostgreSQL)"):
        print(line)
    print(f"bare Flask GIF route   : {rounds.reference_rate:8.0f} req/s (median of the rounds)")
    print(
        f"open pixel (PostgreSQL): {rounds.app_rate:8.0f} req/s  = {100 * rounds.ratio:.0f}% of bare "
        "(the median of the rounds' ratios)"
    )
    print(
        f"open loop at {target:.0f} req/s (a connection per request): "
        f"p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, {latency.failed} failed; "
        f"the generator's own lag at most {latency.send_lag_ms:.0f} ms"
    )
    print(
        f"opens answered 200: {answered}; rows in tracking_hits: {rows}; missing: {max(answered - rows, 0)}"
    )
    emit_result(
        "pixel",
        workers=args.workers,
        seconds=args.seconds,
        bare_per_s=round(rounds.reference_rate, 1),
        pixel_per_s=round(rounds.app_rate, 1),
        ratio=round(rounds.ratio, 4),
        latency_rate=round(target, 1),
        p50_ms=round(latency.p50_ms, 2),
        p99_ms=round(latency.p99_ms, 2),
        answered=answered,
        missing=max(answered - rows, 0),
        **rounds.figures(),
    )


if __name__ == "__main__":
    main()
