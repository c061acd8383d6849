"""Run the development store on a real HTTP port in a background thread, for end-to-end tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import make_server

from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore


@dataclass
class RunningDevStore:
    store: DevStore
    origin: str


@contextmanager
def running_devstore(store: DevStore) -> Iterator[RunningDevStore]:
    server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="devstore", daemon=True)
    thread.start()
    try:
        yield RunningDevStore(store, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
