"""Benchmark the overhead of a script run: exp.submit(...).wait_for_completion() vs bare python.

Run: ``python bench/submit.py [--reps 20] [--proc-reps 10] [--warmup 5] [--no-git]``

(a) in-process, runner warm (daemon up, caches hot after --warmup untimed submits):
    ``exp.submit(ScriptRunConfig(src, 'hello.py')).wait_for_completion()`` vs
    ``subprocess.run([sys.executable, 'hello.py'], cwd=src)``, hello.py being
    ``print("hello")`` (its stdout to /dev/null in the baseline; the run's goes to its
    driver log). Goal: median ratio <= 1.5 (median of --reps each, A/B interleaved,
    the order flipped every pair to cancel drift).
(b) whole process, the daemon already running: ``python submit_hello.py`` (imports
    runner, opens the workspace, submits, waits) vs ``python hello.py``. Goal: median
    ratio <= 5 (median of --proc-reps each, interleaved the same way). The child
    processes run without PYTHONDONTWRITEBYTECODE, as a user's Python does, so that
    runner's modules load from their bytecode caches (one untimed run writes them).

Also shown, for information: the cold first submit (it starts the workspace daemon),
the phases of the warm runs (wall clock around the calls plus the store's created /
start / end times), the phases of (b) (the same script with time stamps), and (a) with
the source folder inside a git repository (submit reads the azureml.git.* properties).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common

GOAL_IN_PROCESS = 1.5
GOAL_PROCESS = 5.0
HELLO = 'print("hello")\n'

SUBMIT_HELLO = """\
from runner import Workspace, Experiment, ScriptRunConfig
ws = Workspace({ws!r})
Experiment(ws, 'b').submit(ScriptRunConfig({src!r}, 'hello.py')).wait_for_completion()
"""

# The same, with wall-clock stamps between the steps (argv[1]: when the parent spawned it).
SUBMIT_HELLO_STAMPED = """\
import time
t0 = time.time()
from runner import Workspace, Experiment, ScriptRunConfig
t1 = time.time()
ws = Workspace({ws!r})
exp = Experiment(ws, 'b')
t2 = time.time()
run = exp.submit(ScriptRunConfig({src!r}, 'hello.py'))
t3 = time.time()
run.wait_for_completion()
t4 = time.time()
import json, sys
print(json.dumps([float(sys.argv[1]), t0, t1, t2, t3, t4, run.id]))
"""


def make_git_repo(folder: Path) -> bool:
    """Make ``folder`` a git repository with one commit; False if git is unavailable."""
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b")
    env["GIT_COMMITTER_EMAIL"] = "b@b"
    try:
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
            subprocess.run(["git", "-C", str(folder), *cmd], env=env, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


class InProcess:
    """Runs hello.py through exp.submit and keeps wall-clock stamps of each run."""

    def __init__(self, exp, src: Path) -> None:
        self.exp = exp
        self.src = str(src)
        self.stamps: list[tuple[float, float, float, str]] = []  # call, submit back, end, id

    def __call__(self) -> None:
        from runner import ScriptRunConfig

        t0 = time.time()
        run = self.exp.submit(ScriptRunConfig(self.src, "hello.py"))
        t1 = time.time()
        details = run.wait_for_completion()
        t2 = time.time()
        if details["status"] != "Completed":
            raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
        self.stamps.append((t0, t1, t2, run.id))

    def phases(self, ws) -> list[list[str]]:
        """Median phases of the runs so far, as table rows.

        The script's end is the modification time of the exit-code file the local
        target's shim writes (WS/runs/ID/exit_code; file times have the kernel's clock
        tick granularity, a few ms at worst).
        """
        cols: list[list[float]] = [[], [], [], [], [], []]
        for t0, t1, t2, run_id in self.stamps:
            row = ws._store.get_run(run_id)
            if row is None or row.start_utc is None or row.end_utc is None:
                continue
            try:
                exited = (ws.path / "runs" / run_id / "exit_code").stat().st_mtime
            except OSError:
                continue
            parts = (
                row.created_utc - t0,
                t1 - row.created_utc,
                row.start_utc - t1,
                exited - row.start_utc,
                row.end_utc - exited,
                t2 - row.end_utc,
            )
            for col, v in zip(cols, parts):
                col.append(v)
        labels = (
            "submit() call -> run row created (checks, git, snapshot)",
            "run row created -> submit() returns (properties, status, notify)",
            "submit() returns -> Running (daemon: prepare, materialize, launch)",
            "Running -> script exited (shim + python hello.py)",
            "script exited -> ended (daemon: leftovers, store outputs and logs)",
            "ended -> wait_for_completion() returns",
        )
        return [[label, common.ms(common.med(col))] for label, col in zip(labels, cols)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="in-process pairs (default 20)")
    parser.add_argument("--proc-reps", type=int, default=10, help="whole-process pairs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm submits first")
    parser.add_argument("--no-git", action="store_true", help="skip the git-repo source case")
    common.add_extra_procs_option(parser)
    args = parser.parse_args()

    common.print_header(
        "submit: a trivial script run vs bare python",
        f"median of {args.reps} (in-process) / {args.proc_reps} (whole process), "
        "A/B interleaved with the order flipped every pair; wall clock",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "60"
    from runner import Experiment, daemon_client

    py = sys.executable
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(common.ROOT), *[p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    child_env.pop("RUNNER_DAEMON_IDLE_S", None)
    child_env.pop("PYTHONDONTWRITEBYTECODE", None)

    def proc(*argv: str, cwd: Path) -> Callable[[], None]:
        def fn() -> None:
            subprocess.run(
                [py, *argv], cwd=cwd, env=child_env, stdout=subprocess.DEVNULL, check=True
            )

        return fn

    with common.bench_workspace(args.extra_procs, "submit") as (tmp, ws):
        src = tmp / "src"
        src.mkdir()
        (src / "hello.py").write_text(HELLO)
        fmt = {"ws": str(ws.path), "src": str(src)}
        (tmp / "submit_hello.py").write_text(SUBMIT_HELLO.format(**fmt))
        (tmp / "stamped.py").write_text(SUBMIT_HELLO_STAMPED.format(**fmt))
        exp = Experiment(ws, "b")
        runner_run = InProcess(exp, src)

        def bare_run() -> None:
            subprocess.run([py, "hello.py"], cwd=src, stdout=subprocess.DEVNULL, check=True)

        try:
            # Cold: the first submit starts the daemon (informational).
            runner_run()
            c0, c1, c2, _ = runner_run.stamps[0]
            cold, cold_submit = c2 - c0, c1 - c0
            for _ in range(args.warmup):
                runner_run()
                bare_run()
            runner_run.stamps.clear()

            # (a) in-process, warm.
            ta, tb = common.interleaved(args.reps, runner_run, bare_run)
            phase_rows = runner_run.phases(ws)

            # (b) whole process, the daemon running.
            submit_proc = proc(str(tmp / "submit_hello.py"), cwd=tmp)
            hello_proc = proc("hello.py", cwd=src)
            submit_proc()  # untimed: writes the bytecode caches
            pa, pb = common.interleaved(args.proc_reps, submit_proc, hello_proc)

            # (b)'s phases, for information: the stamped variant.
            stamped: list[list[float]] = []
            for _ in range(args.proc_reps):
                t_spawn = time.time()
                out = subprocess.run(
                    [py, str(tmp / "stamped.py"), repr(t_spawn)],
                    cwd=tmp,
                    env=child_env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                t_exit = time.time()
                s = json.loads(out)
                stamped.append([s[1] - s[0], s[2] - s[1], s[3] - s[2], s[4] - s[3], s[5] - s[4]])
                stamped[-1].append(t_exit - s[5])
            t_pass = common.med(common.timings(args.proc_reps, proc("-c", "pass", cwd=tmp)))

            # (a) again with the source in a git repository, for information.
            git_rows: list[list[object]] = []
            if not args.no_git:
                gsrc = tmp / "gitsrc"
                gsrc.mkdir()
                (gsrc / "hello.py").write_text(HELLO)
                if make_git_repo(gsrc):
                    git_run = InProcess(exp, gsrc)
                    git_run()
                    git_run.stamps.clear()
                    tg, tgb = common.interleaved(max(args.reps // 2, 1), git_run, bare_run)
                    sub = [t1 - t0 for t0, t1, _, _ in git_run.stamps]
                    git_rows.append(
                        [
                            "same, source folder in a git repo (information)",
                            common.ms(common.med(tg)),
                            common.ms(min(tg)),
                            common.ms(max(tg)),
                            f"{common.med(tg) / common.med(tgb):.2f}",
                            "(info)",
                        ]
                    )
                    git_note = (
                        f"  (git repo: submit() returns after {common.ms(common.med(sub))} ms, vs "
                        f"{common.ms(common.med([t1 - t0 for t0, t1, _, _ in runner_run.stamps]))} ms "
                        "outside one)"
                    )
                else:
                    git_note = "  (git not available: git-repo case skipped)"
            else:
                git_note = ""
        finally:
            daemon_client.stop_daemon(ws.path)

    ma, mb = common.med(ta), common.med(tb)
    pma, pmb = common.med(pa), common.med(pb)
    ra, rb = ma / mb, pma / pmb
    ok_a, ok_b = ra <= GOAL_IN_PROCESS, rb <= GOAL_PROCESS

    print("(a) in one process, runner warm")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_IN_PROCESS}x"],
        [
            common.timing_row("baseline: subprocess.run([python, 'hello.py'])", tb),
            common.timing_row(
                "exp.submit(...).wait_for_completion()", ta, f"{ra:.2f}", common.verdict(ok_a)
            ),
            *git_rows,
        ],
    )
    if git_note:
        print(git_note)
        print()
    print("phases of the warm runs of (a) (medians; wall clock and the store's timestamps):")
    common.print_table(["phase", "ms"], phase_rows)

    print("(b) whole process, daemon already running")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_PROCESS:g}x"],
        [
            common.timing_row("baseline: python hello.py", pb),
            common.timing_row("python submit_hello.py", pa, f"{rb:.2f}", common.verdict(ok_b)),
            [
                "python -c pass (information)",
                common.ms(t_pass),
                "",
                "",
                f"{t_pass / pmb:.2f}",
                "(info)",
            ],
        ],
    )
    labels = (
        "spawn -> first line (interpreter start, site)",
        "from runner import Workspace, Experiment, ScriptRunConfig",
        "Workspace(WS) + Experiment(ws, 'b')",
        "submit() (first call: lazy imports + checks, snapshot, store, notify)",
        "wait_for_completion()",
        "last line -> process gone (interpreter exit)",
    )
    print(f"phases of (b) (medians of {len(stamped)} runs of a stamped copy of the script):")
    common.print_table(
        ["phase", "ms"],
        [[label, common.ms(common.med([s[i] for s in stamped]))] for i, label in enumerate(labels)],
    )
    print(
        f"cold first submit (starts the daemon; information): {common.ms(cold)} ms until "
        f"wait_for_completion() returned; submit() returned after {common.ms(cold_submit)} ms"
    )
    print(
        "for scale (from the issue, a trivial script vs bare python): mlflow run ~250x, "
        "guild run ~80x, Sacred ~18x, ClearML ~390x"
    )
    print()
    return common.overall(
        {f"in-process <= {GOAL_IN_PROCESS}x": ok_a, f"whole process <= {GOAL_PROCESS:g}x": ok_b}
    )


if __name__ == "__main__":
    sys.exit(main())
