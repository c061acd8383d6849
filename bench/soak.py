"""Soak: storefront submissions and open-pixel hits at a steady rate for ten minutes against `popsync serve`
on PostgreSQL, with the background worker writing to the development store. Are there errors, does memory
stay flat, does the outbox keep up?

    .venv/bin/python bench/soak.py [--seconds 600] [--submissions 5] [--pixels 20] [--workers 3]
                                   [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]

1. A fresh PostgreSQL database (migrated), one Shopify shop, a pool of sealed pixel tokens.
2. The development store on a loopback port, throttling like Shopify Plus (1,000 points/s) so the platform
   is not the bottleneck being measured; ``popsync serve`` (gunicorn with ``--workers`` sync workers and the
   background worker) with ``SHOPIFY_ADMIN_ORIGIN`` pointing at it, ``PROXY_COUNT=1`` and a different
   ``X-Forwarded-For`` per request, so the real rate limits (counters in the database) are in the path.
3. Open loop: requests leave on schedule (``--submissions`` and ``--pixels`` per second) whether or not
   earlier ones were answered. Submissions: 70% new people, 30% returning ones with a new value. Pixel hits:
   a pool of recipients and messages, so some opens are first opens (a sync) and most are repeats.
4. Every ``--sample-every`` seconds: answers and errors, p50/p99 latency, RSS of every popsync process
   (gunicorn master, web workers, background worker), and from ``GET /metrics``: the outbox's pending depth
   and oldest pending age, and the opens not yet synced and the oldest one's age.
5. After the load: time for the worker to drain, then every accepted person must be a contact synced to
   the development store (nothing lost), and the server's log must hold no error line.

Reuses bench/pixel.py's helpers (fresh database, migrations, gunicorn stop) and bench/outbox.py's shop.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests
import sqlalchemy as sa
from outbox import DOMAIN
from outbox import TOKEN
from pixel import drop_database
from pixel import free_port
from pixel import fresh_database
from pixel import migrate
from pixel import stop
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from app import create_app
from app.db import get_database
from app.db import utcnow
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.shops import register_shop
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal

SECRET = "soak-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway database's key)
METRICS_TOKEN = "soak-metrics-token-0123456789"  # noqa: S105
POPSYNC = str(Path(sys.executable).with_name("popsync"))
FIRST_NAMES = ["Ann", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo"]


@dataclass
class Tally:
    """Answers of one kind of request within one sampling interval."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def add(self, status: str, seconds: float) -> None:
        self.statuses[status] += 1
        self.latencies.append(seconds)


class Load:
    """Open-loop senders: each kind leaves on its own schedule from a shared thread pool."""

    def __init__(self, url: str, tokens: list[str], seed: int = 11) -> None:
        self.url = url
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.current: dict[str, Tally] = {"submission": Tally(), "pixel": Tally()}
        self.totals: Counter[str] = Counter()
        self.accepted_emails: set[str] = set()
        self.people = 0
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def take_interval(self) -> dict[str, Tally]:
        with self.lock:
            taken, self.current = self.current, {"submission": Tally(), "pixel": Tally()}
            return taken

    def _record(self, kind: str, status: str, seconds: float) -> None:
        with self.lock:
            self.current[kind].add(status, seconds)
            self.totals[f"{kind} {status}"] += 1

    def submission(self) -> None:
        with self.lock:
            if self.people and self.rng.random() < 0.3:
                number = self.rng.randrange(self.people)
            else:
                number = self.people
                self.people += 1
            body = {
                "shop": DOMAIN,
                "email": f"soak{number}@example.com",
                "first_name": self.rng.choice(FIRST_NAMES),
                "email_consent": self.rng.random() < 0.5,
            }
            forwarded = f"10.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
        started = time.perf_counter()
        try:
            response = self.session().post(
                f"{self.url}/storefront/submissions",
                json=body,
                headers={"X-Forwarded-For": forwarded},
                timeout=30,
            )
            status = str(response.status_code)
        except requests.RequestException as error:
            status = type(error).__name__
        if status == "200":
            with self.lock:
                self.accepted_emails.add(body["email"])
        self._record("submission", status, time.perf_counter() - started)

    def pixel(self) -> None:
        with self.lock:
            token = self.rng.choice(self.tokens)
        started = time.perf_counter()
        try:
            response = self.session().get(f"{self.url}/t/o/{token}.gif", timeout=30)
            status = str(response.status_code)
        except requests.RequestException as error:
            status = type(error).__name__
        self._record("pixel", status, time.perf_counter() - started)


def schedule(rate: float, seconds: float, send: Callable[[], None], pool: ThreadPoolExecutor) -> None:
    """Submit ``send`` ``rate`` times a second for ``seconds``, on the clock (open loop)."""
    if rate <= 0:
        return
    started = time.monotonic()
    sent = 0
    while True:
        due = started + sent / rate
        if due - started >= seconds:
            return
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        pool.submit(send)
        sent += 1


def process_tree(root: int) -> dict[int, str]:
    """pid -> role for the `popsync serve` process and its descendants, from /proc."""
    roles: dict[int, str] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        if pid == root:
            roles[pid] = "master"
        elif "app.cli worker" in command:
            roles[pid] = "worker"
        else:
            roles[pid] = "web"
        pending.extend(int(child) for child in children)
    return roles


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def gauge(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    if labels:
        return samples.get((name, frozenset(labels.items())), 0.0)
    return sum(value for (sample, _), value in samples.items() if sample == name)


def role_order(key: str) -> tuple[int, str]:
    return ("master", "web", "worker").index(key.split(":")[0]), key


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql+psycopg://root@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--submissions", type=float, default=5.0, help="submissions per second")
    parser.add_argument("--pixels", type=float, default=20.0, help="pixel hits per second")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn web workers")
    parser.add_argument("--sample-every", type=float, default=30.0)
    parser.add_argument("--recipients", type=int, default=1500, help="pixel recipients (x 3 messages)")
    args = parser.parse_args()
    # Stopped with SIGTERM (timeout, kill): still stop the server and drop the database (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The development store answers in this process: its request lines would drown the figures.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    url, name = fresh_database(args.database)
    folder = Path(tempfile.mkdtemp(prefix="popsync-soak-"))
    store = DevStore(shopify_restore_rate=1000.0, shopify_bucket_size=20000.0)
    store.add_shop("shopify", DOMAIN, TOKEN)
    store_server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    threading.Thread(target=store_server.serve_forever, daemon=True).start()
    port = free_port()
    config = {
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
        "APP_URL": f"http://127.0.0.1:{port}",
        "SHOPIFY_ADMIN_ORIGIN": f"http://127.0.0.1:{store_server.server_port}",
        "PROXY_COUNT": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
        "POPSYNC_INSTANCE_PATH": str(folder / "instance"),
    }
    server = None
    try:
        app = create_app(config)
        migrate(app)
        keyring = app.extensions["popsync.keyring"]
        with get_database(app).write_transaction() as session:
            shop = register_shop(
                session, keyring, platform="shopify", domain=DOMAIN, token=TOKEN, region="US"
            )
        # Two thirds of the pixel's recipients are people who also submit the form (soakN@example.com): a
        # sender mails its own list. The other third are new to popsync and become contacts on first open.
        tokens = [
            seal(
                keyring,
                TrackingLink(
                    shop.id,
                    "email",
                    f"campaign-{message}",
                    utcnow(),
                    email=f"reader{recipient}@example.com"
                    if recipient % 3 == 0
                    else f"soak{recipient}@example.com",
                ),
            )
            for recipient in range(args.recipients)
            for message in range(3)
        ]
        env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(config)
        log_path = folder / "serve.log"
        with open(log_path, "wb") as log_file:
            server = subprocess.Popen(
                [
                    POPSYNC,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"popsync serve did not start; see {log_path}")
            time.sleep(0.3)
        time.sleep(2)  # every web worker booted

        load = Load(base, tokens)
        print(
            f"soak: {args.seconds:.0f} s, {args.submissions:g} submissions/s + {args.pixels:g} pixel hits/s, "
            f"popsync serve --workers {args.workers} + 1 background worker, PostgreSQL, development store "
            "at Shopify Plus rates",
            flush=True,
        )
        header = (
            f"{'t (s)':>6} {'sub/s':>6} {'pix/s':>6} {'errors':>6} {'sub p50/p99 ms':>15} "
            f"{'pix p50/p99 ms':>15} {'RSS MB master/web…/worker':>34} {'outbox':>6} "
            f"{'oldest s':>8} {'hits':>5} {'oldest s':>8}"
        )
        print(header, flush=True)
        samples: list[dict[str, float]] = []
        rss_by_role: dict[str, list[tuple[float, float]]] = {}
        stop_sampling = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop_sampling.wait(args.sample_every):
                elapsed = time.monotonic() - started
                interval = load.take_interval()
                metrics = scrape(base)
                roles = process_tree(server.pid)  # type: ignore[union-attr]
                memory = {}
                for pid, role in sorted(roles.items()):
                    size = rss_mb(pid)
                    if size is not None:
                        memory[f"{role}:{pid}"] = size
                        rss_by_role.setdefault(f"{role}:{pid}", []).append((elapsed, size))
                errors = sum(
                    count
                    for tally in interval.values()
                    for status, count in tally.statuses.items()
                    if status != "200"
                )
                row = {
                    "t": elapsed,
                    "errors": errors,
                    "outbox": gauge(metrics, "popsync_outbox_depth", kind="push_contact", status="pending"),
                    "oldest": gauge(
                        metrics, "popsync_outbox_oldest_pending_age_seconds", kind="push_contact"
                    ),
                    "hits": gauge(metrics, "popsync_tracking_hits_pending"),
                    "hits_oldest": gauge(metrics, "popsync_tracking_hits_oldest_pending_age_seconds"),
                }
                samples.append(row)
                ordered = [memory[key] for key in sorted(memory, key=role_order)]
                subs, pixels = interval["submission"], interval["pixel"]
                print(
                    f"{elapsed:6.0f} {len(subs.latencies) / args.sample_every:6.1f} "
                    f"{len(pixels.latencies) / args.sample_every:6.1f} {errors:6d} "
                    f"{percentile(subs.latencies, 0.5):6.1f}/{percentile(subs.latencies, 0.99):<8.1f} "
                    f"{percentile(pixels.latencies, 0.5):6.1f}/{percentile(pixels.latencies, 0.99):<8.1f} "
                    f"{' '.join(f'{size:.0f}' for size in ordered):>34} {row['outbox']:6.0f} "
                    f"{row['oldest']:8.1f} {row['hits']:5.0f} {row['hits_oldest']:8.1f}",
                    flush=True,
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(max_workers=64) as pool:
            senders = [
                threading.Thread(
                    target=schedule, args=(args.submissions, args.seconds, load.submission, pool)
                ),
                threading.Thread(target=schedule, args=(args.pixels, args.seconds, load.pixel, pool)),
            ]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
        stop_sampling.set()
        sampler.join()

        # Nothing lost: the worker drains, then every accepted person is a contact written to the store.
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < 120:
            metrics = scrape(base)
            waiting = gauge(metrics, "popsync_outbox_depth", kind="push_contact", status="pending") + gauge(
                metrics, "popsync_outbox_depth", kind="push_contact", status="running"
            )
            if not waiting and not gauge(metrics, "popsync_tracking_hits_pending"):
                break
            time.sleep(1)
        drained_in = time.monotonic() - drain_started
        engine = get_database(app).engine
        with engine.connect() as connection:
            emails = set(connection.scalars(sa.text("SELECT email FROM contacts WHERE email LIKE 'soak%'")))
            unsynced = connection.scalar(
                sa.text("SELECT count(*) FROM contacts WHERE sync_status <> 'synced'")
            )
            contacts = connection.scalar(sa.text("SELECT count(*) FROM contacts"))
        metrics = scrape(base)
        log_lines = log_path.read_text().splitlines()
        error_lines = [
            line for line in log_lines if '"level": "error"' in line or '"level": "critical"' in line
        ]

        print()
        print("totals:", ", ".join(f"{key} x{count}" for key, count in sorted(load.totals.items())))
        total_errors = sum(count for key, count in load.totals.items() if not key.endswith(" 200"))
        print(f"errors (non-200 answers or failed requests): {total_errors}")
        print(
            f"after the load: outbox drained in {drained_in:.1f} s; {contacts} contacts, "
            f"{unsynced} not synced; accepted people missing from the contacts: "
            f"{len(load.accepted_emails - emails)}"
        )
        print(
            "platform writes: "
            + ", ".join(
                f"{dict(labels)['outcome']} {value:.0f}"
                for (sample, labels), value in sorted(metrics.items())
                if sample == "popsync_platform_writes_total"
            )
            + f"; platform errors: {gauge(metrics, 'popsync_platform_errors_total'):.0f}"
            + f"; development store calls {store.stats.calls.get('shopify', 0)}, throttled "
            f"{store.stats.throttled.get('shopify', 0)}"
        )
        print(f"server log: {len(log_lines)} lines, {len(error_lines)} at error level")
        for line in error_lines[:5]:
            print("   ", line[:300])
        steady = [row for row in samples if row["t"] >= 60]
        if steady:
            oldest = [r["oldest"] for r in steady]
            print(
                "outbox (push_contact) after the first minute: pending max "
                f"{max(r['outbox'] for r in steady):.0f}, oldest pending age max {max(oldest):.1f} s, "
                f"mean {statistics.mean(oldest):.1f} s; opens waiting max "
                f"{max(r['hits'] for r in steady):.0f}, oldest max "
                f"{max(r['hits_oldest'] for r in steady):.1f} s"
            )
        print("RSS per process, first sample after 60 s -> last sample (MB):")
        for key, points in sorted(rss_by_role.items()):
            after_warmup = [size for moment, size in points if moment >= 60] or [size for _, size in points]
            print(
                f"    {key:<14} {after_warmup[0]:7.1f} -> {after_warmup[-1]:7.1f}  "
                f"(max {max(after_warmup):.1f}, change {after_warmup[-1] - after_warmup[0]:+.1f})"
            )
        engine.dispose()
    finally:
        if server is not None and server.poll() is None:
            stop(server)
        store_server.shutdown()
        drop_database(args.database, name)


if __name__ == "__main__":
    main()
