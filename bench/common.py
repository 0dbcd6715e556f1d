"""Helpers shared by the run-history benchmarks (metrics, readback, query).

Importing this module puts the repository root on ``sys.path``, so a script run as
``python bench/NAME.py`` from the repo root imports the working tree's ``runner``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_summary() -> list[str]:
    """Lines describing the machine, the interpreter and the date."""
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    return [
        f"machine: {cpu_model()}, {cores} cores ({usable} usable), {platform.system()} "
        f"{platform.release()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        f"date:    {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
    ]


def print_header(title: str, method: str) -> None:
    """The banner every benchmark starts with: what, where, when, how it is timed."""
    print(title)
    print("=" * len(title))
    for line in machine_summary():
        print(line)
    print(f"timing:  {method}")
    print()


def timings(
    reps: int, fn: Callable[..., object], setup: Callable[[], Any] | None = None
) -> list[float]:
    """Wall times (s) of ``reps`` calls of fn; ``setup()`` runs untimed before each and
    its result, if setup is given, is fn's argument."""
    out: list[float] = []
    for _ in range(reps):
        if setup is not None:
            arg = setup()
            t0 = time.perf_counter()
            fn(arg)
        else:
            t0 = time.perf_counter()
            fn()
        out.append(time.perf_counter() - t0)
    return out


def best_of(reps: int, fn: Callable[..., object], setup: Callable[[], Any] | None = None) -> float:
    """The best (lowest) wall time of ``reps`` runs."""
    return min(timings(reps, fn, setup))


def median_of(
    reps: int, fn: Callable[..., object], setup: Callable[[], Any] | None = None
) -> float:
    """The median wall time of ``reps`` runs."""
    return statistics.median(timings(reps, fn, setup))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        return "  ".join(parts).rstrip()

    print(fmt(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(fmt(row))
    print()


def rate(count: float, seconds: float) -> str:
    """``count / seconds`` as a short human number (e.g. '3.41M', '812k', '49.0')."""
    if seconds <= 0:
        return "inf"
    r = count / seconds
    if r >= 1e6:
        return f"{r / 1e6:.2f}M"
    if r >= 1e4:
        return f"{r / 1e3:.0f}k"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k"
    return f"{r:.1f}"


def verdict(ok: bool) -> str:
    """'PASS' or 'FAIL'."""
    return "PASS" if ok else "FAIL"


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def temp_workspace(prefix: str = "runner-bench-") -> Iterator[Any]:
    """A fresh ``Workspace.create(tmpdir)``; its store is closed and the folder removed after."""
    from runner import Workspace

    with temp_dir(prefix) as tmp:
        ws = Workspace.create(tmp / "ws")
        try:
            yield ws
        finally:
            ws._store.close()


def mlflow_available() -> bool:
    """Whether mlflow can be imported (an optional extra, for comparisons only)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


MLFLOW_MISSING = "mlflow not installed: pip install mlflow to compare"


def quiet_mlflow() -> None:
    """Keep mlflow's and alembic's INFO logs and warnings out of the tables."""
    import logging
    import warnings

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal."""
    return f"{seconds * 1000:.1f}"


def timing_row(
    label: str, samples: Sequence[float], vs: str = "1.00", result: str = ""
) -> list[str]:
    """A table row: label, median, min and max in ms, the ratio text and the verdict."""
    return [label, ms(med(samples)), ms(min(samples)), ms(max(samples)), vs, result]


def med(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def interleaved(
    reps: int, a: Callable[[], object], b: Callable[[], object]
) -> tuple[list[float], list[float]]:
    """Wall times of ``reps`` calls each of a and b, in pairs, the order flipped every pair."""
    ta: list[float] = []
    tb: list[float] = []
    for i in range(reps):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return ta, tb


def add_extra_procs_option(parser: Any) -> None:
    """``--extra-procs N``: measure with N idle processes on the machine (see idle_processes)."""
    parser.add_argument(
        "--extra-procs",
        type=int,
        default=0,
        help="run with N extra idle processes on the machine (information: a busy host)",
    )


@contextlib.contextmanager
def idle_processes(n: int) -> Iterator[None]:
    """``n`` extra idle processes (``sleep``) on the machine while the block runs."""
    procs = [subprocess.Popen(["sleep", "3600"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def process_count() -> int:
    """How many processes the machine runs now (0 where /proc is not there)."""
    return sum(1 for e in os.listdir("/proc") if e.isdigit()) if os.path.isdir("/proc") else 0


def print_process_count(extra_procs: int) -> None:
    """The line that says how busy the machine is (``--extra-procs`` included)."""
    print(f"processes on the machine: {process_count()} (incl. --extra-procs {extra_procs})")
    print()


def overall(checks: dict[str, bool]) -> int:
    """Print the verdict of every check and of all of them; the exit code (0: all pass)."""
    ok = all(checks.values())
    parts = "; ".join(f"{what}: {verdict(good)}" for what, good in checks.items())
    print(f"overall: {verdict(ok)} ({parts})")
    return 0 if ok else 1


@contextlib.contextmanager
def bench_workspace(extra_procs: int, name: str) -> Iterator[tuple[Path, Any]]:
    """``extra_procs`` idle processes, a temporary folder and a temporary workspace, for
    the length of a benchmark; says first how busy the machine is."""
    with (
        idle_processes(extra_procs),
        temp_dir(f"runner-bench-{name}-") as tmp,
        temp_workspace() as ws,
    ):
        print_process_count(extra_procs)
        yield tmp, ws


def ssh_argv(args: argparse.Namespace, command: str) -> list[str]:
    """Plain ssh to ``args.user@args.host:args.port`` with ``args.key`` and
    ``args.known_hosts``, a full connection each time (what a user types: the baselines of
    bench/ssh.py and bench/slurm.py)."""
    return [
        "ssh",
        "-i",
        args.key,
        "-p",
        str(args.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={args.known_hosts}",
        f"{args.user}@{args.host}",
        command,
    ]
