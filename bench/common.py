"""What the benchmarks share: a fresh PostgreSQL database with shops, gunicorn started the way
``popsync serve`` starts it, closed-loop peaks with ``wrk`` (its output parsed), an open-loop latency
generator, and the one machine-readable line every benchmark prints last (``RESULT {json}``, read by
bench/run_all.py).

The scripts under bench/ import it as a sibling module (``from common import …``): Python puts a script's
own folder first on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DEFAULT_SERVER = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway database's key)
POPSYNC = str(Path(sys.executable).with_name("popsync"))
RESULT_PREFIX = "RESULT "


# --- the machine-readable result ------------------------------------------------------------------------


def emit_result(bench: str, **figures: Any) -> None:
    """The benchmark's last line: ``RESULT {"bench": …, figures…}`` (bench/run_all.py parses it)."""
    print(RESULT_PREFIX + json.dumps({"bench": bench, **figures}, sort_keys=True), flush=True)


def parse_result(output: str) -> dict[str, Any] | None:
    """The last ``RESULT`` line of a benchmark's output, or None."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` 0.99 for p99) of unsorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def require_tools(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install {tool}")


# --- databases ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(server: str) -> tuple[str, str]:
    """A new, empty database on ``server``: (its URL, its name)."""
    base = sa.make_url(server)
    name = f"popsync_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), name


def drop_database(server: str, name: str) -> None:
    admin = sa.create_engine(sa.make_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def migrate(app: Any) -> None:
    """The app's database migrated as ``popsync db upgrade`` does it."""
    from app.cli import upgrade_database

    upgrade_database(app)


@contextmanager
def fresh_postgres(server: str) -> Iterator[str]:
    """A new database on ``server`` for the block, dropped after it (also on an error)."""
    url, name = fresh_database(server)
    try:
        yield url
    finally:
        drop_database(server, name)


def durability(url: str) -> dict[str, str]:
    """The server settings that decide whether a commit survives a crash (the submissions' promise)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("synchronous_commit", "fsync", "full_page_writes")
            }
    finally:
        engine.dispose()


@dataclass(frozen=True)
class BenchShop:
    id: int
    domain: str
    token: str
    form_id: int | None


def add_shops(
    app: Any, count: int, *, prefix: str = "bench", with_form: bool = True, platform: str = "shopify"
) -> list[BenchShop]:
    """``count`` installed shops (``bench0.myshopify.com`` …), each with one active popup form."""
    from app.db import get_database
    from app.models import Form
    from app.shops import register_shop
    from app.storefront.forms import validate_form

    shops = []
    with app.app_context(), get_database(app).write_transaction() as session:
        for number in range(count):
            domain = f"{prefix}{number}.myshopify.com"
            token = f"shpat_{prefix}{number}"
            shop = register_shop(
                session,
                app.extensions["popsync.keyring"],
                platform=platform,
                domain=domain,
                token=token,
                region="US",
            )
            form_id = None
            if with_form:
                values = validate_form(
                    {"name": "Bench popup", "template": "newsletter", "tag": "popup", "active": True}
                )
                form = Form(shop_id=shop.id, **values)
                session.add(form)
                session.flush()
                form_id = form.id
            shops.append(BenchShop(shop.id, shop.domain, token, form_id))
    return shops


# --- servers --------------------------------------------------------------------------------------------


def wait_until_up(process: subprocess.Popen[bytes], port: int, path: str, log: Path | None = None) -> None:
    """Until the server answers ``path`` at all (any status), then a moment for its other workers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            time.sleep(1)  # the first worker answered; the others finish importing
            return
        except requests.RequestException:  # not listening yet, or its workers still importing
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"the server on port {port} did not start" + (f"; see {log}" if log else ""))


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``command`` in the repo, its output appended to ``log``, in a session of its own (``stop`` ends the
    whole group)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def serve_app(port: int, workers: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``popsync serve --no-worker``: the real command, gunicorn configured by app/gunicorn_conf.py."""
    command = [POPSYNC, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
    process = _start([*command, "--workers", str(workers)], env, log)
    wait_until_up(process, port, "/healthz", log)
    return process


def serve_wsgi(
    target: str, port: int, workers: int, env: dict[str, str], log: Path, *, probe: str = "/"
) -> subprocess.Popen[bytes]:
    """Any WSGI app (``module:attribute``) in exactly ``popsync serve``'s gunicorn configuration
    (bench/wsgi_serve.py): the reference routes are served as the app is."""
    command = [sys.executable, str(BENCH / "wsgi_serve.py"), target, "--port", str(port)]
    process = _start([*command, "--workers", str(workers)], env, log)
    wait_until_up(process, port, probe, log)
    return process


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A background worker, ``popsync worker``, as its own process."""
    return _start([POPSYNC, "worker"], env, log)


def settle(port: int, path: str = "/healthz", seconds: float = 60) -> None:
    """Wait until the server has worked off what a closed-loop run left queued: wrk stops sending, but
    gunicorn still answers the requests waiting in its listen backlog, which would land in the next phase.
    Done when three probes in a row answer within 50 ms (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    quick = 0
    while quick < 3 and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
        except requests.RequestException:
            quick = 0
            continue
        quick = quick + 1 if time.monotonic() - started < 0.05 else 0
        time.sleep(0.1)


def warm_up(
    url: str,
    connections: int,
    *,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    seconds: float = 2,
) -> None:
    """A short closed-loop run first: every gunicorn worker has imported, connected and cached before the
    measured run (a worker's first requests are several times slower)."""
    run_wrk(url, seconds, connections, script=script, script_args=script_args)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group the benchmark started (gunicorn's master and its workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def bench_env(**settings: str) -> dict[str, str]:
    """The environment of a server the benchmark starts: this one, the repo importable, ``settings``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(BENCH), os.environ.get("PYTHONPATH")])),
        "SECRET_KEY": SECRET,
        "POPSYNC_ENV": "production",
        **settings,
    }


# --- load generators ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rate: float  # answers per second
    total: int  # answers
    non_2xx: int  # answers with a status outside 2xx and 3xx
    socket_errors: int  # connect, read, write errors and timeouts

    @property
    def ok(self) -> int:
        return self.total - self.non_2xx


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise ValueError(f"not wrk's output: {output[:300]!r}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        float(rate.group(1)),
        int(total.group(1)),
        int(bad.group(1)) if bad else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run_wrk(
    url: str, seconds: float, connections: int, *, script: Path | None = None, script_args: Sequence[str] = ()
) -> WrkResult:
    """Closed loop: ``connections`` connections each send the next request as soon as one is answered.
    ``script_args`` reach the Lua script's ``init(args)``."""
    # --timeout 10s: on a busy machine an answer can take longer than wrk's default 2 s; it is counted late
    # rather than as an error.
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse_wrk(output)


@dataclass(frozen=True)
class LatencyResult:
    rate: float  # the rate asked for, requests per second
    p50_ms: float
    p99_ms: float
    ok: int  # 2xx answers
    failed: int  # requests that got no answer (refused, reset, timed out)
    non_2xx: int
    send_lag_ms: float  # how late the generator itself sent its latest request: large means it was the limit


def http_request(
    method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request, ``Connection: close``, as bytes on the wire."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_open_loop(
    port: int, requests_to_send: Sequence[bytes], rate: float, *, timeout: float = 30
) -> LatencyResult:
    """Open loop: request ``i`` leaves at ``i / rate`` seconds whether or not earlier ones were answered, each
    on its own connection (a sync gunicorn worker closes the connection after every answer anyway), and its
    latency counts from when it was due, so queueing in the server shows and none is hidden.

    Why not ``h2load --rps``: its pacing is lost when the server closes the connection after each answer,
    as gunicorn's sync workers do — h2load 1.52 sent 20 requests "at 5/s" in 0.06 s, a closed-loop burst.
    """
    return asyncio.run(_open_loop(port, list(requests_to_send), rate, timeout))


async def _open_loop(port: int, payloads: list[bytes], rate: float, timeout: float) -> LatencyResult:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: list[int] = []
    failed = 0
    lag = 0.0

    async def send(payload: bytes, due: float) -> None:
        nonlocal failed
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(payload)
                await writer.drain()
                answer = await reader.read()  # to the end: the server closes after answering
                writer.close()
            status = int(answer.split(b" ", 2)[1])
        except (OSError, TimeoutError, ValueError, IndexError):
            failed += 1
            return
        latencies.append((loop.time() - due) * 1000)
        statuses.append(status)

    started = loop.time() + 0.1
    tasks = []
    for number, payload in enumerate(payloads):
        due = started + number / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            lag = max(lag, -wait * 1000)
        tasks.append(asyncio.create_task(send(payload, due)))
    await asyncio.gather(*tasks)
    ok = sum(1 for status in statuses if 200 <= status < 300)
    return LatencyResult(
        rate,
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        ok,
        failed,
        len(statuses) - ok,
        lag,
    )
