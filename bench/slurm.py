"""Benchmark runs on a Slurm cluster: a hello run vs ``sbatch --wait``, submit -> Running vs
sbatch -> squeue RUNNING, and ``run.cancel()`` vs a bare ``scancel``.

Run: ``python bench/slurm.py [--reps 5] [--cancel-reps 3] [--local-reps 1]`` (~4-5 min; needs
the test cluster, ``sudo bash scripts/slurm_services.sh``, whose login node is the test sshd
127.0.0.1:2222, user jobrunner, key /tmp/infra-ssh/client_key; the benchmark runs on the
login node's machine, where it calls ``squeue`` and ``sdiag`` itself, and reads slurmctld's
log when it may). ``--host/--port/--user/--key/--known-hosts/--partition`` point it elsewhere.

Fairness. runner sits where the user is and reaches the login node over SSH, so the
baselines are what a user types there: ``ssh LOGIN 'sbatch ...'`` with the same key, a full
connection each time (runner keeps one shared connection open: its advantage, counted; the
cost of a bare ``ssh LOGIN true`` is printed). The same ``hello.py`` (``print("hello")``) is
run by ``python3`` as jobrunner in the same partition on both sides.

A quiet scheduler for every timed submit. slurmctld schedules batch jobs in passes at least
``batch_sched_delay`` (3 s) apart, checked on a 1 s tick, and every submit and every job end
asks for one: a job submitted within 3 s of the last pass waits up to 3 s for the next, one
submitted later starts at the next tick (0-1 s). That wait is Slurm's, the same for runner
and for sbatch, but random; so before each timed submit the benchmark watches ``sdiag``'s
count of scheduler passes (every 50 ms) until 3.05 s have passed since the last pass it saw
(or 4.1 s without any), and both sides meet a quiet scheduler.

(a) Hello -> Completed: ``exp.submit(ScriptRunConfig(src, 'hello.py',
    compute_target='cluster', environment=python3)).wait_for_completion()``, warm (daemon
    up, shared connection open, runner's client in shared_dir: one untimed run first) vs
    ``ssh LOGIN 'cd DIR && sbatch --wait -p PART --wrap "python3 hello.py"'``. Goal: median
    ratio <= 1.3 (median of --reps, A/B interleaved, the order flipped every rep). Note:
    ``sbatch --wait`` asks slurmctld 2 s after submitting, then 8 s later and so on, so it
    never returns before 2 s; the tight baseline, information, shows the job's real end:
    ``ssh LOGIN 'sbatch --parsable ...'``, then ``squeue -j ID`` here every 20 ms until the
    job has ended. Also information: ``su jobrunner -c 'sbatch --wait ...'`` on the login
    node itself (as root only).
(b) Submit -> Running, with the submits of (c): from ``exp.submit()`` until the run is
    Running (its ``start_utc`` in the workspace store, which the daemon sets when the
    follower reports the job RUNNING) vs from ``ssh LOGIN 'sbatch --parsable ...'`` until
    ``squeue -j ID`` (polled here every 20 ms) shows it RUNNING. Goal: median ratio <= 1.3.
    A check of its own: every run, the hello runs of (a) included, was Running before it
    ended (has a start time).
(c) Cancel: a running ``sleep.py`` (sleeps 600 s; Python's default SIGTERM ends it at once)
    canceled with ``run.cancel()`` (default cancel_grace_seconds, 10 s) until ``squeue``
    shows the job ended (no longer PENDING/RUNNING/COMPLETING) vs ``ssh LOGIN scancel ID``
    of the same script submitted with sbatch, until the same; both start once the script
    has written its marker file. runner's cancel goes through the daemon to the login node
    (``slurm-cancel``: ``scancel --signal=TERM``, wait up to the grace for the end, then
    ``scancel``). Goal: median <= 1.5x the bare scancel + 0.5 s (runner adds a daemon hop,
    a python3 start, squeue on the login node and its 0.2 s poll: a few hundred ms; the
    factor leaves room for the cache of squeue answers; more than that is a slowness).
    Also shown: when ``run.cancel()`` returns and when the run is Canceled.

Also shown: the cold first run, the phases of the warm runs (with slurmctld's own
submit/allocate/complete times when its log is readable), and the other users' jobs seen
in the queue (they make Slurm's waits longer).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common

GOAL_RATIO = 1.3
CANCEL_FACTOR, CANCEL_PLUS_S = 1.5, 0.5
TARGET = "cluster"
HELLO = 'print("hello")\n'
SLEEP = """\
import os, sys, time
open(os.path.join(sys.argv[1], os.environ.get("SLURM_JOB_ID", "x")), "w").close()
time.sleep(600)
"""
#: squeue states of a job that still holds its node (or waits for one).
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING"})
POLL_S = 0.02
SDIAG_RE = re.compile(r"Main schedule statistics.*?Total cycles:\s*(\d+)", re.S)
CTLD_RE = re.compile(
    r"^\[(\S+)\] (?:_slurm_rpc_submit_batch_job: JobId=(\d+)|sched: Allocate JobId=(\d+)|"
    r"_job_complete: JobId=(\d+) done)"
)


def on_login(args: argparse.Namespace, command: str) -> str:
    """Run ``command`` on the login node; its stdout (SystemExit when it fails)."""
    proc = subprocess.run(
        common.ssh_argv(args, command), stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"FAIL: `{command}` on the login node: {proc.stderr.strip()}")
    return proc.stdout


def job_state(job_id: str) -> str:
    """The job's state from ``squeue`` (all states; '' once Slurm has forgotten it)."""
    proc = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip().split("\n")[0].strip() if proc.returncode == 0 else ""


def poll_until(what: Callable[[], bool], timeout_s: float, label: str) -> float:
    """Poll ``what`` every POLL_S until it holds; time.time() then (SystemExit on timeout)."""
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: {label} not seen after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.time()


def runner_job(run_id: str) -> str:
    """The Slurm job id of a runner run (its job is named ``runner-<run id>``)."""
    proc = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", f"runner-{run_id}", "-o", "%i"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = proc.stdout.split()
    if not ids:
        raise SystemExit(f"FAIL: squeue knows no job of run {run_id}")
    return ids[-1]


def sched_cycles() -> int | None:
    """How many passes slurmctld's main scheduler has made (``sdiag``), None if unknown."""
    proc = subprocess.run(["sdiag"], capture_output=True, text=True, check=False)
    m = SDIAG_RE.search(proc.stdout)
    return int(m.group(1)) if proc.returncode == 0 and m else None


class Quiet:
    """Waits before a timed submit until Slurm's scheduler is quiet: the pass the last job's
    end asked for is over and the next may run at once (``batch_sched_delay`` has passed
    since it), so the job is allocated at slurmctld's next 1 s tick; counts the other jobs
    it sees in the queue meanwhile.

    Passes are seen in ``sdiag``'s counter, polled every 50 ms: after a pass, wait
    ``delay_s`` (3.05 s); no pass for ``idle_s`` (4.1 s) means none is due. Without sdiag:
    ``idle_s + delay_s`` after the last end."""

    def __init__(self, own_prefix: str, delay_s: float = 3.05, idle_s: float = 4.1) -> None:
        self.own_prefix = own_prefix  #: the names of the benchmark's runner jobs
        self.delay_s = delay_s
        self.idle_s = idle_s
        self.waited: list[float] = []
        self.foreign: set[str] = set()
        self.mine: set[str] = set()

    def _queue(self, states: str) -> list[tuple[str, str]]:
        proc = subprocess.run(
            ["squeue", "-h", "-t", states, "-o", "%i|%j"],
            capture_output=True,
            text=True,
            check=False,
        )
        return [(j, n) for j, _, n in (ln.partition("|") for ln in proc.stdout.splitlines())]

    def ours(self) -> list[str]:
        """The benchmark's jobs still pending or running."""
        return [
            job
            for job, name in self._queue("PENDING,RUNNING")
            if job in self.mine or name.startswith(self.own_prefix)
        ]

    def wait(self) -> None:
        """Return once the scheduler is quiet; note who else is in the queue."""
        t0 = time.monotonic()
        last = sched_cycles()
        if last is None:
            time.sleep(self.idle_s + self.delay_s)
        else:
            watch_from = t0  # no pass seen since
            ready_at = t0 + self.idle_s
            while time.monotonic() < ready_at:
                time.sleep(0.05)
                now_cycles = sched_cycles()
                if now_cycles is not None and now_cycles != last:
                    last = now_cycles
                    watch_from = time.monotonic()
                    ready_at = watch_from + self.delay_s
        self.waited.append(time.monotonic() - t0)
        for job, name in self._queue("PENDING,RUNNING,COMPLETING"):
            if job not in self.mine and not name.startswith(self.own_prefix):
                self.foreign.add(job)


def ctld_events(log: Path, job_ids: set[str]) -> dict[str, dict[str, float]]:
    """job id -> {"submit", "allocate", "complete"}: slurmctld's own times (its log, local
    time, ms), for the jobs asked; {} when the log cannot be read."""
    out: dict[str, dict[str, float]] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = CTLD_RE.match(line)
        if not m:
            continue
        kind, job = next(
            (k, j) for k, j in zip(("submit", "allocate", "complete"), m.groups()[1:]) if j
        )
        if job in job_ids:
            when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            out.setdefault(job, {}).setdefault(kind, when)
    return out


def main() -> int:
    t_begin = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed reps of (a)")
    parser.add_argument("--cancel-reps", type=int, default=3, help="(b) and (c) per side")
    parser.add_argument("--local-reps", type=int, default=1, help="local sbatch --wait (info)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2222)
    parser.add_argument("--user", default="jobrunner")
    parser.add_argument("--key", default="/tmp/infra-ssh/client_key")
    parser.add_argument("--known-hosts", default="/tmp/infra-ssh/known_hosts")
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--shared-root", default="/tmp/runner-slurm-shared")
    parser.add_argument("--slurmctld-log", default="/tmp/runner-slurm/log/slurmctld.log")
    args = parser.parse_args()

    probe = subprocess.run(
        common.ssh_argv(args, "sbatch --version && python3 -c pass"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or shutil.which("squeue") is None:
        print(
            f"cannot reach Slurm through {args.user}@{args.host}:{args.port} or no squeue "
            f"here ({probe.stderr.strip()}); start the test cluster with "
            "`sudo bash scripts/slurm_services.sh` (and `scripts/ssh_services.sh`)"
        )
        return 2

    common.print_header(
        "slurm: a hello run vs `sbatch --wait`, submit -> Running, cancel vs `scancel`",
        f"medians; (a) {args.reps} reps, A/B interleaved (order flipped every rep); (b), (c) "
        f"{args.cancel_reps} per side, alternating; every submit on a quiet scheduler (see "
        f"the docstring); wall clock; squeue polled every {POLL_S * 1000:.0f} ms",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "60"  # a daemon left by a crash ends on its own
    from runner import (
        ComputeTarget,
        Environment,
        Experiment,
        ScriptRunConfig,
        SlurmCompute,
        daemon_client,
    )
    from targets.slurm import SlurmTarget

    print(
        f"cluster: {probe.stdout.split(chr(10))[0]}, login node {args.user}@{args.host}:"
        f"{args.port}, partition {args.partition}; processes on the machine: "
        f"{common.process_count()}"
    )
    print()

    shared = f"{args.shared_root.rstrip('/')}/bench-{os.getpid()}"
    base = f"{shared}/baseline"  # the baseline's scripts, outputs and markers
    markers = Path(f"{shared}/markers")
    quiet = Quiet("runner-bench-slurm")
    on_login(
        args,
        f"mkdir -p {base} {markers} && cd {base} && printf %s {shlex.quote(HELLO)} > hello.py"
        f" && printf %s {shlex.quote(SLEEP)} > sleep.py",
    )
    part = shlex.quote(args.partition)

    with common.temp_dir("runner-bench-slurm-") as tmp, common.temp_workspace() as ws:
        (ws.path / "ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy(args.known_hosts, ws.path / "ssh" / "known_hosts")
        cfg = SlurmCompute.attach_configuration(
            address=args.host,
            ssh_port=args.port,
            username=args.user,
            private_key_file=args.key,
            partition=args.partition,
            shared_dir=shared,
        )
        ComputeTarget.attach(ws, TARGET, cfg)
        target = SlurmTarget(ws, TARGET, ComputeTarget(ws, TARGET).config)
        src = tmp / "src"
        src.mkdir()
        (src / "hello.py").write_text(HELLO)
        (src / "sleep.py").write_text(SLEEP)
        env = Environment("bench-python3")
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = "python3"
        exp = Experiment(ws, "bench-slurm")

        def started(run_id: str) -> float | None:
            row = ws._store.get_run(run_id)
            return None if row is None else row.start_utc

        # (a)/(b) runner: wall stamps (call, submit back, end) and the run's id.
        r_stamps: list[tuple[float, float, float, str]] = []
        r_jobs: dict[str, str] = {}  # run id -> Slurm job id

        def runner_hello() -> None:
            quiet.wait()
            t0 = time.time()
            run = exp.submit(
                ScriptRunConfig(str(src), "hello.py", compute_target=TARGET, environment=env)
            )
            t1 = time.time()
            details = run.wait_for_completion()
            t2 = time.time()
            if details["status"] != "Completed":
                raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
            r_stamps.append((t0, t1, t2, run.id))
            r_jobs[run.id] = runner_job(run.id)  # before MinJobAge lets Slurm forget it

        # (a) baseline: sbatch --wait over ssh.
        s_times: list[float] = []

        def sbatch_wait() -> None:
            quiet.wait()
            t0 = time.time()
            on_login(args, f'cd {base} && sbatch --wait -p {part} --wrap "python3 hello.py"')
            s_times.append(time.time() - t0)

        # (a) tight baseline (information): sbatch --parsable over ssh, squeue here until gone.
        p_stamps: list[tuple[float, float, str]] = []  # call, gone, job

        def sbatch_poll() -> None:
            quiet.wait()
            t0 = time.time()
            job = on_login(
                args, f'cd {base} && sbatch --parsable -p {part} --wrap "python3 hello.py"'
            ).strip()
            quiet.mine.add(job)
            t_gone = poll_until(lambda: job_state(job) not in LIVE, 60, f"end of job {job}")
            p_stamps.append((t0, t_gone, job))

        cleanup_ok = False
        try:
            # Cold: daemon start, shared connection, runner's client into shared_dir.
            quiet.wait()
            c0 = time.time()
            cold_run = exp.submit(
                ScriptRunConfig(str(src), "hello.py", compute_target=TARGET, environment=env)
            )
            cold_run.wait_for_completion()
            cold = time.time() - c0
            sbatch_wait()  # untimed warm-up of the baseline
            r_stamps.clear()
            s_times.clear()

            for i in range(args.reps):
                order = [runner_hello, sbatch_wait, sbatch_poll]
                if i % 2:
                    order.reverse()
                for fn in order:
                    fn()

            local_times: list[float] = []
            if os.geteuid() == 0 and shutil.which("su"):
                for _ in range(args.local_reps):
                    quiet.wait()
                    t0 = time.time()
                    subprocess.run(
                        [
                            "su",
                            args.user,
                            "-c",
                            f'cd {base} && sbatch --wait -p {part} --wrap "python3 hello.py"',
                        ],
                        stdout=subprocess.DEVNULL,
                        check=True,
                    )
                    local_times.append(time.time() - t0)

            # (c) cancel, runner and bare scancel alternately (untimed: until the script runs).
            c_rows: dict[str, list[float]] = {"runner": [], "call": [], "done": [], "base": []}
            r_b: list[tuple[float, float, str]] = []  # (b): submit() call, start_utc, job
            b_b: list[tuple[float, float, str]] = []  # (b): ssh sbatch call, RUNNING, job
            r_never_running = 0
            for i in range(args.cancel_reps):  # warm already: the runs of (a) came first

                def runner_cancel(i: int = i) -> None:
                    nonlocal r_never_running
                    mark = markers / f"r{i}"
                    on_login(args, f"mkdir -p {mark}")
                    quiet.wait()
                    t_sub = time.time()
                    run = exp.submit(
                        ScriptRunConfig(
                            str(src),
                            "sleep.py",
                            [str(mark)],
                            compute_target=TARGET,
                            environment=env,
                        )
                    )
                    poll_until(lambda: any(mark.iterdir()), 60, f"run {run.id}'s script")
                    # (b): Running is recorded when the follower sees the job RUNNING.
                    with contextlib.suppress(SystemExit):
                        poll_until(lambda: started(run.id) is not None, 10, "Running")
                    job = runner_job(run.id)
                    t0 = time.time()
                    run.cancel()
                    t_call = time.time()
                    t_gone = poll_until(lambda: job_state(job) not in LIVE, 60, f"end of {job}")
                    details = run.wait_for_completion(raise_on_error=False)
                    t_done = time.time()
                    if details["status"] != "Canceled":
                        raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
                    t_started = started(run.id)
                    if t_started is None:
                        r_never_running += 1
                    else:
                        r_b.append((t_sub, t_started, job))
                    c_rows["runner"].append(t_gone - t0)
                    c_rows["call"].append(t_call - t0)
                    c_rows["done"].append(t_done - t0)

                def bare_cancel(i: int = i) -> None:
                    mark = markers / f"b{i}"
                    on_login(args, f"mkdir -p {mark}")
                    quiet.wait()
                    t_sub = time.time()
                    job = on_login(
                        args,
                        f'cd {base} && sbatch --parsable -p {part} --wrap "python3 sleep.py {mark}"',
                    ).strip()
                    quiet.mine.add(job)
                    t_run = poll_until(
                        lambda: job_state(job) not in ("", "PENDING", "CONFIGURING"),
                        60,
                        f"job {job} running",
                    )
                    b_b.append((t_sub, t_run, job))
                    poll_until(lambda: any(mark.iterdir()), 60, f"job {job}'s script")
                    t0 = time.time()
                    on_login(args, f"scancel {job}")
                    t_gone = poll_until(lambda: job_state(job) not in LIVE, 60, f"end of {job}")
                    c_rows["base"].append(t_gone - t0)

                pair: list[Callable[[], None]] = [runner_cancel, bare_cancel]
                if i % 2:
                    pair.reverse()
                for fn in pair:
                    fn()

            ssh_true = common.med(
                common.timings(5, lambda: subprocess.run(common.ssh_argv(args, "true"), check=True))
            )
            cleanup_ok = True
        finally:
            daemon_client.stop_daemon(ws.path)
            if target.conn.master_alive():
                target.conn.close()  # the daemon leaves it up for ControlPersist
            # After a failure a sleep.py job may still hold the node: end it, then clean up.
            left = quiet.ours()
            subprocess.run(
                common.ssh_argv(
                    args,
                    f"{'scancel ' + ' '.join(left) + '; ' if left else ''}"
                    f"rm -rf {shlex.quote(shared)}",
                ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            if not cleanup_ok:
                print(f"(the benchmark failed; canceled its jobs {left or 'none'})")

        # Phases of the warm runner runs; slurmctld's times where its log is readable.
        ctld = ctld_events(
            Path(args.slurmctld_log),
            set(r_jobs.values()) | {j for *_, j in p_stamps + r_b + b_b},
        )
        phase_cols: dict[str, list[float]] = {}
        hello_never_running = 0

        def phase(label: str, value: float | None) -> None:
            if value is not None:
                phase_cols.setdefault(label, []).append(value)

        for t0, t1, t2, run_id in r_stamps:
            row = ws._store.get_run(run_id)
            if row is None or row.end_utc is None:
                raise SystemExit(f"FAIL: run {run_id} has no end time in the store")
            t_start = row.start_utc  # None: the run went Queued -> Completed
            hello_never_running += t_start is None
            ev = ctld.get(r_jobs[run_id], {})
            phase("submit() call -> submit() returns", t1 - t0)
            phase(
                "submit() returns -> sbatch accepted the job (slurmctld)", _minus(ev, "submit", t1)
            )
            phase("sbatch accepted -> allocated (slurmctld)", _delta(ev, "submit", "allocate"))
            phase("allocated -> the job's end (slurmctld)", _delta(ev, "allocate", "complete"))
            if t_start is not None:
                phase(
                    "allocated -> the run Running (start_utc)", _minus_from(t_start, ev, "allocate")
                )
            phase(
                "the job's end -> the run ended (end_utc)", _minus_from(row.end_utc, ev, "complete")
            )
            phase("the run ended -> wait_for_completion() returns", t2 - row.end_utc)
        p_gone = [t_gone - t0 for t0, t_gone, _ in p_stamps]
        base_phase: dict[str, list[float]] = {}
        for t0, t_gone, job in p_stamps:
            ev = ctld.get(job, {})
            for label, value in (
                ("ssh sbatch call -> sbatch accepted (slurmctld)", _minus(ev, "submit", t0)),
                ("sbatch accepted -> allocated (slurmctld)", _delta(ev, "submit", "allocate")),
                ("allocated -> the job's end (slurmctld)", _delta(ev, "allocate", "complete")),
                ("the job's end -> seen gone by squeue here", _minus_from(t_gone, ev, "complete")),
            ):
                if value is not None:
                    base_phase.setdefault(label, []).append(value)

    r_total = [t2 - t0 for t0, _, t2, _ in r_stamps]
    ratio_a = common.med(r_total) / common.med(s_times)
    ok_a = ratio_a <= GOAL_RATIO
    print("(a) hello.py -> Completed, runner warm")
    rows_a = [
        _row("baseline: ssh LOGIN 'sbatch --wait ... python3 hello.py'", s_times),
        _row(
            "exp.submit(..., compute_target='cluster').wait_for_completion()",
            r_total,
            f"{ratio_a:.2f}",
            common.verdict(ok_a),
        ),
        _row(
            "info: ssh sbatch --parsable, squeue here until gone (no 2 s steps)",
            p_gone,
            f"{common.med(r_total) / common.med(p_gone):.2f}",
            "(runner vs this)",
        ),
    ]
    if local_times:
        rows_a.append(
            _row(
                "info: su jobrunner -c 'sbatch --wait ...' on the login node",
                local_times,
                f"{common.med(r_total) / common.med(local_times):.2f}",
                "(runner vs this)",
            )
        )
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_RATIO}x"],
        rows_a,
    )
    print(
        f"cold first run (information): {common.ms(cold)} ms (daemon start, shared "
        "connection, runner's client copied into shared_dir)"
    )
    print()

    r_running = [t_run - t0 for t0, t_run, _ in r_b]
    b_running = [t_run - t0 for t0, t_run, _ in b_b]
    ratio_b = common.med(r_running) / common.med(b_running)
    ok_b = ratio_b <= GOAL_RATIO
    print("(b) submit -> Running (sleep.py, the submits of (c))")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_RATIO}x"],
        [
            _row("baseline: ssh LOGIN 'sbatch ...' -> squeue RUNNING", b_running),
            _row(
                "exp.submit() -> run Running (start_utc)",
                r_running,
                f"{ratio_b:.2f}",
                common.verdict(ok_b),
            ),
        ],
    )
    if r_never_running:
        print(f"FAIL: {r_never_running} sleep.py run(s) were never Running")
    b_phases: list[list[object]] = []
    for label, stamps in (("runner", r_b), ("baseline", b_b)):
        cols: dict[str, list[float]] = {}
        for t0, t_run, job in stamps:
            ev = ctld.get(job, {})
            for what, value in (
                ("call -> sbatch accepted (slurmctld)", _minus(ev, "submit", t0)),
                ("sbatch accepted -> allocated (slurmctld)", _delta(ev, "submit", "allocate")),
                ("allocated -> Running seen", _minus_from(t_run, ev, "allocate")),
            ):
                if value is not None:
                    cols.setdefault(what, []).append(value)
        b_phases += [
            [f"{label}: {what}", common.ms(common.med(col)), len(col)] for what, col in cols.items()
        ]
    if b_phases:
        print("phases of (b) (medians; slurmctld's log):")
        common.print_table(["phase", "ms", "n"], b_phases)
    print(
        f"hello runs of (a) never Running (Queued -> Completed, no start time): "
        f"{hello_never_running} of {len(r_stamps)}"
    )
    print()

    print("phases of the warm runner runs of (a) (medians; wall clock, the store, slurmctld):")
    common.print_table(
        ["phase", "ms", "n"],
        [[label, common.ms(common.med(col)), len(col)] for label, col in phase_cols.items()],
    )
    if base_phase:
        print("phases of the tight baseline (sbatch --parsable + squeue) (medians):")
        common.print_table(
            ["phase", "ms", "n"],
            [[label, common.ms(common.med(col)), len(col)] for label, col in base_phase.items()],
        )
    elif not ctld:
        print(f"(slurmctld's log {args.slurmctld_log} not readable: no Slurm-side phases)")
        print()

    base_c = common.med(c_rows["base"])
    goal_c = CANCEL_FACTOR * base_c + CANCEL_PLUS_S
    ok_c = common.med(c_rows["runner"]) <= goal_c
    print("(c) cancel a running sleep.py (exits on SIGTERM) until Slurm shows the job ended")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", "goal"],
        [
            _row("baseline: ssh LOGIN scancel ID", c_rows["base"]),
            _row(
                "run.cancel() -> job ended in squeue",
                c_rows["runner"],
                f"{common.med(c_rows['runner']) / base_c:.2f}",
                f"<= {goal_c * 1000:.0f} ms {common.verdict(ok_c)}",
            ),
            _row("info: run.cancel() returns", c_rows["call"], "", "(info)"),
            _row("info: run recorded Canceled", c_rows["done"], "", "(info)"),
        ],
    )
    print(f"bare `ssh LOGIN true` (a full connection; median of 5): {common.ms(ssh_true)} ms")
    print(
        f"other jobs seen in the queue during the benchmark: {len(quiet.foreign)}"
        + (f" ({', '.join(sorted(quiet.foreign, key=int)[:10])})" if quiet.foreign else "")
    )
    print(
        f"the benchmark took {time.monotonic() - t_begin:.0f} s, {sum(quiet.waited):.0f} s of "
        "it waiting for a quiet scheduler"
    )
    print()
    return common.overall(
        {
            f"hello <= {GOAL_RATIO}x sbatch --wait": ok_a,
            f"submit -> Running <= {GOAL_RATIO}x": ok_b,
            "every run seen Running": not r_never_running and not hello_never_running,
            f"cancel <= {CANCEL_FACTOR}x scancel + {CANCEL_PLUS_S} s": ok_c,
        }
    )


def _row(label: str, samples: list[float], vs: str = "1.00", result: str = "") -> list[str]:
    """common.timing_row, with n/a for a case that has no samples."""
    if not samples:
        return [label, "n/a", "n/a", "n/a", vs, result]
    return common.timing_row(label, samples, vs, result)


def _delta(ev: dict[str, float], a: str, b: str) -> float | None:
    return ev[b] - ev[a] if a in ev and b in ev else None


def _minus(ev: dict[str, float], key: str, t: float) -> float | None:
    return ev[key] - t if key in ev else None


def _minus_from(t: float, ev: dict[str, float], key: str) -> float | None:
    return t - ev[key] if key in ev else None


if __name__ == "__main__":
    sys.exit(main())
