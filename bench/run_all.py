"""Every benchmark in one run, and one table: each figure beside the reference measured in the same run,
their ratio, the goal and whether it is met (`make bench`).

    .venv/bin/python bench/run_all.py [--quick] [--only submissions,pixel,…] [--skip popup,…]
                                      [--database postgresql+psycopg://root@127.0.0.1:5432/postgres]
                                      [--output bench/results/latest.md]

Runs each benchmark as its own process (one after the other: they would measure each other otherwise),
keeps its output in bench/results/<name>.log, and reads the ``RESULT {json}`` line it prints last.
Prints the table and writes it, with the machine and the load average, as markdown to ``--output``
(git-ignored; docs/performance.md quotes it).

``--quick``: small sizes and a few seconds a phase, a smoke run (minutes, not figures to quote).
The default (full) sizes: 15-second HTTP phases, 200,000 import rows, 1,000,000 contacts for search (built
once into the database ``popsync_bench_admin`` and kept), a 120-second outbox drain, 10 page loads.
bench/scaleout.py (docs/scaling.md) and bench/soak.py (ten minutes) run on their own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from common import cores
from common import parse_result

BENCH = Path(__file__).resolve().parent
DEFAULT_SERVER = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
Results = dict[str, dict[str, Any]]


# --- the benchmarks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    full: Sequence[str]
    quick: Sequence[str]
    timeout: float  # seconds, full run
    uses_database: bool = True


BENCHMARKS = (
    Benchmark("submissions", "submissions.py", [], ["--quick"], 600),
    Benchmark("pixel", "pixel.py", [], ["--quick"], 600),
    Benchmark("import", "import.py", ["--rows", "200000"], ["--rows", "20000"], 1800),
    Benchmark("copy_reference", "copy_reference.py", ["--rows", "200000"], ["--rows", "20000"], 600),
    Benchmark("admin", "admin.py", ["--only", "postgresql"], ["--quick"], 3600),
    Benchmark("outbox", "outbox.py", [], ["--quick"], 900),
    Benchmark("popup", "popup_load.py", [], ["--quick"], 600, uses_database=False),
)


def run_benchmark(benchmark: Benchmark, *, quick: bool, database: str, logs: Path) -> dict[str, Any]:
    """Run one benchmark; its figures, or ``{"error": …}`` when it failed or printed none."""
    arguments = list(benchmark.quick if quick else benchmark.full)
    if benchmark.uses_database:
        arguments += ["--database", database]
    command = [sys.executable, str(BENCH / benchmark.script), *arguments]
    log = logs / f"{benchmark.name}.log"
    print(f"== {benchmark.name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        finished = subprocess.run(
            command,
            cwd=BENCH.parent,
            capture_output=True,
            text=True,
            timeout=benchmark.timeout / (3 if quick else 1),
        )
        output, code = finished.stdout + finished.stderr, finished.returncode
    except subprocess.TimeoutExpired as expired:
        output = (
            (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
        )
        output, code = output + "\n(timed out)", -1
    log.write_text(output)
    elapsed = time.monotonic() - started
    figures = parse_result(output)
    if code != 0 or figures is None:
        tail = " | ".join(output.strip().splitlines()[-3:])[:300]
        print(f"   failed (exit {code}) after {elapsed:.0f} s; see {log}: {tail}", flush=True)
        return {"error": f"exit {code}", **(figures or {})}
    print(f"   done in {elapsed:.0f} s", flush=True)
    return figures


# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """One condition on a row: on its ``value`` or on its ``ratio`` (value / reference)."""

    on: str  # "value" or "ratio"
    op: str  # ">=", "<=", "<"
    threshold: float
    text: str

    def holds(self, value: float | None, ratio: float | None) -> bool | None:
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return None
        if self.op == ">=":
            return subject >= self.threshold
        if self.op == "<=":
            return subject <= self.threshold
        return subject < self.threshold


@dataclass(frozen=True)
class Figure:
    """A row of the table: where its value and its reference come from, how to show them, its goals."""

    label: str
    bench: str
    key: str
    show: Callable[[float], str]
    reference: tuple[str, str] | None = None  # (bench, key) measured in the same run
    reference_label: str = ""
    goals: tuple[Goal, ...] = field(default_factory=tuple)
    show_reference: Callable[[float], str] | None = None  # default: as the value
    # The bench's own ratio, when it measures one (the HTTP benchmarks: the median of the rounds' ratios,
    # which a slow round of one side cannot tilt); else value / reference.
    ratio_key: str | None = None


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    reference: str
    ratio: str
    goal: str
    met: str  # "yes", "NO", "—" (no goal), "not run", "failed"


def _per_s(value: float) -> str:
    return f"{value:,.0f}/s"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def _points(value: float) -> str:
    return f"{value:,.0f} points"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _bytes(value: float) -> str:
    return f"{value:,.0f} B"


def _shift(value: float) -> str:
    return f"{value:.4f}"


FIGURES = (
    Figure("submissions over HTTP (gunicorn, PostgreSQL, synchronous commit)", "submissions",
           "submissions_per_s", _per_s, ("submissions", "bare_per_s"), "bare Flask route",
           (Goal("ratio", ">=", 0.15, "≥ 15% of bare"),), ratio_key="ratio"),
    Figure("submissions p99, open loop at half the peak", "submissions", "p99_ms", _ms,
           ("submissions", "p50_ms"), "p50", (Goal("value", "<", 50, "< 50 ms"),)),
    Figure("submissions answered 2xx but not committed", "submissions", "missing", _count,
           ("submissions", "answered_2xx"), "answered 2xx", (Goal("value", "<=", 0, "0"),), _count),
    Figure("open pixel", "pixel", "pixel_per_s", _per_s, ("pixel", "bare_per_s"), "bare GIF route",
           (Goal("ratio", ">=", 0.60, "≥ 60% of bare"),), ratio_key="ratio"),
    Figure("CSV import through the rules (PostgreSQL)", "import", "rows_per_s", _per_s,
           ("copy_reference", "rows_per_s"), "COPY of the same rows",
           (Goal("value", ">=", 20_000, "≥ 20,000/s"), Goal("ratio", ">=", 0.25, "≥ 25% of COPY"))),
    Figure("CSV re-import, every row an update (PostgreSQL)", "import", "reimport_rows_per_s", _per_s,
           ("copy_reference", "rows_per_s"), "COPY of the same rows"),
    Figure("search p95 over the admin query mix (PostgreSQL)", "admin", "p95_ms", _ms,
           ("admin", "raw_p95_ms"), "same SQL, raw", (Goal("value", "<", 50, "< 50 ms"),)),
    Figure("the same mix through GET /api/v1/contacts, p95", "admin", "api_p95_ms", _ms,
           ("admin", "p95_ms"), "the query code alone", (Goal("value", "<", 50, "< 50 ms"),)),
    Figure("outbox drain: platform points spent", "outbox", "points_spent", _points,
           ("outbox", "points_allowed"), "allowed (bucket + restored)",
           (Goal("ratio", ">=", 0.90, "≥ 90% of allowed"),)),
    Figure("outbox drain: calls throttled", "outbox", "throttled", _count, ("outbox", "calls"), "calls",
           (Goal("ratio", "<=", 0.01, "≤ 1% of calls"),)),
    Figure("popup.js gzipped", "popup", "gzip_bytes", _bytes, ("popup", "size_bytes"), "unzipped",
           (Goal("value", "<=", 10_240, "≤ 10 KB"),)),
    Figure("popup.js longest main-thread slice at load: work (thread time)", "popup", "load_longest_ms", _ms,
           goals=(Goal("value", "<", 10, "< 10 ms"),)),
    Figure("popup.js longest main-thread slice at load: wall time", "popup", "load_longest_wall_ms", _ms),
    Figure("page main-thread task time until the popup opens", "popup", "task_ms", _ms,
           ("popup", "without_task_ms"), "page without popup.js"),
    Figure("layout shift before the popup opens", "popup", "layout_shift", _shift,
           ("popup", "without_layout_shift"), "page without popup.js", (Goal("value", "<=", 0, "0"),)),
)  # fmt: skip


def _number(results: Results, bench: str, key: str) -> float | None:
    value = results.get(bench, {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def build_rows(results: Results, figures: Sequence[Figure] = FIGURES) -> list[Row]:
    """The table's rows from the benchmarks' figures (``results[bench][key]``); pure, so it is tested."""
    rows = []
    for figure in figures:
        goal_text = " and ".join(goal.text for goal in figure.goals) or "—"
        outcome = results.get(figure.bench)
        value = _number(results, figure.bench, figure.key)
        if outcome is None or value is None:
            state = "failed" if outcome is not None and "error" in outcome else "not run"
            rows.append(Row(figure.label, "—", figure.reference_label or "—", "—", goal_text, state))
            continue
        reference = _number(results, *figure.reference) if figure.reference else None
        measured_ratio = _number(results, figure.bench, figure.ratio_key) if figure.ratio_key else None
        ratio = measured_ratio if measured_ratio is not None else value / reference if reference else None
        if figure.reference is None:
            reference_text = "—"
        elif reference is None:
            reference_text = f"{figure.reference_label}: not measured"
        else:
            reference_text = f"{figure.reference_label}: {(figure.show_reference or figure.show)(reference)}"
        verdicts = [goal.holds(value, ratio) for goal in figure.goals]
        if not verdicts:
            met = "—"
        elif None in verdicts:
            met = "not measured"
        else:
            met = "yes" if all(verdicts) else "NO"
        rows.append(
            Row(
                figure.label,
                figure.show(value),
                reference_text,
                f"{100 * ratio:.3g}%" if ratio is not None else "—",
                goal_text,
                met,
            )
        )
    return rows


HEADER = ("figure", "value", "reference (same run)", "ratio", "goal", "met?")


def text_table(rows: Sequence[Row]) -> str:
    cells = [HEADER, *[(r.figure, r.value, r.reference, r.ratio, r.goal, r.met) for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        met = f"**{row.met}**" if row.met in ("yes", "NO") else row.met
        lines.append(f"| {row.figure} | {row.value} | {row.reference} | {row.ratio} | {row.goal} | {met} |")
    return "\n".join(lines)


def machine() -> str:
    """The machine in one line: CPU model and cores, memory, Python, load average."""
    model = ""
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else ""
    except OSError:
        pass
    memory = ""
    try:
        found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        memory = f", {int(found.group(1)) / 1024 / 1024:.0f} GiB" if found else ""
    except OSError:
        pass
    return f"{cores()} cores ({model or platform.processor()}){memory}, Python {platform.python_version()}"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds each (smoke run)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names to run")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="the PostgreSQL server URL")
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "latest.md")
    args = parser.parse_args(argv)
    names = {benchmark.name for benchmark in BENCHMARKS}
    only = {name for name in args.only.split(",") if name}
    skip = {name for name in args.skip.split(",") if name}
    if unknown := (only | skip) - names:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")

    logs = args.output.parent
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    load_before = load_average()
    results: Results = {}
    for benchmark in BENCHMARKS:
        if (only and benchmark.name not in only) or benchmark.name in skip:
            continue
        results[benchmark.name] = run_benchmark(
            benchmark, quick=args.quick, database=args.database, logs=logs
        )
    load_after = load_average()
    rows = build_rows(results)
    mode = "quick (smoke run: small sizes, short phases)" if args.quick else "full"
    print()
    print(text_table(rows))
    args.output.write_text(
        f"Run {started:%Y-%m-%d %H:%M} UTC, {mode}; {machine()}; load average (1/5/15 min) "
        f"{load_before} before, {load_after} after. Logs beside this file.\n\n"
        f"{markdown_table(rows)}\n\n"
        f"Figures as measured: ```{json.dumps(results, sort_keys=True)}```\n"
    )
    print(f"\n(written to {args.output})")
    return 1 if any(row.met == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
