"""An answered open survives the app being killed: gunicorn on a real database, SIGKILL mid-stream, and
every open that was answered is in the database afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from app import create_app
from app.db import get_database
from app.db import utcnow
from app.models import TrackingHit
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from tests.conftest import TEST_SECRET_KEY
from tests.conftest import add_shop
from tests.conftest import app_config

pytestmark = pytest.mark.slow

POPSYNC = shutil.which("popsync", path=str(Path(sys.executable).parent)) or "popsync"
OPENS = 600
KILL_AFTER = 250


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_answered_opens_survive_a_sigkill_of_the_app(fresh_database: sa.Engine, tmp_path: Path) -> None:
    url = fresh_database.url.render_as_string(hide_password=False)
    app = create_app(app_config(url))
    shop = add_shop(app)
    get_database(app).engine.dispose()  # only the server below talks to the database from here
    keyring = app.extensions["popsync.keyring"]
    tokens = {
        f"m-{i}": seal(keyring, TrackingLink(shop.id, "email", f"m-{i}", utcnow(), email=f"p{i}@example.com"))
        for i in range(OPENS)
    }
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": url,
        "POPSYNC_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    server = subprocess.Popen(
        [POPSYNC, "serve", "--no-worker", "--workers", "3", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the master and every worker are killed at once
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)

        answered: list[str] = []
        lock = threading.Lock()
        killed = threading.Event()

        def open_one(message_id: str) -> None:
            if killed.is_set():
                return
            try:
                response = requests.get(f"{base}/t/o/{tokens[message_id]}.gif", timeout=5)
            except requests.RequestException:
                return  # cut off by the kill: not answered, so nothing is promised
            if response.status_code == 200:
                with lock:
                    answered.append(message_id)
                    if len(answered) >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        os.killpg(server.pid, signal.SIGKILL)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(open_one, tokens))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)

    assert len(answered) >= KILL_AFTER
    with fresh_database.connect() as connection:
        recorded = set(connection.scalars(sa.select(TrackingHit.message_id)))
    assert set(answered) <= recorded
