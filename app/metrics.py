"""Prometheus metrics: counters kept by every process, and the outbox read from the database at scrape time.

gunicorn runs several worker processes and ``popsync serve`` a background worker beside them; a counter
kept in one process's memory would show whichever process answered the scrape. So ``popsync serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` (app/gunicorn_conf.py) and prometheus_client's multiprocess mode keeps every
process's counters in files there, summed at scrape time. Without it (tests, ``popsync demo``, a lone
``popsync worker``) the counters live in this process.

prometheus_client decides between the two modes when it is first imported, so it is imported here lazily,
on the first count or scrape: by then a gunicorn worker has forked from a master that set the directory.
``create_app`` must not import it (a test checks).

Labels never carry a shop, a contact or a path: only route templates, methods, status classes, actions
and error kinds, so the scrape reveals no shop data and its size stays fixed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("popsync.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "unmatched"
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None
_registry: Any = None


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def _get() -> dict[str, Any]:
    """The metric objects of this process, made on first use (see the module's docstring for why)."""
    global _metrics, _registry
    if _metrics is not None:
        return _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client import Counter
            from prometheus_client import Histogram
            from prometheus_client import disable_created_metrics

            # The *_created series double the scrape and say nothing a restart's counter reset does not.
            disable_created_metrics()

            # This process's own registry (never the library's global one): in multiprocess mode the
            # values go to files whatever the registry; otherwise this registry is what a scrape reads.
            registry = CollectorRegistry(auto_describe=True)
            _metrics = {
                "requests": Counter(
                    "popsync_http_requests",
                    "HTTP requests answered, by route template, method and status class.",
                    ["route", "method", "status"],
                    registry=registry,
                ),
                "duration": Histogram(
                    "popsync_http_request_duration_seconds",
                    "Time to answer an HTTP request, by route template.",
                    ["route"],
                    buckets=_DURATION_BUCKETS,
                    registry=registry,
                ),
                "syncs": Counter(
                    "popsync_contact_syncs",
                    "Records synced into the contact list by the rules, by source and action "
                    "(create, update, skip, identify).",
                    ["source", "action"],
                    registry=registry,
                ),
                "writes": Counter(
                    "popsync_platform_writes",
                    "Platform customer writes finished by the worker, by platform and outcome.",
                    ["platform", "outcome"],
                    registry=registry,
                ),
                "errors": Counter(
                    "popsync_platform_errors",
                    "Platform calls that failed, by platform and kind (throttled, timeout, unreachable, "
                    "server_error, auth, refused, other).",
                    ["platform", "kind"],
                    registry=registry,
                ),
                "pruned": Counter(
                    "popsync_events_pruned",
                    "Contact events deleted because they were older than EVENT_RETENTION_DAYS.",
                    registry=registry,
                ),
            }
            _registry = registry
    return _metrics


def _safely(count: Any) -> None:
    """Counting must never break what is counted: a full disk or a bad directory only loses a count."""
    try:
        count()
    except Exception:
        log.warning("a metric could not be counted", exc_info=True)


# --- counting ----------------------------------------------------------------------------------------


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def record_request(route: str | None, method: str, status: int, seconds: float) -> None:
    def count() -> None:
        metrics = _get()
        label = route or UNMATCHED_ROUTE
        metrics["requests"].labels(label, method.upper()[:10], status_class(status)).inc()
        metrics["duration"].labels(label).observe(seconds)

    _safely(count)


def record_syncs(source: str, tally: Mapping[str, int]) -> None:
    """Count a committed batch's syncs: ``tally`` is how many records ended in each action."""

    def count() -> None:
        counter = _get()["syncs"]
        for action, number in tally.items():
            counter.labels(source, str(action)).inc(number)

    _safely(count)


def record_platform_write(platform: str, outcome: str) -> None:
    _safely(lambda: _get()["writes"].labels(platform, outcome).inc())


def record_events_pruned(number: int) -> None:
    if number:
        _safely(lambda: _get()["pruned"].inc(number))


def platform_error_kind(error: Exception) -> str | None:
    """What kind of platform failure ``error`` is, or None when it is not one (popsync's own rate budget
    pacing a call it has not sent is not a platform error)."""
    from app.platforms.base import AuthFailed
    from app.platforms.base import FailedForGood
    from app.platforms.base import RetryLater

    if isinstance(error, AuthFailed):
        return "auth"
    if isinstance(error, FailedForGood):
        return "refused"
    if not isinstance(error, RetryLater):
        return None
    reason = str(error).lower()
    if error.throttled:
        return None if "budget" in reason else "throttled"
    if "in time" in reason or "timed out" in reason:
        return "timeout"
    if "could not reach" in reason or "on the way" in reason:
        return "unreachable"
    if any(f" {code}" in reason for code in range(500, 600)):
        return "server_error"
    return "other"


def record_platform_error(platform: str, error: Exception) -> None:
    kind = platform_error_kind(error)
    if kind is not None:
        _safely(lambda: _get()["errors"].labels(platform, kind).inc())


class CountingClient:
    """Wraps a platform client: every platform failure its calls raise is counted, then raised on."""

    def __init__(self, client: Any, platform: str) -> None:
        self._client = client
        self._platform = platform

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except Exception as error:
                record_platform_error(self._platform, error)
                raise

        return call


# --- the scrape --------------------------------------------------------------------------------------


class DatabaseCollector:
    """The outbox and the tracking queue, read when Prometheus scrapes (one short read transaction)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from app.enums import OutboxStatus
        from app.models import OutboxItem
        from app.models import TrackingHit

        up = GaugeMetricFamily("popsync_database_up", "1 when the database answered the scrape's queries.")
        depth = GaugeMetricFamily(
            "popsync_outbox_depth",
            "Background jobs in the outbox, by kind and status.",
            labels=["kind", "status"],
        )
        oldest = GaugeMetricFamily(
            "popsync_outbox_oldest_pending_age_seconds",
            "Age of the oldest job waiting in the outbox, by kind (0 when none waits).",
            labels=["kind"],
        )
        hits = GaugeMetricFamily(
            "popsync_tracking_hits_pending", "Opens and clicks not yet synced by the worker."
        )
        hits_age = GaugeMetricFamily(
            "popsync_tracking_hits_oldest_pending_age_seconds",
            "Age of the oldest open or click not yet synced.",
        )
        now = datetime.now(UTC)
        try:
            with self.db.sessionmaker() as session:
                rows = session.execute(
                    sa.select(
                        OutboxItem.kind,
                        OutboxItem.status,
                        sa.func.count(OutboxItem.id),
                        sa.func.min(OutboxItem.created_at),
                    )
                    .where(
                        OutboxItem.status.in_((OutboxStatus.PENDING, OutboxStatus.RUNNING, OutboxStatus.DEAD))
                    )
                    .group_by(OutboxItem.kind, OutboxItem.status)
                ).all()
                pending_hits = session.scalar(
                    sa.select(sa.func.count(TrackingHit.id)).where(TrackingHit.processed_at.is_(None))
                )
                first_hit = session.scalar(
                    sa.select(TrackingHit.occurred_at)
                    .where(TrackingHit.processed_at.is_(None))
                    .order_by(TrackingHit.id)
                    .limit(1)
                )
        except SQLAlchemyError as error:
            log.warning("metrics: the database did not answer (%s)", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        ages: dict[str, float] = {}
        for kind, status, count, first_created in rows:
            depth.add_metric([kind, status], count)
            if status == OutboxStatus.PENDING and first_created is not None:
                first = first_created if first_created.tzinfo else first_created.replace(tzinfo=UTC)
                ages[kind] = max(ages.get(kind, 0.0), (now - first).total_seconds())
        from app.enums import OutboxKind

        for kind in sorted({k.value for k in OutboxKind} | set(ages)):
            oldest.add_metric([kind], max(ages.get(kind, 0.0), 0.0))
        hits.add_metric([], pending_hits or 0)
        if first_hit is not None:
            first_hit = first_hit if first_hit.tzinfo else first_hit.replace(tzinfo=UTC)
            hits_age.add_metric([], max((now - first_hit).total_seconds(), 0.0))
        else:
            hits_age.add_metric([], 0.0)
        yield from (up, depth, oldest, hits, hits_age)


def render(db: Any) -> bytes:
    """The scrape: every process's counters (or this process's) and the database's gauges, as text."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import generate_latest

    _get()  # every metric shows, at zero, before its first count
    registry = CollectorRegistry()
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ProcessCollector())
    registry.register(DatabaseCollector(db))
    return generate_latest(registry)


class _ProcessCollector:
    """This process's registry, read through another registry (a collector of collectors)."""

    def collect(self) -> Iterator[Any]:
        yield from _registry.collect()


def mark_process_dead(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the live-gauge files of a worker that exited (counters are kept)."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
