"""gunicorn's configuration for ``popsync serve`` (and so for the Docker image, whose command it is).

- Workers: sync workers, ``2 x CPU cores + 1`` unless ``--workers`` says otherwise; each builds its own app
  and database pool after the fork (no connection crosses processes).
- Timeouts: a request running longer than ``TIMEOUT`` seconds gets its worker restarted; on SIGTERM the
  workers finish the requests in flight for up to ``GRACEFUL_TIMEOUT`` seconds, so an orchestrator should
  allow at least that before SIGKILL (docs/deploy.md).
- Forwarded headers: gunicorn trusts none of them (``forwarded_allow_ips`` empty). ``PROXY_COUNT`` is the
  one setting about proxies; the app's ProxyFix reads exactly that many ``X-Forwarded-For`` and
  ``X-Forwarded-Proto`` entries. Trusting them in gunicorn too would let a client that reaches the socket
  directly choose its scheme.
- Logs: gunicorn's own lines and the access log as JSON (``JsonLogger``), one object a line, each access
  line with the request id and the route template; the path is shown with long segments (tracking and
  unsubscribe tokens) masked, and never the query string (signatures, tokens) or cookies.
- Metrics: ``PROMETHEUS_MULTIPROC_DIR`` is prepared before any worker starts (emptied of a previous run's
  files) and a worker's files are marked dead when it exits (app/metrics.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from app import metrics
from app.logging_setup import JsonFormatter
from app.logging_setup import TextFormatter
from app.logging_setup import masked_path
from app.ops.requests import REQUEST_ID_ENVIRON
from app.ops.requests import ROUTE_ENVIRON

TIMEOUT = 30
GRACEFUL_TIMEOUT = 20
KEEPALIVE = 5


def default_workers() -> int:
    """2 x the CPU cores this process may run on (a container's cpuset, not the host's count) + 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 * max(cores, 1) + 1


def gunicorn_options(host: str, port: int, workers: int, *, development: bool = False) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        # Each worker builds its own app (and engine) after the fork: no connection crosses processes, and
        # prometheus_client is first imported in the worker, after PROMETHEUS_MULTIPROC_DIR is set.
        "preload_app": False,
        "timeout": TIMEOUT,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": KEEPALIVE,
        # The heartbeat file on a RAM disk when there is one (a container's overlay filesystem can stall it).
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,  # noqa: S108
        "forwarded_allow_ips": "",
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": TextLogger if development else JsonLogger,
        "on_starting": on_starting,
        "child_exit": child_exit,
    }


def prepare_metrics_dir() -> tuple[str, bool]:
    """The multiprocess directory and whether it was made here: ``PROMETHEUS_MULTIPROC_DIR`` if the operator
    set one (emptied: counters left by a previous run would be added to this run's), else a new one."""
    directory = metrics.multiprocess_dir()
    if not directory:
        directory = tempfile.mkdtemp(prefix="popsync-metrics-")
        os.environ[metrics.MULTIPROCESS_ENV] = directory
        return directory, True
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for child in path.glob("*.db"):
        child.unlink()
    return directory, False


def remove_metrics_dir(directory: str, created: bool) -> None:
    if created:
        shutil.rmtree(directory, ignore_errors=True)


def on_starting(server: Any) -> None:
    directory = metrics.multiprocess_dir()
    if directory:
        server.log.info("metrics: every process counts into %s", directory)


def child_exit(server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)


class JsonLogger(Logger):
    """gunicorn's logger with JSON lines: its own messages, and one access line per request."""

    formatter: logging.Formatter = JsonFormatter()

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(self.formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status
        code = int(status.split(None, 1)[0]) if isinstance(status, str) else int(status or 0)
        fields = {
            "request_id": environ.get(REQUEST_ID_ENVIRON),
            "method": environ.get("REQUEST_METHOD"),
            "route": environ.get(ROUTE_ENVIRON),
            "path": masked_path(environ.get("PATH_INFO") or ""),
            "status": code,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info("request", extra={"fields": fields, "request_id": fields["request_id"]})
        except Exception:
            self.exception("access log line failed")


class TextLogger(JsonLogger):
    """Development: the same lines as text."""

    formatter = TextFormatter()

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        self.access_log.info(
            "%s %s %s %.1fms",
            environ.get("REQUEST_METHOD"),
            masked_path(environ.get("PATH_INFO") or ""),
            str(resp.status).split(None, 1)[0],
            request_time.total_seconds() * 1000,
            extra={"request_id": environ.get(REQUEST_ID_ENVIRON)},
        )
