"""The popsync command, run as a merchant's operator would run it: a real process, a real database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import TEST_SECRET_KEY
from tests.conftest import ScratchDatabases

POPSYNC = shutil.which("popsync", path=str(Path(sys.executable).parent)) or "popsync"


def make_env(scratch: ScratchDatabases, folder: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": scratch.create(),
        "POPSYNC_INSTANCE_PATH": str(folder / "instance"),
    }


@pytest.fixture
def env(scratch: ScratchDatabases, tmp_path: Path) -> dict[str, str]:
    return make_env(scratch, tmp_path)


@pytest.fixture(scope="module")
def migrated_env(scratch: ScratchDatabases, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = make_env(scratch, tmp_path_factory.mktemp("cli"))
    assert popsync(env, "db", "upgrade").returncode == 0
    return env


def popsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POPSYNC, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_help_works_without_any_setting() -> None:
    result = subprocess.run(
        [POPSYNC, "--help"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=False
    )
    assert result.returncode == 0
    for command in ("db", "shops", "serve"):
        assert command in result.stdout


def test_upgrade_add_list_and_api_key(env: dict[str, str]) -> None:
    assert popsync(env, "db", "upgrade").returncode == 0
    assert popsync(env, "db", "upgrade").stdout.strip() == "database is up to date"  # idempotent

    added = popsync(
        env,
        "shops",
        "add",
        "--platform",
        "shopify",
        "--domain",
        "Demo.myshopify.com",
        "--token",
        "shpat_first",
        "--region",
        "us",
    )
    assert added.returncode == 0, added.stderr
    shop = json.loads(added.stdout)
    assert (shop["domain"], shop["platform"], shop["region"], shop["has_token"]) == (
        "demo.myshopify.com",
        "shopify",
        "US",
        True,
    )
    assert "shpat_first" not in added.stdout

    again = popsync(
        env,
        "shops",
        "add",
        "--platform",
        "shopify",
        "--domain",
        "demo.myshopify.com",
        "--token",
        "shpat_second",
        "--refresh-token",
        "r",
        "--expires-at",
        "2026-12-01T10:00:00Z",
    )
    assert json.loads(again.stdout)["id"] == shop["id"]
    assert json.loads(again.stdout)["token_expires_at"] == "2026-12-01T10:00:00+00:00"

    listed = json.loads(popsync(env, "shops", "list", "--json").stdout)
    assert [s["domain"] for s in listed] == ["demo.myshopify.com"]
    # The new shop's existing customers are read in once: a renewed token starts no second backfill.
    engine = sa.create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            pulls = connection.execute(sa.text("SELECT kind, status FROM customer_pulls")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in pulls] == [("backfill", "queued")]
    assert "demo.myshopify.com" in popsync(env, "shops", "list").stdout

    key = popsync(env, "shops", "api-key", "--domain", "demo.myshopify.com").stdout.strip()
    assert key.startswith("psk_")
    assert len(key) > 40


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["shops", "add", "--platform", "wix", "--domain", "a.myshopify.com", "--token", "t"],
            ["--platform"],
        ),
        (
            ["shops", "add", "--platform", "shopify", "--domain", "evil.com", "--token", "t"],
            ["myshopify.com"],
        ),
        (
            ["shops", "add", "--platform", "shopify", "--domain", "x.myshopify.com.evil.com", "--token", "t"],
            ["domain"],
        ),
        (
            ["shops", "add", "--platform", "shopline", "--domain", "x.myshopify.com", "--token", "t"],
            ["myshopline.com"],
        ),
        (
            [
                "shops",
                "add",
                "--platform",
                "shopify",
                "--domain",
                "a.myshopify.com",
                "--token",
                "t",
                "--region",
                "ZZ",
            ],
            ["--region"],
        ),
        (
            [
                "shops",
                "add",
                "--platform",
                "shopify",
                "--domain",
                "a.myshopify.com",
                "--token",
                "t",
                "--expires-at",
                "soon",
            ],
            ["--expires-at"],
        ),
        (["shops", "add", "--platform", "shopify"], ["--domain"]),
        (["shops", "api-key", "--domain", "nope.myshopify.com"], ["nope.myshopify.com"]),
        (["serve", "--port", "0"], ["--port"]),
        (["nonsense"], ["nonsense"]),
    ],
)
def test_bad_arguments_give_one_line_and_a_non_zero_exit(
    env: dict[str, str], args: list[str], words: list[str]
) -> None:
    assert popsync(env, "db", "upgrade").returncode == 0
    assert_one_line_error(popsync(env, *args), *words)


def test_missing_secret_key_and_unreachable_database_are_one_line(env: dict[str, str]) -> None:
    assert_one_line_error(popsync({**env, "SECRET_KEY": ""}, "shops", "list"), "SECRET_KEY")
    unreachable = {**env, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    assert_one_line_error(popsync(unreachable, "shops", "list"), "database")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_gunicorn_with_the_app(env: dict[str, str]) -> None:
    assert popsync(env, "db", "upgrade").returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [POPSYNC, "serve", "--port", str(port), "--workers", "2", "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not answer in 30 s"
                time.sleep(0.2)
        assert response.json() == {"ok": True}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert "gunicorn" in output.lower() or "Booting worker" in output
    assert server.returncode == 0


def test_worker_until_idle_exits_when_nothing_is_due(migrated_env: dict[str, str]) -> None:
    result = popsync(migrated_env, "worker", "--until-idle")
    assert result.returncode == 0, result.stderr
    assert "nothing is due" in result.stdout
