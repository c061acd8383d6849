"""Serve any WSGI app in exactly ``popsync serve``'s gunicorn configuration (app/gunicorn_conf.py: sync
workers, keep-alive, timeouts, the JSON access log), so a reference route and the app are served alike.

    .venv/bin/python bench/wsgi_serve.py module:attribute [--port 8000] [--workers 5]

Used by the benchmarks for their bare Flask routes; not a way to run popsync (that is ``popsync serve``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gunicorn.util import import_app

from app.gunicorn_conf import default_workers
from app.gunicorn_conf import gunicorn_options
from app.gunicorn_conf import prepare_metrics_dir
from app.gunicorn_conf import remove_metrics_dir
from app.server import GunicornApp


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
        options = gunicorn_options(args.host, args.port, args.workers)
        GunicornApp(options, lambda: import_app(args.target)).run()
    finally:
        remove_metrics_dir(directory, created)


if __name__ == "__main__":
    main()
