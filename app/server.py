"""``popsync serve``: gunicorn in front of the app, configured from the command line."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from gunicorn.app.base import BaseApplication


class PopsyncServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from app import create_app

        return create_app()


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        # Each worker builds its own app (and engine) after the fork: no connection crosses processes.
        "preload_app": False,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        # The access log shows the path only: query strings may carry tokens or shop secrets.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
    }


def run_server(host: str, port: int, workers: int, with_worker: bool) -> None:
    """gunicorn in the foreground; the background worker as a child process beside it, stopped with it."""
    background = None
    if with_worker:
        background = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"])
    try:
        PopsyncServer(gunicorn_options(host, port, workers)).run()
    finally:
        if background is not None:
            background.terminate()
            try:
                background.wait(timeout=20)
            except subprocess.TimeoutExpired:
                background.kill()


class DemoServer(BaseApplication):  # type: ignore[misc]
    """One gunicorn worker (threaded): the development store keeps its rate buckets in that process."""

    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__()

    def load_config(self) -> None:
        options = gunicorn_options("127.0.0.1", self.port, 1)
        options.update({"worker_class": "gthread", "threads": 8, "accesslog": None})
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from app.demo import banner
        from app.demo import build_demo
        from app.demo import start_worker

        app, _store, api_key, wsgi = build_demo(self.port)
        start_worker(app)
        print(banner(self.port, api_key), flush=True)
        return wsgi


def run_demo_server(port: int) -> None:
    DemoServer(port).run()
