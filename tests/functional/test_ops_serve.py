"""`popsync serve` for real: two gunicorn workers and the background worker on a fresh PostgreSQL
database. Counters add up across the processes, every log line is JSON with the request id, the
Dockerfile's health check passes, and SIGTERM stops everything and removes the metrics directory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.conftest import add_shop
from tests.conftest import app_config

# Once, on PostgreSQL (what a deployment serves from): it starts real processes and takes ~15 s.
pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

ROOT = Path(__file__).resolve().parents[2]
POPSYNC = str(Path(sys.executable).with_name("popsync"))
TOKEN = "serve-metrics-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthcheck_command(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK, pointed at this server's port."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    [line] = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    command = line.split(" CMD ", 1)[1].strip().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return ["/bin/sh", "-c", command]


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = requests.get(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        response.raise_for_status()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


@pytest.fixture
def server(fresh_database: sa.Engine, tmp_path: Path) -> Iterator[Server]:
    url = fresh_database.url.render_as_string(hide_password=False)
    add_shop(create_app(app_config(url, DATABASE_ENGINE=fresh_database, POPSYNC_INSTANCE_PATH=str(tmp_path))))
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PROMETHEUS_MULTIPROC_DIR", "POPSYNC_ENV", "TEST_DATABASE_URL")
    }
    env.update(
        {
            **app_config(url, POPSYNC_INSTANCE_PATH=str(tmp_path)),
            "SECRET_KEY": TEST_SECRET_KEY,
            "METRICS_TOKEN": TOKEN,
            # Nobody answers there: the background worker's push fails, and that is counted in its process.
            "SHOPIFY_ADMIN_ORIGIN": "http://127.0.0.1:9",
            "WORKER_POLL_INTERVAL": "0.1",
        }
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [POPSYNC, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Server(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while sum("Booting worker" in line for line in running.lines()) < 2:
            assert process.poll() is None, running.log.read_text()
            assert time.monotonic() < deadline, running.log.read_text()
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_popsync_serve_counts_logs_and_stops_cleanly(server: Server) -> None:
    # The image's health check, against this server (its workers may still be importing the app).
    deadline = time.monotonic() + 30
    while subprocess.run(healthcheck_command(server.port), capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the Dockerfile's health check never passed"
        time.sleep(0.2)

    # One worker is kept busy by a request whose headers have not all arrived: everything else goes to the
    # other worker, then the held request is answered by the first. Two processes count, one total shows.
    held = socket.create_connection(("127.0.0.1", server.port))
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: held-1\r\n")
    time.sleep(0.3)
    before = server.scrape()
    for index in range(10):
        response = requests.get(f"{server.url}/healthz", headers={"X-Request-Id": f"e2e-{index}"}, timeout=10)
        assert response.headers["X-Request-Id"] == f"e2e-{index}"
    held.sendall(b"Connection: close\r\n\r\n")
    assert b"200 OK" in held.recv(4096)
    held.close()
    secret_path = "/t/o/" + "S" * 60 + ".gif"
    requests.get(f"{server.url}{secret_path}?signature=topsecret", timeout=10)
    submitted = requests.post(
        f"{server.url}/storefront/submissions",
        json={"shop": "demo.myshopify.com", "email": "ann@example.com"},
        timeout=10,
    )
    assert submitted.status_code == 200

    healthz = frozenset({"route": "/healthz", "method": "GET", "status": "2xx"}.items())
    unreachable = frozenset({"platform": "shopify", "kind": "unreachable"}.items())
    deadline = time.monotonic() + 30
    while True:
        after = server.scrape()
        if after.get(("popsync_platform_errors_total", unreachable), 0) >= 1:
            break
        assert time.monotonic() < deadline, "the background worker's failed push was never counted"
        time.sleep(0.3)
    assert (
        after[("popsync_http_requests_total", healthz)]
        - before.get(("popsync_http_requests_total", healthz), 0)
        == 11
    )
    created = frozenset({"source": "form", "action": "create"}.items())
    assert after[("popsync_contact_syncs_total", created)] == 1

    # Every line JSON; each access line with its request id and route, from both web workers.
    entries = [json.loads(line) for line in server.lines()]
    access = [entry for entry in entries if entry["logger"] == "gunicorn.access"]
    by_id = {entry["request_id"]: entry for entry in access}
    for request_id in ["held-1", *(f"e2e-{index}" for index in range(10))]:
        assert by_id[request_id]["route"] == "/healthz"
        assert by_id[request_id]["status"] == 200
    assert by_id["held-1"]["pid"] != by_id["e2e-0"]["pid"]
    [pixel] = [entry for entry in access if entry["route"] == "/t/o/<token>.gif"]
    assert pixel["path"] == "/t/o/…"
    text = server.log.read_text()
    assert "S" * 40 not in text
    assert "topsecret" not in text
    assert "ann@example.com" not in text
    [directory] = re.findall(r"metrics: every process counts into ([^\s\"]+)", text)
    assert Path(directory).is_dir()

    # SIGTERM: gunicorn finishes, the background worker is stopped, the metrics directory goes.
    os.killpg(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=40) == 0
    assert not Path(directory).exists()
