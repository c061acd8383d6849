"""The development store's state: its shops and their tokens, fault injection, and the webhooks it sends.

Never used in production: ``popsync demo``, ``make run`` and the tests point ``SHOPIFY_ADMIN_ORIGIN`` /
``SHOPLINE_ADMIN_ORIGIN`` at it. It keeps customers in its own tables (its own metadata, its own database,
created on start), so it never touches popsync's schema.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

log = logging.getLogger("popsync.devstore")

# Every devstore table lives on this metadata; the platform modules add theirs.
METADATA = sa.MetaData()

shops = sa.Table(
    "devstore_shops",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False),
    sa.Column("access_token", sa.String(255), nullable=False, unique=True),
    sa.UniqueConstraint("platform", "domain"),
)


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class FaultPlan:
    """Rates in [0, 1] at which API calls fail, per kind, drawn from a seeded generator."""

    error: float = 0.0  # answer 500/503 without doing anything
    throttle: float = 0.0  # answer as the platform does when throttled, without doing anything
    timeout: float = 0.0  # hold the request ``timeout_seconds`` and then answer 503, doing nothing
    lost_answer: float = 0.0  # do the work, then answer 503 as if the answer were lost on the way
    timeout_seconds: float = 3.0


@dataclass
class Faults:
    seed: int = 0
    plan: FaultPlan = field(default_factory=FaultPlan)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 (reproducible fault injection, not security)
        self._lock = threading.Lock()

    def configure(self, **rates: float) -> None:
        with self._lock:
            self.plan = FaultPlan(**{**self.plan.__dict__, **rates})

    def _draw(self, kind: str) -> bool:
        with self._lock:
            rate = getattr(self.plan, kind)
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.counts[kind] = self.counts.get(kind, 0) + 1
            return hit

    def before_call(self) -> str | None:
        """The fault to inject before doing anything: "error", "throttle", "timeout", or None."""
        for kind in ("error", "throttle", "timeout"):
            if self._draw(kind):
                if kind == "timeout":
                    time.sleep(self.plan.timeout_seconds)
                return kind
        return None

    def lose_answer(self) -> bool:
        """After the work is done: should the answer be lost?"""
        return self._draw("lost_answer")


class CallStats:
    """What the store was asked, per platform: calls, calls refused as throttled, cost spent (Shopify points,
    SHOPLINE requests). Benchmarks read it to measure how much of the allowed rate a worker used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.throttled: dict[str, int] = {}
        self.spent: dict[str, float] = {}

    def record(self, platform: str, *, throttled: bool, cost: float) -> None:
        with self._lock:
            self.calls[platform] = self.calls.get(platform, 0) + 1
            if throttled:
                self.throttled[platform] = self.throttled.get(platform, 0) + 1
            else:
                self.spent[platform] = self.spent.get(platform, 0.0) + cost

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.spent.clear()


class WebhookSender:
    """Delivers signed webhooks to the app from a background thread, like the platforms do."""

    def __init__(self, app_url: str | None, secrets: dict[str, str]) -> None:
        self.app_url = app_url
        self.secrets = secrets
        self.sent: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[str, dict[str, str], bytes] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def send(self, platform: str, topic: str, shop_domain: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        secret = self.secrets.get(platform, "")
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        webhook_id = str(uuid.uuid4())
        if platform == "shopify":
            headers = {
                "X-Shopify-Topic": topic,
                "X-Shopify-Shop-Domain": shop_domain,
                "X-Shopify-Hmac-Sha256": signature,
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": webhook_id,
                "X-Shopify-API-Version": "2026-10",
                "X-Shopify-Triggered-At": now_utc().isoformat(),
            }
        else:
            headers = {
                "X-Shopline-Topic": topic,
                "X-Shopline-Shop-Domain": shop_domain,
                "X-Shopline-Hmac-Sha256": signature,
                "X-Shopline-Webhook-Id": webhook_id,
                "X-Shopline-API-Version": "v20260301",
            }
        headers["Content-Type"] = "application/json"
        self.sent.append(
            {
                "platform": platform,
                "topic": topic,
                "shop": shop_domain,
                "payload": payload,
                "headers": headers,
            }
        )
        if not self.app_url:
            return
        self._ensure_thread()
        self._queue.put((f"{self.app_url}/webhooks/{platform}", headers, body))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._deliver, name="devstore-webhooks", daemon=True)
            self._thread.start()

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                url, headers, body = item
                try:
                    response = requests.post(url, data=body, headers=headers, timeout=5)
                    if response.status_code >= 300:
                        log.info(
                            "webhook %s answered %s",
                            headers.get("X-Shopify-Topic") or headers.get("X-Shopline-Topic"),
                            response.status_code,
                        )
                except requests.RequestException as error:
                    log.info("webhook delivery failed: %s", type(error).__name__)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued webhook was delivered (tests)."""
        self._queue.join()


class DevStore:
    """One development store process serving many shops of both platforms."""

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        app_url: str | None = None,
        webhook_secrets: dict[str, str] | None = None,
        seed: int = 0,
        shopify_restore_rate: float = 100.0,
        shopify_bucket_size: float = 2000.0,
        shopline_rate: float = 4.0,
        shopline_bucket_size: float = 40.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        memory = url in ("sqlite://", "sqlite:///:memory:")
        self.engine = sa.create_engine(
            url,
            poolclass=StaticPool if memory else None,
            connect_args={"check_same_thread": False} if url.startswith("sqlite") else {},
        )
        # One writer at a time: the platforms' "one customer per email" must hold under concurrent calls.
        self.lock = threading.RLock()
        self.faults = Faults(seed)
        self.stats = CallStats()
        self.webhooks = WebhookSender(app_url, webhook_secrets or {})
        self.shopify_restore_rate = shopify_restore_rate
        self.shopify_bucket_size = shopify_bucket_size
        self.shopline_rate = shopline_rate
        self.shopline_bucket_size = shopline_bucket_size
        self.clock = clock
        # Imported for their tables on METADATA.
        from app.platforms.devstore import shopify_api  # noqa: F401
        from app.platforms.devstore import shopify_oauth  # noqa: F401
        from app.platforms.devstore import shopline_api  # noqa: F401

        METADATA.create_all(self.engine)

    def add_shop(self, platform: str, domain: str, access_token: str) -> None:
        with self.lock, self.engine.begin() as connection:
            existing = connection.execute(
                sa.select(shops.c.id).where(shops.c.platform == platform, shops.c.domain == domain)
            ).scalar()
            if existing is None:
                connection.execute(
                    shops.insert().values(platform=platform, domain=domain, access_token=access_token)
                )
            else:
                connection.execute(
                    shops.update().where(shops.c.id == existing).values(access_token=access_token)
                )

    def shop_for_token(self, platform: str, access_token: str, domain: str | None) -> tuple[int, str] | None:
        """The shop (id, domain) this token belongs to. ``domain`` is the shop the caller meant (popsync's
        clients send it as ``X-Forwarded-Host`` when their origin is rewritten): a token used for another
        shop is refused."""
        # Under the lock: with an in-memory database every thread shares one connection, and a read that
        # returns it could roll back another thread's write.
        with self.lock, self.engine.connect() as connection:
            row = connection.execute(
                sa.select(shops.c.id, shops.c.domain).where(
                    shops.c.platform == platform, shops.c.access_token == access_token
                )
            ).first()
        if row is None or (domain is not None and not hmac.compare_digest(row.domain, domain)):
            return None
        return row.id, row.domain

    def shop_domains(self, platform: str) -> list[tuple[int, str]]:
        with self.lock, self.engine.connect() as connection:
            return [
                (row.id, row.domain)
                for row in connection.execute(
                    sa.select(shops.c.id, shops.c.domain)
                    .where(shops.c.platform == platform)
                    .order_by(shops.c.domain)
                )
            ]
