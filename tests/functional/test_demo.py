"""`popsync demo` (what `make run` starts): a submission reaches the development store's customers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.functional.test_cli import POPSYNC
from tests.functional.test_cli import free_port

pytestmark = pytest.mark.slow


def wait_for(url: str, server: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            assert server.poll() is None, "the demo exited"
            assert time.monotonic() < deadline, "the demo did not answer"
            time.sleep(0.2)


def test_a_submission_in_the_demo_appears_in_the_store_customers(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "POPSYNC_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    server = subprocess.Popen(
        [POPSYNC, "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{origin}/healthz", server)
        answer = requests.post(
            f"{origin}/storefront/submissions",
            json={
                "shop": "demo.myshopify.com",
                "email": "ann@example.com",
                "first_name": "Ann",
                "email_consent": True,
            },
            timeout=10,
        )
        assert answer.json() == {"ok": True}
        deadline = time.monotonic() + 20
        while True:
            listing = requests.get(
                f"{origin}/devstore/customers", headers={"Accept": "application/json"}, timeout=5
            )
            customers = [c for shop in listing.json()["shops"] for c in shop["customers"]]
            if customers:
                break
            assert time.monotonic() < deadline, "no customer in the development store"
            time.sleep(0.2)
        assert [(c["email"], c["name"], c["email_consent"]) for c in customers] == [
            ("ann@example.com", "Ann", "subscribed")
        ]
        page = requests.get(f"{origin}/devstore/customers", timeout=5)
        assert "ann@example.com" in page.text
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert "/devstore/customers" in output
    assert "psk_" in output
