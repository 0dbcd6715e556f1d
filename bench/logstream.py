"""Benchmark live log streaming: a line printed by the script until show_output shows it.

Run: ``python bench/logstream.py [--lines 200] [--interval-ms 10] [--reps 3]``

The script (stamp.py) prints --lines lines, --interval-ms apart, each holding
``time.time()`` at the moment it is printed (flush=True). Latency of a line = the
wall-clock time the reader received it minus the time in the line (same machine, same
clock).

  - runner: ``run.wait_for_completion(show_output=True)`` with sys.stdout replaced by a
    writer whose write() splits the text into lines and stamps each completed line
    with time.time(). Goal: median latency <= 20 ms.
  - baseline, pipe: the script as a subprocess with stdout=PIPE, lines read with
    readline() as they come.
  - baseline, 1 ms file poll: the script's stdout to a file, read every 1 ms from the
    last offset.

Each case runs --reps times (interleaved); the latencies of all its lines are pooled.
"reader CPU" is the CPU time of the benchmark process while it reads (process_time /
wall time; the script's own CPU is not counted), for information.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

GOAL_MEDIAN_MS = 20.0

STAMP = """\
import sys, time
n, interval = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    print(f"line {i} {time.time():.6f}", flush=True)
    time.sleep(interval)
"""


class StampingWriter:
    """A stand-in for sys.stdout that records (line, time.time()) per completed line."""

    def __init__(self) -> None:
        self.partial = ""
        self.lines: list[tuple[str, float]] = []

    def write(self, text: str) -> int:
        now = time.time()
        parts = (self.partial + text).split("\n")
        self.partial = parts.pop()
        for line in parts:
            self.lines.append((line, now))
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered beyond the unfinished line."""

    def isatty(self) -> bool:
        return False


def latencies(lines: list[tuple[str, float]]) -> list[float]:
    """Seconds from the stamp inside each 'line I T' to when it was received."""
    out = []
    for text, received in lines:
        parts = text.split()
        if len(parts) == 3 and parts[0] == "line":
            out.append(received - float(parts[2]))
    return out


def via_runner(exp, src: Path, n: int, interval: float) -> list[float]:
    from runner import ScriptRunConfig

    run = exp.submit(ScriptRunConfig(str(src), "stamp.py", [str(n), str(interval)]))
    writer = StampingWriter()
    saved = sys.stdout
    sys.stdout = writer  # type: ignore[assignment]
    try:
        details = run.wait_for_completion(show_output=True)
    finally:
        sys.stdout = saved
    if details["status"] != "Completed":
        raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
    lat = latencies(writer.lines)
    if len(lat) != n:
        raise SystemExit(f"FAIL: show_output showed {len(lat)} of the {n} lines")
    return lat


def via_pipe(src: Path, n: int, interval: float) -> list[float]:
    proc = subprocess.Popen(
        [sys.executable, "stamp.py", str(n), str(interval)], cwd=src, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    got: list[tuple[str, float]] = []
    for raw in iter(proc.stdout.readline, b""):
        got.append((raw.decode().rstrip("\n"), time.time()))
    proc.wait()
    return latencies(got)


def via_file_poll(src: Path, tmp: Path, n: int, interval: float) -> list[float]:
    path = tmp / "out.txt"
    with open(path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "stamp.py", str(n), str(interval)], cwd=src, stdout=out
        )
    got: list[tuple[str, float]] = []
    offset = 0
    partial = b""
    while True:
        done = proc.poll() is not None
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        now = time.time()
        offset += len(data)
        chunks = (partial + data).split(b"\n")
        partial = chunks.pop()
        got.extend((c.decode(), now) for c in chunks)
        if done:
            break
        time.sleep(0.001)
    path.unlink()
    return latencies(got)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200, help="lines per run (default 200)")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="ms between lines")
    parser.add_argument("--reps", type=int, default=3, help="runs per case, pooled (default 3)")
    args = parser.parse_args()

    common.print_header(
        "logstream: script print() -> line seen through show_output",
        f"{args.lines} lines {args.interval_ms:g} ms apart, x {args.reps} runs per case "
        "(interleaved), latencies pooled; wall clock (time.time) on both sides",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "60"
    from runner import Experiment, daemon_client

    interval = args.interval_ms / 1000
    cases: dict[str, list[float]] = {"runner": [], "pipe": [], "poll": []}
    cpu = dict.fromkeys(cases, 0.0)  # the reader's CPU seconds (this process only)
    wall = dict.fromkeys(cases, 0.0)
    with common.temp_dir("runner-bench-logstream-") as tmp, common.temp_workspace() as ws:
        src = tmp / "src"
        src.mkdir()
        (src / "stamp.py").write_text(STAMP)
        exp = Experiment(ws, "logstream")
        try:
            via_runner(exp, src, 5, 0.001)  # warm-up: starts the daemon (untimed)
            for _ in range(args.reps):
                for key, fn in (
                    ("runner", lambda: via_runner(exp, src, args.lines, interval)),
                    ("pipe", lambda: via_pipe(src, args.lines, interval)),
                    ("poll", lambda: via_file_poll(src, tmp, args.lines, interval)),
                ):
                    c0, w0 = time.process_time(), time.perf_counter()
                    cases[key] += fn()
                    cpu[key] += time.process_time() - c0
                    wall[key] += time.perf_counter() - w0
        finally:
            daemon_client.stop_daemon(ws.path)

    base = statistics.median(cases["pipe"])
    rows: list[list[object]] = []
    for key, label in (
        ("pipe", "baseline: subprocess stdout=PIPE, readline()"),
        ("poll", "baseline: stdout to a file, polled every 1 ms"),
        ("runner", "run.wait_for_completion(show_output=True)"),
    ):
        lat = cases[key]
        m = statistics.median(lat)
        rows.append(
            [
                label,
                len(lat),
                f"{m * 1000:.2f}",
                f"{pct(lat, 95) * 1000:.2f}",
                f"{max(lat) * 1000:.2f}",
                f"{m / base:.1f}" if base > 0 else "",
                f"{100 * cpu[key] / wall[key]:.0f}%",
                common.verdict(m * 1000 <= GOAL_MEDIAN_MS) if key == "runner" else "",
            ]
        )
    common.print_table(
        [
            "case",
            "lines",
            "median ms",
            "p95 ms",
            "max ms",
            "median vs pipe",
            "reader CPU",
            f"goal median <= {GOAL_MEDIAN_MS:g} ms",
        ],
        rows,
    )
    ok = statistics.median(cases["runner"]) * 1000 <= GOAL_MEDIAN_MS
    print(f"overall: {common.verdict(ok)} (runner median latency <= {GOAL_MEDIAN_MS:g} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
