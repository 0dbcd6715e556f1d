"""Benchmark the daemon's queue: 1,000 trivial runs through it vs the same 1,000 processes.

Run: ``python bench/daemon_queue.py [--runs 1000] [--concurrency 4] [--rounds 1]``

runner: the workspace daemon is up (``max_concurrent`` = --concurrency); the bench
submits --runs runs of a trivial script (``exp.submit(ScriptRunConfig(src, 'once.py'))``
one after the other, as a sweep would) and waits until every one has ended. The clock
runs from the first submit to the last run's end, so it includes submitting, queueing,
preparing, launching, finalizing and recording each run.

baseline: the same --runs processes (``python once.py`` in the same folder, the same
interpreter), spawned directly with the same concurrency (a new one as soon as one
exits), from the first spawn to the last exit.

once.py creates ``<markers>/<run id or number>`` with O_EXCL, so a run executed twice
fails, and a lost one leaves no file: "none lost" means every run Completed and left
exactly one file. Goal: runner wall time <= 1.5x the baseline's, none lost. With
--rounds > 1 the two alternate (baseline first in odd rounds, runner first in even
ones) and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import common

GOAL = 1.5
ONCE = """\
import os, sys
name = os.environ.get("RUNNER_RUN_ID") or sys.argv[2]
os.close(os.open(os.path.join(sys.argv[1], name), os.O_CREAT | os.O_EXCL))
"""


def baseline(src: Path, markers: Path, runs: int, concurrency: int) -> float:
    """Spawn ``runs`` processes, ``concurrency`` at a time; the wall time in seconds."""
    py = sys.executable
    devnull = subprocess.DEVNULL
    t0 = time.perf_counter()
    live: dict[int, subprocess.Popen[bytes]] = {}
    started = 0
    failed = 0
    while started < runs or live:
        while started < runs and len(live) < concurrency:
            proc = subprocess.Popen(
                [py, "once.py", str(markers), str(started)], cwd=src, stdout=devnull
            )
            live[proc.pid] = proc
            started += 1
        pid, status = os.wait()
        done = live.pop(pid, None)
        if done is not None:  # not some other child of this process
            done.returncode = os.waitstatus_to_exitcode(status)
            failed += done.returncode != 0
    elapsed = time.perf_counter() - t0
    assert failed == 0, f"{failed} baseline processes failed"
    return elapsed


def through_runner(
    ws: object, src: Path, markers: Path, runs: int, name: str
) -> tuple[float, float, Counter[str], int]:
    """Submit ``runs`` runs and wait for all; (wall s, submit s, statuses, marker files)."""
    from runner import Experiment, ScriptRunConfig

    exp = Experiment(ws, name)  # type: ignore[arg-type]
    store = exp.workspace._store
    cfg = ScriptRunConfig(str(src), "once.py", arguments=[str(markers), "-"])
    t0 = time.perf_counter()
    ids = [exp.submit(cfg).id for _ in range(runs)]
    submitted = time.perf_counter() - t0
    query = (
        "SELECT status, COUNT(*) FROM runs WHERE experiment_id = ? AND status IN "
        "('Completed', 'Failed', 'Canceled') GROUP BY status"
    )
    while True:
        ended = Counter({s: n for s, n in store.query(query, (exp._id,))})
        if sum(ended.values()) == len(ids):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    files = sum(1 for _ in markers.iterdir())
    return elapsed, submitted, ended, files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per case (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="at once (default 4)")
    parser.add_argument("--rounds", type=int, default=1, help="A/B rounds (default 1)")
    args = parser.parse_args()

    common.print_header(
        f"queue: {args.runs} trivial runs through the daemon vs {args.runs} processes",
        f"wall clock of the whole batch, concurrency {args.concurrency}, "
        f"{args.rounds} round(s), baseline and runner alternating",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "120"
    from runner import daemon_client

    with common.temp_dir("runner-bench-queue-") as tmp, common.temp_workspace() as ws:
        src = tmp / "src"
        src.mkdir()
        (src / "once.py").write_text(ONCE)
        settings = daemon_client.daemon_dir(ws.path) / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"max_concurrent": args.concurrency}))
        t0 = time.perf_counter()
        daemon_client.ensure_daemon(ws.path)
        cold_start = time.perf_counter() - t0
        status = daemon_client.request(ws.path, {"op": "status"})
        print(
            f"daemon: started in {cold_start * 1000:.0f} ms; GPUs {status['gpus']}, "
            f"max concurrent {status['maxConcurrent']}, system metrics every "
            f"{status['systemMetricsSeconds']} s"
        )
        print()
        base_s: list[float] = []
        runner_s: list[float] = []
        submit_s: list[float] = []
        lost = 0
        duplicated_or_failed = 0
        try:
            for r in range(args.rounds):
                for case in ("baseline", "runner") if r % 2 == 0 else ("runner", "baseline"):
                    markers = tmp / f"markers-{case}-{r}"
                    markers.mkdir()
                    if case == "baseline":
                        base_s.append(baseline(src, markers, args.runs, args.concurrency))
                        continue
                    wall, sub, ended, files = through_runner(
                        ws, src, markers, args.runs, f"queue-{r}"
                    )
                    runner_s.append(wall)
                    submit_s.append(sub)
                    lost += args.runs - files
                    duplicated_or_failed += args.runs - ended.get("Completed", 0)
        finally:
            daemon_client.stop_daemon(ws.path)

    base = statistics.median(base_s)
    ours = statistics.median(runner_s)
    ratio = ours / base
    none_lost = lost == 0 and duplicated_or_failed == 0
    ok = ratio <= GOAL and none_lost
    rows = [
        [
            f"baseline: {args.runs} x python once.py, {args.concurrency} at a time",
            f"{base:.2f}",
            f"{min(base_s):.2f}",
            f"{max(base_s):.2f}",
            f"{base / args.runs * 1000:.1f}",
            "1.00",
            "",
        ],
        [
            f"runner: {args.runs} x exp.submit(), daemon max_concurrent {args.concurrency}",
            f"{ours:.2f}",
            f"{min(runner_s):.2f}",
            f"{max(runner_s):.2f}",
            f"{ours / args.runs * 1000:.1f}",
            f"{ratio:.2f}",
            f"<= {GOAL}x {common.verdict(ratio <= GOAL)}",
        ],
        [
            "runner: of which submitting all (information)",
            f"{statistics.median(submit_s):.2f}",
            f"{min(submit_s):.2f}",
            f"{max(submit_s):.2f}",
            f"{statistics.median(submit_s) / args.runs * 1000:.1f}",
            "",
            "(info)",
        ],
    ]
    common.print_table(
        ["case", "median s", "min s", "max s", "ms per run", "vs baseline", "goal"], rows
    )
    print(
        f"runs lost: {lost}, not Completed (failed or duplicated): {duplicated_or_failed} "
        f"-> {common.verdict(none_lost)}"
    )
    print()
    print(
        f"overall: {common.verdict(ok)} (runner <= {GOAL}x the direct processes: "
        f"{common.verdict(ratio <= GOAL)}; none lost: {common.verdict(none_lost)})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
