"""Serve any WSGI app in exactly ``popsync serve``'s gunicorn configuration (app/gunicorn_conf.py: sync
workers, keep-alive, timeouts, the JSON access log), so a reference route and the app are served alike.

    .venv/bin/python bench/wsgi_serve.py module:attribute [--port 8000] [--workers 5]

Used by the benchmarks for their bare Flask routes; not a way to run popsync (that is ``popsync serve``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gunicorn.app.base import BaseApplication
from gunicorn.util import import_app

from app.gunicorn_conf import default_workers
from app.gunicorn_conf import gunicorn_options
from app.gunicorn_conf import prepare_metrics_dir
from app.gunicorn_conf import remove_metrics_dir


class WsgiServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, target: str, options: dict[str, Any]) -> None:
        self.target = target
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return import_app(self.target)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="the WSGI app, module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    # As run_server does: the metrics folder is part of the configuration (each worker writes to it).
    directory, created = prepare_metrics_dir()
    try:
        WsgiServer(args.target, gunicorn_options(args.host, args.port, args.workers)).run()
    finally:
        remove_metrics_dir(directory, created)


if __name__ == "__main__":
    main()
