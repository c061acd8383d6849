"""Outbox drain against the development store throttling like Shopify: how much of the allowed rate the
worker uses, and how often it gets throttled anyway.

    .venv/bin/python bench/outbox.py [--seconds 120] [--restore-rate 100] [--bucket 2000] [--workers 1]
                                     [--database postgresql+psycopg://root@127.0.0.1:5432/postgres] [--quick]

A fresh database (a new PostgreSQL database on that server, else a temporary SQLite file) gets a backlog
larger than the run can drain; the workers drain it for ``--seconds`` against the development store over
real HTTP (one shop, Shopify, standard plan: 100 points/s). Prints pushes/s, points per push, the share of
the allowed points used (what the bucket held at the start plus what it restored during the run; target
>= 90%) and the share of calls the store refused as throttled (target <= 1%), then ``RESULT {json}``
(bench/run_all.py).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from common import drop_database
from common import emit_result
from common import fresh_database

from app import create_app
from app.cli import upgrade_database
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent
from app.db import get_database
from app.enums import Source
from app.jobs import Worker
from app.models import OutboxItem
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.shops import register_shop

DOMAIN = "bench.myshopify.com"
TOKEN = "shpat_bench"  # noqa: S105 (the development store's token, not a credential)


def fresh_database_url(server: str | None, folder: Path) -> tuple[str, str | None]:
    """(URL, the PostgreSQL database's name to drop after) or a SQLite file in ``folder``."""
    if server:
        return fresh_database(server)
    return f"sqlite:///{folder / 'bench.sqlite3'}", None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument(
        "--restore-rate", type=float, default=100.0, help="Shopify points restored per second"
    )
    parser.add_argument("--bucket", type=float, default=2000.0, help="Shopify bucket size in points")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--backlog", type=int, default=0, help="contacts queued (default: twice what can drain)"
    )
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--quick", action="store_true", help="a 20-second drain (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 20.0

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per call to the development store

    folder = Path(tempfile.mkdtemp(prefix="popsync-bench-"))
    url, created = fresh_database_url(args.database, folder)
    store = DevStore(shopify_restore_rate=args.restore_rate, shopify_bucket_size=args.bucket)
    store.add_shop("shopify", DOMAIN, TOKEN)
    server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"

    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-secret-key-0123456789",
            "SHOPIFY_ADMIN_ORIGIN": origin,
            "WORKER_POLL_INTERVAL": "0.2",
        }
    )
    upgrade_database(app)
    with get_database(app).write_transaction() as session:
        shop = register_shop(
            session, app.extensions["popsync.keyring"], platform="shopify", domain=DOMAIN, token=TOKEN
        )
        shop_id = shop.id

    points_per_push_guess = 40
    backlog = args.backlog or int(
        2 * (args.bucket + args.restore_rate * args.seconds) / points_per_push_guess
    )
    rng = random.Random(5)
    records = [
        Collected(
            email=f"shopper{i}@example.com",
            phone=f"+1415{rng.randint(2000000, 9999999)}" if i % 2 else None,
            first_name=rng.choice(["Ann", "Bo", "Cy", "Dee"]),
            email_consent=ConsentIntent.SUBSCRIBE if i % 3 == 0 else None,
            tags=("popup",),
        )
        for i in range(backlog)
    ]
    for start in range(0, backlog, 1000):
        app.extensions["popsync.contacts"].sync_batch(
            shop_id, records[start : start + 1000], source=Source.FORM
        )

    stop = threading.Event()
    workers = [
        Worker(
            get_database(app),
            app.config["POPSYNC"],
            app.extensions["popsync.keyring"],
            app.extensions["popsync.contacts"],
        )
        for _ in range(args.workers)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"stop": stop}) for w in workers]
    store.stats.reset()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    with get_database(app).sessionmaker() as session:
        pushes = session.scalar(
            sa.select(sa.func.count()).select_from(OutboxItem).where(OutboxItem.status == "done")
        )
    calls = store.stats.calls.get("shopify", 0)
    throttled = store.stats.throttled.get("shopify", 0)
    spent = store.stats.spent.get("shopify", 0.0)
    allowed = args.bucket + args.restore_rate * elapsed
    print(
        f"outbox drain: {elapsed:.0f} s, {args.workers} worker(s), restore {args.restore_rate:g} points/s, "
        f"bucket {args.bucket:g}, backlog {backlog}, database {'PostgreSQL' if created else 'SQLite'}"
    )
    print(f"  pushes                 {pushes}  ({pushes / elapsed:.2f}/s)")
    print(f"  points per push        {spent / max(pushes, 1):.1f}")
    print(f"  calls                  {calls}  ({calls / max(pushes, 1):.1f} per push)")
    print(f"  allowed rate used      {100 * spent / allowed:.1f}%  (target >= 90%)")
    print(f"  calls throttled        {100 * throttled / max(calls, 1):.2f}%  (target <= 1%)")

    get_database(app).engine.dispose()
    server.shutdown()
    if created and args.database:
        drop_database(args.database, created)
    emit_result(
        "outbox",
        seconds=round(elapsed, 1),
        workers=args.workers,
        database="postgresql" if created else "sqlite",
        pushes=pushes,
        pushes_per_s=round(pushes / elapsed, 2),
        points_spent=round(spent, 1),
        points_allowed=round(allowed, 1),
        used_share=round(spent / allowed, 4),
        calls=calls,
        throttled=throttled,
        throttled_share=round(throttled / max(calls, 1), 4),
    )


if __name__ == "__main__":
    main()
