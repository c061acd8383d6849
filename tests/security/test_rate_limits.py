"""Rate limits hold across processes: two real OS processes, each with its own app and connection pool,
sharing one database, submit as the same client at the same moment and together get exactly the limit.
(Per-process counters would let each process have its own allowance: twice the limit.)

Run on PostgreSQL, the many-process deployment (starting two interpreters is the slow part); several apps
sharing one SQLite file are tested in tests/functional/test_storefront_limits.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app.db import get_database
from app.models import Contact
from tests.conftest import add_shop
from tests.conftest import app_config

ROOT = Path(__file__).resolve().parents[2]
SHOP = "limits.myshopify.com"
PER_PROCESS = 6
LIMIT = 4

PROCESS = """
import json, sys, time
from pathlib import Path
from app import create_app
config = json.loads(sys.argv[1])
go = Path(sys.argv[2])
app = create_app(config)
client = app.test_client()
client.get("/healthz")  # warm up: imports and the connection pool
Path(sys.argv[3]).touch()
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
statuses = []
for n in range({per_process}):
    answer = client.post(
        "/storefront/submissions",
        json={{"shop": "{shop}", "email": f"p{{sys.argv[4]}}-{{n}}@example.com"}},
        environ_base={{"REMOTE_ADDR": "203.0.113.7"}},
    )
    statuses.append((answer.status_code, answer.headers.get("Retry-After")))
print(json.dumps(statuses))
"""


@pytest.mark.slow
@pytest.mark.postgresql
def test_two_processes_share_one_allowance(fresh_database: sa.Engine, tmp_path: Path) -> None:
    url = fresh_database.url.render_as_string(hide_password=False)
    config = app_config(
        url,
        SUBMISSION_RATE_LIMIT=f"{LIMIT}/day",
        SHOP_RATE_LIMIT="0",
        POPSYNC_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    setup = create_app(config)
    add_shop(setup, SHOP)
    get_database(setup).engine.dispose()
    go = tmp_path / "go"
    script = PROCESS.format(per_process=PER_PROCESS, shop=SHOP)
    ready = [tmp_path / f"ready-{index}" for index in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(config), str(go), str(ready[index]), str(index)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), [p.communicate()[1] for p in processes]
            time.sleep(0.02)
        go.touch()
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    answers = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        answers += json.loads(out.strip().splitlines()[-1])
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * LIMIT + [429] * (2 * PER_PROCESS - LIMIT)
    assert all(int(retry) > 0 for status, retry in answers if status == 429)
    with fresh_database.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Contact)) == LIMIT
