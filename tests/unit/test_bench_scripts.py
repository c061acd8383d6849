"""Every benchmark script under bench/ answers ``--help`` (imports resolve, arguments parse) without
running anything. Cheap: the scripts start side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nodb, pytest.mark.slow]  # eleven Python processes importing the app: ~5-20 s

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(path for path in BENCH.glob("*.py") if 'if __name__ == "__main__":' in path.read_text())


def test_the_benchmarks_are_all_found() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"run_all.py", "submissions.py", "pixel.py", "scaleout.py", "copy_reference.py"} <= names


def test_every_bench_script_answers_help() -> None:
    started = {
        path.name: subprocess.Popen(
            [sys.executable, str(path), "--help"],
            cwd=BENCH.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in SCRIPTS
    }
    failures = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        if process.returncode != 0 or "usage:" not in out:
            failures[name] = (process.returncode, err.strip().splitlines()[-1:] or out[:200])
    assert failures == {}
