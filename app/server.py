"""``popsync serve``: gunicorn in front of the app (app/gunicorn_conf.py), and the demo server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from app.gunicorn_conf import gunicorn_options
from app.gunicorn_conf import prepare_metrics_dir
from app.gunicorn_conf import remove_metrics_dir


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """gunicorn in this process with ``options``, serving the WSGI app ``load`` returns (in each worker)."""

    def __init__(self, options: dict[str, Any], load: Callable[[], Any]) -> None:
        self.options = options
        self._load = load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._load()


def _popsync_app() -> Any:
    from app import create_app

    return create_app()


def run_server(host: str, port: int, workers: int, with_worker: bool, *, development: bool = False) -> None:
    """gunicorn in the foreground; the background worker as a child process beside it, stopped with it.

    The metrics directory is prepared first: the gunicorn workers and the background worker inherit it, so
    ``GET /metrics`` on any web worker adds up the counters of all of them (app/metrics.py)."""
    directory, created = prepare_metrics_dir()
    background = None
    try:
        if with_worker:
            background = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"])
        GunicornApp(gunicorn_options(host, port, workers, development=development), _popsync_app).run()
    finally:
        if background is not None:
            background.terminate()
            try:
                background.wait(timeout=20)
            except subprocess.TimeoutExpired:
                background.kill()
        remove_metrics_dir(directory, created)


def run_demo_server(port: int) -> None:
    """One gunicorn worker (threaded): the development store keeps its rate buckets in that process."""

    def load() -> Any:
        from app.demo import banner
        from app.demo import build_demo
        from app.demo import start_worker

        app, _store, api_key, wsgi = build_demo(port)
        start_worker(app)
        print(banner(port, api_key), flush=True)
        return wsgi

    options = gunicorn_options("127.0.0.1", port, 1, development=True)
    options.update({"worker_class": "gthread", "threads": 8, "accesslog": None})
    GunicornApp(options, load).run()
