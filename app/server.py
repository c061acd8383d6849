"""``popsync serve``: gunicorn in front of the app, configured from the command line."""

from __future__ import annotations

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
    PopsyncServer(gunicorn_options(host, port, workers)).run()
