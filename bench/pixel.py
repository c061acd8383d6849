"""Open pixel throughput and latency: the real app on PostgreSQL against a bare Flask route returning the
same GIF, in the same gunicorn configuration, measured side by side in one run.

    .venv/bin/python bench/pixel.py [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                    [--seconds 15] [--workers 5] [--connections 32]

1. A fresh PostgreSQL database (migrated), one shop, one valid pixel token.
2. gunicorn (``--workers`` sync workers, as ``popsync serve`` runs) serving (a) the app and (b) a bare Flask
   app whose only route answers the same 43-byte GIF with the same headers.
3. Peak: ``wrk`` against each, closed loop, ``--seconds`` each, bare first.
4. Latency: ``h2load --h1 --rps`` (open loop: requests leave on schedule whether or not earlier ones were
   answered) at half of the pixel's peak, against the pixel; p50/p99 from h2load's per-request log.
5. Every answered open counted: the rows in ``tracking_hits`` against the 200s wrk and h2load received.

Needs ``wrk`` and ``h2load`` (Debian: ``apt-get install wrk nghttp2-client``). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from app import create_app
from app.cli import alembic_config
from app.db import get_database
from app.db import utcnow
from app.shops import register_shop
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal

SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway database's key)
BARE_APP = """
from flask import Flask, Response

from app.tracking.views import PIXEL

app = Flask(__name__)


@app.get("/t/o/<token>.gif")
def pixel(token):
    return Response(PIXEL, status=200, mimetype="image/gif",
                    headers={"Cache-Control": "no-store", "Content-Length": str(len(PIXEL))})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(server: str) -> tuple[str, str]:
    base = sa.make_url(server)
    name = f"popsync_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), name


def migrate(app: Any) -> None:
    """Every head: while engineers land migrations side by side the tree may briefly have two."""
    from alembic import command

    database = get_database(app)
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def drop_database(server: str, name: str) -> None:
    admin = sa.create_engine(sa.make_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def gunicorn(target: str, port: int, workers: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
            target,
        ],
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/t/o/warmup.gif", timeout=5)
            return process
        except requests.RequestException:  # not listening yet, or its workers still importing
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"gunicorn {target} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def run_wrk(url: str, seconds: float, connections: int) -> tuple[float, int, int]:
    """Requests per second, requests answered, non-2xx answers."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return rate, total, int(bad.group(1)) if bad else 0


def run_h2load(
    url: str, rate: float, seconds: float, clients: int, log: Path
) -> tuple[float, float, int, int]:
    """p50 and p99 in ms, 2xx answers, requests that failed or got no answer."""
    per_client = max(rate / clients, 0.1)
    output = subprocess.run(
        [
            "h2load",
            "--h1",
            "-c",
            str(clients),
            "--rps",
            f"{per_client:.2f}",
            # A request count rather than -D: with -D, h2load 1.52 in --rps mode sometimes never stops.
            "-n",
            str(int(rate * seconds)),
            "--log-file",
            str(log),
            # A connection gunicorn closed without h2load noticing must not hold the run open forever.
            "--connection-inactivity-timeout",
            "5",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    times = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    ok = int(re.search(r"status codes: (\d+) 2xx", output).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"(\d+) failed", output).group(1))  # type: ignore[union-attr]
    p50 = times[len(times) // 2] / 1000
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] / 1000
    return p50, p99, ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql+psycopg://root@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16, help="h2load connections for the latency run")
    args = parser.parse_args()
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install wrk nghttp2-client")

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
        (folder / "bare_pixel.py").write_text(BARE_APP)
        repo = Path(__file__).resolve().parent.parent
        env = {**os.environ, **config, "PYTHONPATH": f"{folder}{os.pathsep}{repo}"}

        port_bare, port_app = free_port(), free_port()
        bare = gunicorn("bare_pixel:app", port_bare, args.workers, env, folder)
        try:
            real = gunicorn("app:create_app()", port_app, args.workers, env, repo)
        except BaseException:
            stop(bare)
            raise
        try:
            path = f"/t/o/{token}.gif"
            time.sleep(1)
            bare_rate, _, _ = run_wrk(f"http://127.0.0.1:{port_bare}{path}", args.seconds, args.connections)
            with engine.connect() as connection:  # the warm-up open of the gunicorn probe is not counted
                before = connection.scalar(sa.text("SELECT count(*) FROM tracking_hits"))
            pixel_rate, wrk_total, wrk_bad = run_wrk(
                f"http://127.0.0.1:{port_app}{path}", args.seconds, args.connections
            )
            target = pixel_rate / 2
            p50, p99, h2_ok, h2_failed = run_h2load(
                f"http://127.0.0.1:{port_app}{path}",
                target,
                args.seconds,
                args.clients,
                folder / "h2load.log",
            )
            time.sleep(1)
            with engine.connect() as connection:
                rows = connection.scalar(sa.text("SELECT count(*) FROM tracking_hits")) - before
        finally:
            stop(bare)
            stop(real)
        engine.dispose()
        answered = wrk_total - wrk_bad + h2_ok
        print(
            f"gunicorn: {args.workers} sync workers each; wrk -t2 -c{args.connections} {args.seconds:.0f} s"
        )
        print(f"bare Flask GIF route   : {bare_rate:8.0f} req/s")
        print(
            f"open pixel (PostgreSQL): {pixel_rate:8.0f} req/s  = {100 * pixel_rate / bare_rate:.0f}% of bare"
        )
        print(
            f"open loop at {target:.0f} req/s (h2load --rps, {args.clients} connections): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {h2_failed} failed"
        )
        print(
            f"opens answered 200: {answered}; rows in tracking_hits: {rows}; "
            f"missing: {max(answered - rows, 0)}"
        )
    finally:
        drop_database(args.database, name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
