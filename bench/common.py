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
import resource
import shutil
import signal
import socket
import statistics
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


def analyze(engine: sa.Engine) -> None:
    """``ANALYZE`` every table, after a warm-up has written some rows: what autovacuum does within a minute
    in any database taking writes, done now so that every phase measures it.

    A benchmark's database is new. Before its first ``ANALYZE`` PostgreSQL plans on an empty table's
    defaults, and picks the contacts' ``(shop_id, updated_at, id)`` index for a look-up by email or by id,
    reading every contact of the shop (docs/performance.md, "Statistics"). When autovacuum then analyzed
    the table, at a moment of its own within the run, the rounds after it ran faster than the rounds
    before it."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


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


# --- peaks in alternating rounds, and where the machine's time went -----------------------------------


@dataclass(frozen=True)
class Target:
    """One side of a comparison: the URL wrk loads, how to tell the server has settled, its gunicorn
    master (whose process tree is its CPU), and the Lua script with its arguments, if any (``{round}`` in
    an argument becomes the round's number: bench/submissions.lua makes each run's new shoppers new)."""

    url: str
    port: int
    server_pid: int
    settle_path: str = "/healthz"
    script: Path | None = None
    script_args: Sequence[str] = ()


@dataclass(frozen=True)
class Phase:
    """One closed-loop phase and the CPU each part of the machine spent in it."""

    peak: WrkResult
    seconds: float  # wall time of the phase
    cpu: Mapping[str, float]  # CPU seconds: "web" (the server's processes), "postgres", "load" (wrk)

    def per_answer_us(self) -> dict[str, float]:
        """Microseconds of CPU per answer by part, with "machine" (every core for the phase's wall time)
        and "other" (the machine less the parts: the kernel's network work not charged to a process,
        other processes, idle)."""
        answers = max(self.peak.total, 1)
        machine = self.seconds * cores()
        parts = {name: seconds / answers * 1e6 for name, seconds in self.cpu.items()}
        parts["other"] = max(machine - sum(self.cpu.values()), 0.0) / answers * 1e6
        parts["machine"] = machine / answers * 1e6
        return parts


@dataclass(frozen=True)
class Rounds:
    """The reference and the app measured turn about, ``len(reference)`` rounds each: a machine whose speed
    drifts (other work on the host, its clock) moves both sides of a round alike, and the median of the
    rounds' ratios is not thrown by one bad round, which a single pair of phases was (on one machine the
    same code gave 40 to 56% of the bare route in six runs one after another)."""

    reference: list[Phase]
    app: list[Phase]

    @property
    def ratios(self) -> list[float]:
        return [
            a.peak.rate / r.peak.rate if r.peak.rate else 0.0
            for r, a in zip(self.reference, self.app, strict=True)
        ]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def reference_rate(self) -> float:
        return statistics.median(phase.peak.rate for phase in self.reference)

    @property
    def app_rate(self) -> float:
        return statistics.median(phase.peak.rate for phase in self.app)

    def app_total(self, field: str) -> int:
        """A count summed over the app's phases: ``total``, ``ok``, ``non_2xx`` or ``socket_errors``."""
        return sum(getattr(phase.peak, field) for phase in self.app)

    @staticmethod
    def time_per_answer(phases: Sequence[Phase]) -> dict[str, float]:
        """Per part, the median over the phases of its CPU microseconds per answer."""
        shares = [phase.per_answer_us() for phase in phases]
        return {name: statistics.median(share[name] for share in shares) for name in shares[0]}

    def describe(self, reference_name: str, app_name: str) -> list[str]:
        """The lines a benchmark prints: each round's rates, then where the machine's time went."""
        lines = [
            f"round {number}: {reference_name} {r.peak.rate:.0f}/s, {app_name} {a.peak.rate:.0f}/s = "
            f"{100 * ratio:.1f}%"
            for number, (r, a, ratio) in enumerate(zip(self.reference, self.app, self.ratios, strict=True), 1)
        ]
        lines.append("CPU per answer, µs (median of the rounds; machine = both cores for the phase):")
        for name, phases in ((reference_name, self.reference), (app_name, self.app)):
            share = self.time_per_answer(phases)
            lines.append(
                f"  {name:<24}: web {share['web']:5.0f}, PostgreSQL {share['postgres']:4.0f}, "
                f"wrk {share['load']:4.0f}, other {share['other']:4.0f}; machine {share['machine']:5.0f}"
            )
        return lines

    def figures(self) -> dict[str, Any]:
        """For the RESULT line: the rounds' ratios and the time per answer of both sides."""
        return {
            "rounds": len(self.app),
            "round_ratios": [round(ratio, 4) for ratio in self.ratios],
            "reference_cpu_us": {k: round(v) for k, v in self.time_per_answer(self.reference).items()},
            "app_cpu_us": {k: round(v) for k, v in self.time_per_answer(self.app).items()},
        }


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class ProcessStat:
    name: str
    parent: int
    cpu_seconds: float  # user + system, so far


def process_stat(pid: int | str) -> ProcessStat | None:
    """A process's name, parent and CPU time from /proc/<pid>/stat (Linux); None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, _, rest = stat[stat.index("(") + 1 :].rpartition(")")
    fields = rest.split()
    # After the name: state, ppid, …; utime and stime are the 14th and 15th fields of the line.
    return ProcessStat(name, int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def process_cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of a server's processes (its gunicorn master and the workers)
    and of every PostgreSQL process on the machine, read from /proc (Linux). Empty elsewhere."""
    totals = {"web": 0.0, "postgres": 0.0}
    try:
        pids = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        stat = process_stat(pid)
        if stat is None:
            continue
        if int(pid) == server_pid or stat.parent == server_pid:
            totals["web"] += stat.cpu_seconds
        elif stat.name == "postgres":
            totals["postgres"] += stat.cpu_seconds
    return totals


def measured_phase(target: Target, seconds: float, connections: int, round_number: int = 1) -> Phase:
    """``run_wrk`` against ``target`` after it has settled, with the CPU every part spent meanwhile (wrk's
    own from this process's reaped children: the servers are children too, but still running)."""
    settle(target.port, target.settle_path)
    before = process_cpu(target.server_pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    script_args = [argument.format(round=round_number) for argument in target.script_args]
    peak = run_wrk(target.url, seconds, connections, script=target.script, script_args=script_args)
    wall = time.perf_counter() - started
    after = process_cpu(target.server_pid)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: after[name] - before[name] for name in before}
    cpu["load"] = (reaped.ru_utime - children.ru_utime) + (reaped.ru_stime - children.ru_stime)
    return Phase(peak, wall, cpu)


def alternate_peaks(reference: Target, app: Target, seconds: float, connections: int, rounds: int) -> Rounds:
    """``rounds`` rounds of the reference then the app, each phase ``seconds / rounds`` (at least 1 s)."""
    phase_seconds = max(1.0, seconds / rounds)
    measured = Rounds([], [])
    for number in range(1, rounds + 1):
        measured.reference.append(measured_phase(reference, phase_seconds, connections, number))
        measured.app.append(measured_phase(app, phase_seconds, connections, number))
    return measured


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
