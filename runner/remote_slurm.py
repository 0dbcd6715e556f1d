"""The cluster side of a Slurm target: standard library only, Python 3.9+.

runner reaches a Slurm cluster through its login node over SSH, like any SSH host
(``runner.remote_agent``), with everything under the target's ``shared_dir``, a folder the
login node and every compute node see at the same path:

- ``client/<version>``: runner's in-run client, which the compute nodes import;
- ``blobs/``, ``snapshots/``, ``envs/``: snapshot contents and environments, sent and built
  once on the login node (``Session``'s own requests) and used by every job;
- ``runs/<run id>/``: ``launch.json`` (what to run), ``work/`` (the snapshot; ./outputs and
  ./logs inside), ``job`` (Slurm's job id), ``driver.log``, ``journal``, ``blobs/`` (files
  the run records) and ``exit_code``.

Two roles. On the login node ``SlurmSession`` submits the run with ``sbatch`` (checked with
``sbatch --test-only`` first, so an impossible request fails at submit, not PENDING for
ever), follows the job's state, log and journal, and cancels it (``slurm-cancel``). On a
compute node ``task`` runs once per srun task: it makes the run's own workspace on the
node's local disk (SQLite must not be used over a network file system), with its blobs in
the shared run folder and its journal there, and runs the script under the exit-code shim.

Job states come from one ``squeue`` for all of the user's runner jobs, shared by every
follower on the login node through a cache file (so N runs cost one ``squeue`` a second,
not N), then from ``sacct`` (or ``sacct -c`` without accounting) once a job leaves the queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from runner.remote_agent import (
    Session,
    _read_from,
    default_base,
    record_run,
    run_environment,
)
from runner.shim import SHIM, read_exit_file

__all__ = ["SlurmSession", "cancel", "job_state", "main", "task"]

#: Slurm's job states that end a job.
ENDED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED_ENDED",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
#: PENDING reasons that never clear by waiting: the job can never start.
NEVER_STARTS = frozenset(
    {
        "BadConstraints",
        "DependencyNeverSatisfied",
        "InvalidAccount",
        "InvalidQOS",
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "FrontEndDown",
    }
)
#: How old the shared ``squeue`` answer may be.
SQUEUE_CACHE_S = 1.0
#: Lines of ``squeue`` output: id|name|state|reason|nodes|partition.
_FORMAT = "%i|%j|%T|%r|%N|%P"


# -- job states ---------------------------------------------------------------------------


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())


def queue_snapshot(base: Path, max_age: float = SQUEUE_CACHE_S) -> dict[str, list[str]]:
    """job id -> [name, state, reason, nodes, partition] of the user's runner jobs Slurm still holds
    (running, pending and, for ``MinJobAge``, ended ones): one ``squeue`` for all followers
    on this node, at most once every ``SQUEUE_CACHE_S``."""
    import fcntl

    cache = base / "squeue.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_text())
        if time.time() - float(data["t"]) < max_age:
            return dict(data["jobs"])
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "squeue.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):  # another follower just asked
            data = json.loads(cache.read_text())
            if time.time() - float(data["t"]) < max_age:
                return dict(data["jobs"])
        now = time.time()
        proc = subprocess.run(
            ["squeue", "-h", "--states=all", "-u", _user(), "-o", _FORMAT],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise OSError(f"squeue failed: {proc.stderr.strip()}")
        jobs = {}
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 6 and parts[1].startswith("runner-"):
                jobs[parts[0]] = parts[1:]
        tmp = cache.with_name(f".squeue.{os.getpid()}")
        tmp.write_text(json.dumps({"t": now, "jobs": jobs}))
        os.replace(tmp, cache)
        return jobs


def _accounting(job_id: str) -> tuple[str, str] | None:
    """(state, exit code "N:S") of an ended job from ``sacct``, or ``sacct -c`` (the job
    completion log) on a cluster without accounting; None when neither knows it."""
    for extra in ([], ["-c"]):
        proc = subprocess.run(
            ["sacct", *extra, "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            continue
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and parts[0] == job_id:
                return parts[1].split()[0], parts[2]
    return None


def job_state(base: Path, job_id: str, max_age: float = SQUEUE_CACHE_S) -> dict[str, str] | None:
    """{"state", "reason", "nodes", "partition"} of a job (``exit``: Slurm's exit code once
    it ended), or None when Slurm knows no such job (any more)."""
    found = queue_snapshot(base, max_age).get(job_id)
    if found is not None:
        _, state, reason, nodes, partition = found
        return {"state": state.split()[0], "reason": reason, "nodes": nodes, "partition": partition}
    ended = _accounting(job_id)
    if ended is None:
        return None
    return {"state": ended[0], "reason": "", "nodes": "", "exit": ended[1]}


def find_job(run_id: str) -> str | None:
    """The id of the job named ``runner-<run id>`` that Slurm holds, if any."""
    proc = subprocess.run(
        ["squeue", "-h", "--states=all", "-u", _user(), "-n", f"runner-{run_id}", "-o", "%i"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = proc.stdout.split()
    return ids[-1] if proc.returncode == 0 and ids else None


# -- the login node ------------------------------------------------------------------------


class SlurmSession(Session):
    """``remote_agent``'s session with launch, follow and find done through Slurm."""

    def hello(self) -> dict[str, Any]:
        """As any host, plus where sbatch is."""
        return {**super().hello(), "sbatch": shutil.which("sbatch")}

    def op_launch(self, header: dict[str, Any], payload: bytes) -> None:
        """Materialize the snapshot in the run's shared folder and submit the job."""
        run_id = str(header["run_id"])
        folder = self.run_dir(run_id)
        if (folder / "job").exists():
            raise ValueError(f"run {run_id} was submitted to Slurm already")
        shutil.rmtree(folder, ignore_errors=True)
        self.materialize(folder, header.get("snapshot"))
        (folder / "blobs").mkdir()
        (folder / "journal").touch()
        (folder / "launch.json").write_text(json.dumps(header))
        client = Path(__file__).resolve().parent.parent
        args = sbatch_args(header.get("slurm") or {}, run_id, folder)
        script = batch_script(client, folder, header.get("slurm") or {})
        (folder / "job.sh").write_text(script)
        test = subprocess.run(
            ["sbatch", "--test-only", *args, str(folder / "job.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        if test.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            reason = test.stderr.strip().replace("sbatch: error: ", "")
            raise ValueError(f"Slurm refuses the job: {reason}")
        proc = subprocess.run(
            ["sbatch", "--parsable", *args, str(folder / "job.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise ValueError(f"sbatch failed: {proc.stderr.strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        (folder / "job").write_text(job_id + "\n")
        self.reply({"job_id": job_id})

    def op_find(self, header: dict[str, Any], payload: bytes) -> None:
        """The run's job id: from its folder, else by its name (a supervisor that stopped
        between sbatch and recording the id); None when it was never submitted."""
        run_id = str(header["run_id"])
        folder = self.run_dir(run_id)
        with contextlib.suppress(OSError):
            self.reply({"job_id": (folder / "job").read_text().strip()})
            return
        job_id = find_job(run_id)
        if job_id is not None and folder.is_dir():
            (folder / "job").write_text(job_id + "\n")
        self.reply({"job_id": job_id})

    def op_follow(self, header: dict[str, Any], payload: bytes) -> None:
        """Stream the job's state, log and journal until it has ended.

        Frames as ``remote_agent``'s, plus ``{"s": "state", "state", "reason", "nodes",
        "partition"}`` (and ``"ran"`` once the job's task has started) each time that
        changes; ``exit`` says the job's last state
        and reason too. A distributed run's ranks each have a log and a journal: their
        frames carry ``"r": rank``, logs go in whole lines, and ``offsets`` (stream name ->
        offset: ``log_1``, ``journal_1``...) says where each one resumes.
        """
        run_id = str(header["run_id"])
        folder = self.run_dir(run_id)
        try:
            job_id = (folder / "job").read_text().strip()
        except OSError:
            code = read_exit_file(folder / "exit_code")
            self.reply({"s": "exit", "code": code, "missing": True})
            return
        streams = _streams(folder, header)
        hb = float(header.get("hb") or 2.0)
        blobs = folder / "blobs"
        last_sent = time.monotonic()
        said: dict[str, str] | None = None
        unknown_since: float | None = None
        t0 = time.monotonic()
        while True:
            # The script's end (the shim's exit file): ask squeue afresh until the job ends.
            ending = (folder / "exit_code").exists()
            state = job_state(self.base, job_id, 0.1 if ending else SQUEUE_CACHE_S)
            if (folder / "started").exists() and (
                state is None or state["state"] in ("PENDING", "CONFIGURING")
            ):  # the task runs: Slurm has started the job, whatever squeue said a moment ago
                state = {
                    "state": "RUNNING",
                    "reason": "None",
                    "nodes": (state or {}).get("nodes", ""),
                    "partition": (state or {}).get("partition", ""),
                }
            if state is not None and (folder / "started").exists():
                # It ran (a job of a fraction of a second may be seen only ended).
                state = {**state, "ran": "1"}
            now = time.monotonic()
            # Not in the queue yet, or forgotten: wait a little before giving up on it.
            unknown_since = (unknown_since or now) if state is None else None
            shown = {k: v for k, v in (state or {}).items() if k != "exit"}
            if state is not None and shown != said:
                self.reply({"s": "state", **shown})
                said = shown
            done = (state is not None and state["state"] in ENDED) or (
                unknown_since is not None and now - unknown_since > 30
            )
            sent = False
            for stream in streams:
                data = _read_from(stream.path, stream.offset)
                if stream.kind == "journal" or (stream.rank is not None and not done):
                    data = data[: data.rfind(b"\n") + 1]
                if stream.kind == "journal":
                    self._send_blobs(data, blobs)
                if data:
                    frame: dict[str, Any] = {"s": stream.kind, "o": stream.offset}
                    if stream.rank is not None:
                        frame["r"] = stream.rank
                    self.reply(frame, data)
                    stream.offset += len(data)
                    sent = True
            if done and not sent:
                self.reply({"s": "exit", **_ending(folder, job_id, state)})
                return
            if sent:
                last_sent = now
            elif now - last_sent >= hb:
                self.reply({"s": "hb", "t": time.time()})
                last_sent = now
            time.sleep(0.05 if now - t0 < 5 else 0.25)


class _Stream:
    """One file of a run streamed from an offset: a log or a journal (of one rank)."""

    def __init__(self, kind: str, path: Path, rank: int | None, offset: int) -> None:
        self.kind = kind
        self.path = path
        self.rank = rank
        self.offset = offset


def ranks_of(folder: Path) -> int:
    """How many srun tasks the run has (1 when its launch says nothing)."""
    with contextlib.suppress(OSError, ValueError):
        slurm = json.loads((folder / "launch.json").read_text()).get("slurm") or {}
        return int(slurm.get("nodes") or 1) * int(slurm.get("tasks_per_node") or 1)
    return 1


def _streams(folder: Path, header: dict[str, Any]) -> list[_Stream]:
    """The run's logs and journals, each from where the follower has it."""
    offsets = dict(header.get("offsets") or {})
    offsets.setdefault("log", int(header.get("log") or 0))
    offsets.setdefault("journal", int(header.get("journal") or 0))
    ranks = ranks_of(folder)
    if ranks == 1:
        return [
            _Stream("log", folder / "driver.log", None, int(offsets["log"])),
            _Stream("journal", folder / "journal", None, int(offsets["journal"])),
        ]
    found = []
    for rank in range(ranks):
        suffix = "" if rank == 0 else f"_{rank}"
        found.append(
            _Stream("log", folder / f"driver_{rank}.log", rank, int(offsets.get(f"log_{rank}", 0)))
        )
        found.append(
            _Stream(
                "journal",
                folder / f"journal{suffix}",
                rank,
                int(offsets.get(f"journal{suffix}", 0)),
            )
        )
    return found


def _ending(folder: Path, job_id: str, state: dict[str, str] | None) -> dict[str, Any]:
    """The exit frame of an ended job: the script's code (the shim's file, else Slurm's);
    of a distributed run, the code of the first rank that failed (and ``rank``)."""
    failed = _first_failed_rank(folder)
    if failed is not None:
        state_name = state["state"] if state else "UNKNOWN"
        return {"code": failed[1], "state": state_name, "reason": "", "rank": failed[0]}
    code = read_exit_file(folder / "exit_code")
    if state is None:
        return {"code": code, "state": "UNKNOWN", "reason": f"Slurm no longer knows job {job_id}"}
    if state["state"] == "FAILED" and _oom_killed(folder):
        # The job ends FAILED when a step's task was OOM-killed; only its log says why.
        state = {**state, "state": "OUT_OF_MEMORY"}
    if code is None:
        exit_text = state.get("exit") or ""
        acct = _accounting(job_id) if not exit_text else None
        if acct is not None:
            exit_text = acct[1]
        number = exit_text.split(":")[0]
        code = int(number) if number.isdigit() and state["state"] != "CANCELLED" else None
    return {"code": code, "state": state["state"], "reason": state.get("reason") or ""}


def _oom_killed(folder: Path) -> bool:
    """Whether Slurm's own log of the job says the kernel killed a task for memory."""
    text = _read_from(folder / "slurm.out", 0, 1 << 20).decode("utf-8", "replace")
    return "Out Of Memory" in text or "oom-kill event" in text


def _first_failed_rank(folder: Path) -> tuple[int, int] | None:
    """(rank, code) of the distributed run's rank that failed first (by when its exit
    code was written), or None."""
    ranks = ranks_of(folder)
    failed = []
    for rank in range(ranks if ranks > 1 else 0):
        path = folder / ("exit_code" if rank == 0 else f"exit_code_{rank}")
        code = read_exit_file(path)
        if code:
            failed.append((path.stat().st_mtime_ns, rank, code))
    if not failed:
        return None
    _, rank, code = min(failed)
    return rank, code


def sbatch_args(slurm: dict[str, Any], run_id: str, folder: Path) -> list[str]:
    """sbatch's options for the run: named after it, never requeued, logs appended, and
    what it asks of the cluster (``request_args``)."""
    return [
        f"--job-name=runner-{run_id}",
        "--no-requeue",
        "--open-mode=append",
        f"--output={folder / 'slurm.out'}",
        f"--chdir={folder / 'work'}",
        *request_args(slurm),
    ]


def request_args(slurm: dict[str, Any]) -> list[str]:
    """sbatch's options for what a run asks of the cluster: nodes, tasks, partition,
    account, QOS, GPUs, time and the target's own options (also ``--test-only``'s)."""
    args = [
        f"--nodes={int(slurm.get('nodes') or 1)}",
        f"--ntasks-per-node={int(slurm.get('tasks_per_node') or 1)}",
    ]
    for key in ("partition", "account", "qos"):
        if slurm.get(key):
            args.append(f"--{key}={slurm[key]}")
    if slurm.get("gpus_per_node"):
        args.append(f"--gpus-per-node={int(slurm['gpus_per_node'])}")
    if slurm.get("time_s"):
        minutes = max(1, -(-int(float(slurm["time_s"])) // 60))  # Slurm counts minutes
        args.append(f"--time={minutes}")
    args += [str(a) for a in slurm.get("extra_args") or []]
    return args


def batch_script(client: Path, folder: Path, slurm: dict[str, Any]) -> str:
    """The job's batch script: every task under ``srun``, each one ``task`` below."""
    ranks = int(slurm.get("nodes") or 1) * int(slurm.get("tasks_per_node") or 1)
    output = folder / ("driver.log" if ranks == 1 else "driver_%t.log")
    start = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from runner.remote_slurm import task; sys.exit(task(sys.argv[2]))"
    )
    srun = [
        "srun",
        "--kill-on-bad-exit=1",
        "--unbuffered",
        f"--output={output}",
        "--open-mode=append",
        "python3",
        "-c",
        start,
        str(client),
        str(folder),
    ]
    return "#!/bin/sh\n# runner: one Slurm job of a run\nexec " + shlex.join(srun) + "\n"


# -- a compute node ------------------------------------------------------------------------


def _node_folder(run_id: str, rank: int) -> Path:
    """The rank's own workspace on the node's local disk."""
    root = os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"  # noqa: S108
    return Path(root) / f"runner-{os.getuid()}" / f"{run_id}-{rank}"


def distributed_variables(spec: dict[str, Any]) -> dict[str, str]:
    """RANK, WORLD_SIZE, MASTER_ADDR... of this task, from Slurm's variables."""
    rank = os.environ.get("SLURM_PROCID", "0")
    world = os.environ.get("SLURM_NTASKS", "1")
    local = os.environ.get("SLURM_LOCALID", "0")
    if world == "1":
        return {}
    nodes = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ.get("SLURM_JOB_NODELIST", "")],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    master = nodes[0] if nodes else "127.0.0.1"
    port = str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000)
    return {
        "RANK": rank,
        "WORLD_SIZE": world,
        "LOCAL_RANK": local,
        "LOCAL_WORLD_SIZE": os.environ.get("SLURM_NTASKS_PER_NODE", world).split("(")[0],
        "NODE_RANK": os.environ.get("SLURM_NODEID", "0"),
        "MASTER_ADDR": master,
        "MASTER_PORT": port,
        "AZ_BATCH_MASTER_NODE": f"{master}:{port}",
        "AZ_BATCHAI_MPI_MASTER_NODE": master,
        "AZ_BATCHAI_TASK_INDEX": os.environ.get("SLURM_NODEID", "0"),
        "OMPI_COMM_WORLD_RANK": rank,
        "OMPI_COMM_WORLD_SIZE": world,
    }


def task(folder_name: str) -> int:
    """One srun task of a run: its workspace on this node, then the script under the shim.

    SIGTERM (a cancel: ``scancel --signal=TERM`` reaches every process of the step) is left
    to the script; this process waits for it, so the exit code is always written.
    """
    folder = Path(folder_name)
    spec = json.loads((folder / "launch.json").read_text())
    run_id = str(spec["run_id"])
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    local = _node_folder(run_id, rank)
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    # The workspace's database stays on this node; the files it keeps go to the shared
    # folder, from where the login node sends the ones the journal names.
    (local / "ws").mkdir()
    (local / "ws" / "blobs").symlink_to(folder / "blobs")
    record_run(local / "ws", spec)
    journal = folder / ("journal" if rank == 0 else f"journal_{rank}")
    journal.touch()
    client = Path(__file__).resolve().parent.parent
    env = run_environment(client, spec, local / "ws", journal)
    env.update(distributed_variables(spec))
    argv = [str(a) for a in spec["argv"]]
    if spec.get("python") and argv and argv[0] == "{python}":
        argv[0] = str(spec["python"])
    exit_file = folder / ("exit_code" if rank == 0 else f"exit_code_{rank}")
    if rank == 0:
        (folder / "started").write_text(f"{time.time()}\n")
    # Slurm (proctrack/cgroup) sends a step's signals other than KILL to this task process
    # only: pass them on to the script's process group; the script decides, we wait for it.
    box: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        if not box:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(box[0].pid, signum)

    signal.signal(signal.SIGTERM, forward)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", SHIM, "runner-shim", str(folder / "work"), str(exit_file), *argv],
        env=env,
        start_new_session=True,
    )
    box.append(proc)
    for signum in pending:
        forward(signum, None)
    code = proc.wait()  # (interrupted by a forwarded signal: PEP 475 retries the wait)
    shutil.rmtree(local, ignore_errors=True)
    return code if code >= 0 else 128 - code


# -- commands ------------------------------------------------------------------------------


def cancel(base: Path, run_id: str, grace_s: float) -> dict[str, Any]:
    """TERM the job's steps, wait ``grace_s`` for it to end, then ``scancel`` it (Slurm
    sends TERM and, KillWait later, KILL to whatever is left). A pending job is removed."""
    folder = base / "runs" / run_id
    try:
        job_id = (folder / "job").read_text().strip()
    except OSError:
        job_id = find_job(run_id) or ""
    if not job_id:
        return {"ok": True, "found": False}
    state = job_state(base, job_id, 0.1)
    # The task's file says the job runs before a cached squeue answer may.
    started = (folder / "started").exists()
    if state is not None and (
        state["state"] == "RUNNING" or (started and state["state"] in ("PENDING", "CONFIGURING"))
    ):
        subprocess.run(["scancel", "--signal=TERM", job_id], capture_output=True, check=False)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            state = job_state(base, job_id, 0.1)
            if state is None or state["state"] in ENDED:
                return {"ok": True, "found": True, "job_id": job_id}
    if state is None or state["state"] not in ENDED:
        subprocess.run(["scancel", job_id], capture_output=True, check=False)
    return {"ok": True, "found": True, "job_id": job_id}


def main(argv: list[str] | None = None) -> int:
    """``slurm-session`` | ``slurm-cancel RUN_ID GRACE_S``."""
    args = sys.argv[1:] if argv is None else argv
    base = default_base()
    if args and args[0] == "slurm-session":
        stdin: BinaryIO = sys.stdin.buffer
        SlurmSession(base, stdin, sys.stdout.buffer).serve()
        return 0
    if len(args) == 3 and args[0] == "slurm-cancel":
        sys.stdout.write(json.dumps(cancel(base, args[1], float(args[2]))) + "\n")
        return 0
    sys.stderr.write("usage: remote_slurm slurm-session | slurm-cancel RUN_ID GRACE_S\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
