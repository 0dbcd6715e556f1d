"""Benchmark run.cancel(): time until a submitted run's whole process tree is gone.

Run: ``python bench/cancel.py [--reps 10] [--grace 1]``

The submitted script (tree.py) starts 4 children, one of them in its own session
(``start_new_session=True``); the script and every child write their pid to a file in
a folder passed as an argument, then sleep. Once all 5 pids are known (the files are
polled), the clock starts, ``run.cancel()`` is called, and the clock stops when every
one of the 5 processes is gone (psutil: NoSuchProcess, or a zombie), polled every
0.2 ms from the benchmark.

Two kinds of tree:
  - one that obeys SIGTERM. Goal: median <= 50 ms. Baseline, measured in the same run:
    the same tree spawned directly by the benchmark (its own session, as runner's
    local target does) and killed with bare psutil (root.children(recursive=True),
    SIGTERM to all, polled until gone).
  - one that ignores SIGTERM (signal.SIG_IGN in every process), submitted with
    RunConfiguration.cancel_grace_seconds = --grace. Goal: median <= grace + 50 ms.
    Baseline: the bare psutil kill with the same grace, then SIGKILL to what is left.

Also shown, for information: how long run.cancel() itself takes to return, and when
wait_for_completion() returns (the run recorded as Canceled).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common
import psutil

GOAL_MS = 50.0

TREE = """\
import os, signal, subprocess, sys, time
pid_dir, mode = sys.argv[1], sys.argv[2]
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
CHILD = (
    "import os, signal, sys, time\\n"
    "if sys.argv[2] == 'ignore':\\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "p = os.path.join(sys.argv[1], 'child%s.pid' % sys.argv[3])\\n"
    "open(p + '.tmp', 'w').write(str(os.getpid()))\\n"
    "os.replace(p + '.tmp', p)\\n"
    "time.sleep(3600)\\n"
)
children = [
    subprocess.Popen(
        [sys.executable, "-c", CHILD, pid_dir, mode, str(i)], start_new_session=(i == 3)
    )
    for i in range(4)
]
p = os.path.join(pid_dir, "main.pid")
open(p + ".tmp", "w").write(str(os.getpid()))
os.replace(p + ".tmp", p)
time.sleep(3600)
"""
N_PIDS = 5


def wait_for_pids(pid_dir: Path, timeout_s: float = 30.0) -> list[psutil.Process]:
    """The tree's processes, once all of them have written their pid file."""
    deadline = time.monotonic() + timeout_s
    while True:
        files = [f for f in pid_dir.glob("*.pid")]
        if len(files) == N_PIDS:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: only {len(files)} of {N_PIDS} pid files after {timeout_s} s")
        time.sleep(0.005)
    return [psutil.Process(int(f.read_text())) for f in files]


def gone(proc: psutil.Process) -> bool:
    """Whether the process has exited (a zombie counts as gone)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def time_until_gone(
    procs: list[psutil.Process], kill: Callable[[], object]
) -> tuple[float, float, float]:
    """(seconds until every proc is gone, seconds kill() took, perf_counter at kill's start)."""
    left = list(procs)
    t0 = time.perf_counter()
    kill()
    t_call = time.perf_counter() - t0
    while True:
        left = [p for p in left if not gone(p)]
        if not left:
            return time.perf_counter() - t0, t_call, t0
        if time.perf_counter() - t0 > 60:
            raise SystemExit(f"FAIL: pids {[p.pid for p in left]} still alive after 60 s")
        time.sleep(0.0002)


def bare_kill(root: psutil.Process, grace_s: float) -> None:
    """The baseline: SIGTERM the tree (a psutil snapshot), SIGKILL what is left after grace_s."""
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    deadline = time.perf_counter() + grace_s
    while True:
        left = [p for p in procs if not gone(p)]
        if not left:
            return
        if time.perf_counter() >= deadline:
            break
        time.sleep(0.0002)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="cancels per case (default 10)")
    parser.add_argument("--grace", type=float, default=1.0, help="cancel_grace_seconds")
    common.add_extra_procs_option(parser)
    args = parser.parse_args()

    common.print_header(
        "cancel: run.cancel() until the run's whole process tree is gone",
        f"median of {args.reps} per case; from the call until all {N_PIDS} pids are gone "
        "(psutil, polled every 0.2 ms)",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "60"
    from runner import Experiment, RunConfiguration, ScriptRunConfig, daemon_client

    results: dict[str, dict[str, list[float]]] = {}
    with common.bench_workspace(args.extra_procs, "cancel") as (tmp, ws):
        src = tmp / "src"
        src.mkdir()
        (src / "tree.py").write_text(TREE)
        exp = Experiment(ws, "cancel")
        try:
            # Warm-up: starts the daemon and loads what a cancel needs (untimed).
            warm = exp.submit(ScriptRunConfig(str(src), "tree.py", ["/nonexistent", "x"]))
            warm.wait_for_completion(raise_on_error=False)
            for mode in ("term", "ignore"):
                grace = args.grace if mode == "ignore" else 10.0
                cases = results.setdefault(mode, {"runner": [], "call": [], "done": [], "base": []})
                for rep in range(args.reps + 1):  # the first of each is untimed
                    pid_dir = tmp / f"pids-{mode}-{rep}"
                    pid_dir.mkdir()
                    rc = RunConfiguration()
                    rc.cancel_grace_seconds = grace
                    run = exp.submit(
                        ScriptRunConfig(str(src), "tree.py", [str(pid_dir), mode], run_config=rc)
                    )
                    procs = wait_for_pids(pid_dir)
                    t_gone, t_call, t0 = time_until_gone(procs, run.cancel)
                    details = run.wait_for_completion(raise_on_error=False)
                    t_done = time.perf_counter() - t0
                    if details["status"] != "Canceled":
                        raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
                    # Baseline: the same tree, spawned and killed directly.
                    base_dir = tmp / f"base-{mode}-{rep}"
                    base_dir.mkdir()
                    popen = subprocess.Popen(
                        [sys.executable, str(src / "tree.py"), str(base_dir), mode],
                        start_new_session=True,
                    )
                    base_procs = wait_for_pids(base_dir)
                    root = psutil.Process(popen.pid)
                    t_base, _, _ = time_until_gone(
                        base_procs, lambda r=root, g=grace: bare_kill(r, g)
                    )
                    popen.wait()
                    if rep == 0:
                        continue
                    cases["runner"].append(t_gone)
                    cases["call"].append(t_call)
                    cases["done"].append(t_done)
                    cases["base"].append(t_base)
        finally:
            daemon_client.stop_daemon(ws.path)

    ok = True
    rows: list[list[object]] = []
    for mode, label in (
        ("term", "obeys SIGTERM"),
        ("ignore", f"ignores SIGTERM, grace {args.grace:g} s"),
    ):
        c = results[mode]
        base = statistics.median(c["base"])
        run_t = statistics.median(c["runner"])
        goal_s = (0 if mode == "term" else args.grace) + GOAL_MS / 1000
        case_ok = run_t <= goal_s
        ok &= case_ok
        rows.append(common.timing_row(f"{label}: baseline, bare psutil tree kill", c["base"]))
        rows.append(
            common.timing_row(
                f"{label}: run.cancel() -> all pids gone",
                c["runner"],
                f"{run_t / base:.2f}",
                f"<= {goal_s * 1000:.0f} ms {common.verdict(case_ok)}",
            )
        )
        for key, what in (("call", "run.cancel() returns"), ("done", "run recorded Canceled")):
            rows.append(common.timing_row(f"{label}: {what} (information)", c[key], "", "(info)"))
    common.print_table(["case", "median ms", "min ms", "max ms", "vs baseline", "goal"], rows)
    print(
        f"overall: {common.verdict(ok)} (obeying tree <= {GOAL_MS:.0f} ms; ignoring tree <= grace + {GOAL_MS:.0f} ms)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
