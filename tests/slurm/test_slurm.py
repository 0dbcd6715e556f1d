"""Runs on a real Slurm cluster (scripts/slurm_services.sh), each submitted from a process
that exits at once, acted on from others, and checked from yet another one.

The target contract (tests/targets) covers hello Completed, exit 3 Failed, cancel while
running and a daemon killed mid-run; these are what is Slurm's own: the queue, the
engine's refusals, GPUs, setsid grandchildren, a crash between sbatch and the record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import daemon_pid, run_cli, run_code, wait_until
from tests.slurm.conftest import KILL_WAIT_S, SHARED_ROOT, Cluster, slurm_problem
from tests.targets.contract import (
    TERMINAL,
    Rig,
    details,
    run_processes,
    status_of,
    wait_status,
)

pytestmark = [pytest.mark.slurm, pytest.mark.ssh, pytest.mark.slow]

ENV_CODE = """
env = Environment("slurm-test")
env.python.user_managed_dependencies = True
env.python.interpreter_path = "python3"
"""

JOB = """
import os, subprocess, sys, time
from runner import Run

run = Run.get_context()
mode = sys.argv[1]
print("job-start", run.id, os.environ.get("SLURM_JOB_ID"), flush=True)
print("cuda=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
if mode == "grandchild":
    # In a session of its own, ignoring SIGTERM: only Slurm's cgroup finds it.
    child = subprocess.Popen(
        ["setsid", "sh", "-c", "trap '' TERM; echo $$ > grandchild.pid; exec sleep 300"])
    while not os.path.exists("grandchild.pid"):
        time.sleep(0.05)
    print("grandchild", open("grandchild.pid").read().strip(), flush=True)
    time.sleep(300)
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
run.log("score", 0.5)
print("job-end", flush=True)
"""

SUBMIT = """
import sys
from runner import Environment, Experiment, PyTorchConfiguration, ScriptRunConfig, Workspace

ws = Workspace(sys.argv[1])
cfg = ScriptRunConfig(sys.argv[2], "job.py", arguments=sys.argv[5:], compute_target=sys.argv[3])
{env_code}
cfg.run_config.environment = env
cfg.run_config.gpu_count = int(sys.argv[4])
cfg.run_config.cancel_grace_seconds = 2
{extra}
try:
    print("RUN", Experiment(ws, "slurm").submit(cfg).id)
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
"""


def _source(tmp: Path) -> Path:
    folder = tmp / f"src-{len(list(tmp.glob('src-*')))}"
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent(JOB), encoding="utf-8")
    return folder


def _rig(ws: Path) -> Rig:
    return Rig("slurm", ws, "cluster", ENV_CODE, {"RUNNER_HEARTBEAT_S": "0.5"}, patience_s=120)


def _submit(
    ws: Path, src: Path, *args: object, gpus: int = 0, target: str = "cluster", extra: str = ""
) -> str:
    """The run's id, or ``REFUSED <error>`` (submitted from a process of its own);
    ``extra``: Python lines that change ``cfg`` first."""
    code = SUBMIT.replace("{env_code}", textwrap.dedent(ENV_CODE)).replace("{extra}", extra)
    proc = run_code(code, ws, src, target, gpus, *args, timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(("RUN ", "REFUSED ")))
    return line.split(maxsplit=1)[1] if line.startswith("RUN ") else line


def _row(ws: Path, run_id: str) -> dict[str, object]:
    with contextlib.closing(
        sqlite3.connect(f"file:{ws / 'runner.db'}?mode=ro", uri=True, timeout=30)
    ) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    return dict(row) if row else {}


def _log(rig: Rig, run_id: str, tmp: Path) -> str:
    folder = tmp / f"dl-{run_id}"
    details(rig, run_id, folder)
    return (folder / "azureml-logs" / "70_driver_log.txt").read_text(encoding="utf-8")


def slurm_idle() -> bool:
    """The test cluster's node takes jobs again."""
    return slurm_problem() is None


def _job_of(shared: Path, run_id: str) -> str:
    return (shared / "runs" / run_id / "job").read_text().strip()


def _squeue(job: str) -> str:
    proc = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def _as_jobrunner(*argv: str) -> str:
    proc = subprocess.run(
        ["runuser", "-u", "jobrunner", "--", *argv],
        capture_output=True,
        text=True,
        cwd="/tmp",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_hello_records_slurms_job_and_the_queue(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "quick")
    assert wait_status(rig, run_id, TERMINAL, 120) == "Completed", details(rig, run_id)
    found = details(rig, run_id)
    props = found["properties"]
    assert isinstance(props, dict)
    job = str(props["slurm.job_id"])
    assert job.isdigit(), props
    assert props["slurm.partition"] == "debug"
    assert props["slurm.nodes"] == os.uname().nodename.split(".")[0]
    assert found["metrics"] == {"score": 0.5}
    row = _row(ws, run_id)  # a job of a fraction of a second was seen Running, when it was
    assert row["start_utc"] is not None, row
    assert float(row["created_utc"]) < float(row["start_utc"]) <= float(row["end_utc"]), row
    log = _log(rig, run_id, tmp_path)
    assert f"job-start {run_id} {job}" in log, log
    assert "cuda=unset" in log  # no GPUs asked, none given
    # The run's own workspace lived on the node's local disk, its folder in shared_dir
    # held what the login node streamed back: both are gone once the run is stored.
    assert not list(Path("/tmp").glob(f"runner-*/{run_id}-*"))
    assert not (shared / "runs" / run_id).exists()
    assert _as_jobrunner("squeue", "-h", "-j", job, "--states=all", "-o", "%T") == "COMPLETED"


def test_cancel_reaches_a_setsid_grandchild_that_ignores_term(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "grandchild")
    wait_status(rig, run_id, ("Running",), 120)

    def grandchild() -> int | None:
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            cmd = proc.info["cmdline"] or []
            if cmd[:2] == ["sleep", "300"] and proc.ppid() != 0:
                with contextlib.suppress(psutil.Error):
                    if proc.environ().get("RUNNER_RUN_ID") == run_id:
                        return int(proc.pid)
        return None

    pid = wait_until(grandchild, 60, 0.1, message="the setsid grandchild")
    t0 = time.monotonic()
    proc = run_cli("run", "cancel", "-r", run_id, env={"RUNNER_WORKSPACE": str(ws)})
    assert proc.returncode == 0, proc.stderr
    assert wait_status(rig, run_id, TERMINAL, 60) == "Canceled"
    grace = 2
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
        grace + KILL_WAIT_S + 10,
        0.1,
        message="the grandchild to be killed",
    )
    took = time.monotonic() - t0
    assert took < grace + KILL_WAIT_S + 10, took
    assert "job-end" not in _log(rig, run_id, tmp_path)


def test_a_pending_job_is_queued_with_slurms_reason_and_cancels(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    cpus = str(os.cpu_count() or 2)
    blocker = _as_jobrunner(
        "sbatch", "--parsable", "-c", cpus, "-o", "/dev/null", "--wrap", "sleep 120"
    )
    try:
        wait_until(lambda: _squeue(blocker) == "RUNNING", 30, 0.1, message="the blocker runs")
        run_id = _submit(ws, _source(tmp_path), "quick")

        def queued_with_reason() -> str | None:
            row = _row(ws, run_id)
            details_text = str(row.get("status_details") or "")
            waiting = "(Resources)" in details_text or "(Priority)" in details_text
            return details_text if row.get("status") == "Queued" and waiting else None

        said = wait_until(queued_with_reason, 60, 0.1, message="Queued with Slurm's reason")
        assert said.startswith(f"Slurm job {_job_of(shared, run_id)} is pending ("), said
        job = (shared / "runs" / run_id / "job").read_text().strip()
        assert _squeue(job) == "PENDING"
        proc = run_cli("run", "cancel", "-r", run_id, env={"RUNNER_WORKSPACE": str(ws)})
        assert proc.returncode == 0, proc.stderr
        assert wait_status(rig, run_id, TERMINAL, 60) == "Canceled"
        wait_until(lambda: _squeue(job) in ("", "CANCELLED"), 30, 0.1, message="job removed")
        assert _row(ws, run_id)["start_utc"] is None  # it never ran
    finally:
        subprocess.run(["scancel", blocker], capture_output=True, check=False)


def test_impossible_requests_are_refused_at_submit(
    slurm_cluster: Cluster, slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    slurm_cluster.attach(ws, "big-memory", sbatch_args=["--mem=100000000"])
    slurm_cluster.attach(ws, "cpu-only", partition="nogpu")
    src = _source(tmp_path)
    two_nodes = "cfg.distributed_job_config = PyTorchConfiguration(process_count=2, node_count=2)"
    refused = _submit(ws, src, "quick", extra=two_nodes)
    assert refused.startswith("REFUSED TargetUnavailableError"), refused
    assert "Slurm would never run this job" in refused, refused
    assert "--nodes=2" in refused, refused
    memory = _submit(ws, src, "quick", target="big-memory")
    assert "Slurm would never run this job" in memory, memory
    assert "--mem=100000000" in memory, memory
    no_gpus = _submit(ws, src, "quick", gpus=1, target="cpu-only")
    assert no_gpus.startswith("REFUSED TargetUnavailableError"), no_gpus
    assert "partition 'nogpu' has no GPUs" in no_gpus, no_gpus
    too_many = _submit(ws, src, "quick", gpus=3)
    assert "Slurm would never run this job" in too_many, too_many
    listed = run_code(
        "import sys; from runner import Workspace, Experiment\n"
        "print(len(list(Experiment(Workspace(sys.argv[1]), 'slurm').get_runs())))",
        ws,
    )
    assert listed.stdout.strip() == "0", listed.stdout + listed.stderr


def test_gpus_come_from_slurm_as_cuda_visible_devices_fake_gpus(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    rig = _rig(ws)
    src = _source(tmp_path)
    one = _submit(ws, src, "quick", gpus=1)
    two = _submit(ws, src, "quick", gpus=2)
    assert wait_status(rig, one, TERMINAL, 120) == "Completed"
    assert wait_status(rig, two, TERMINAL, 120) == "Completed"
    assert "cuda=0\n" in _log(rig, one, tmp_path) or "cuda=1\n" in _log(rig, one, tmp_path)
    assert "cuda=0,1\n" in _log(rig, two, tmp_path)


def test_a_daemon_killed_between_sbatch_and_the_record_finds_the_job_by_name(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    """The state a daemon leaves when killed right after sbatch: the run's handle still
    says 'launching' and the job id is not in its folder. The next daemon finds the job by
    its name, follows it to its end, and never submits it again."""
    ws, shared = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "sleep", 4)
    wait_status(rig, run_id, ("Running",), 120)
    pid = daemon_pid(ws)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: daemon_pid(ws) is None, 10, 0.05, message="the daemon to die")
    job_file = shared / "runs" / run_id / "job"
    job = job_file.read_text().strip()
    job_file.unlink()
    launching = {"kind": "launching", "target": "slurm", "daemon": "dead", "gpus": ""}
    with contextlib.closing(sqlite3.connect(ws / "runner.db", timeout=30)) as conn, conn:
        conn.execute(
            "UPDATE runs SET handle = ?, status = 'Queued' WHERE id = ?",
            (json.dumps(launching), run_id),
        )
    started = run_cli("daemon", "start", env={"RUNNER_WORKSPACE": str(ws)}, timeout_s=60)
    assert started.returncode == 0, started.stderr
    assert wait_status(rig, run_id, TERMINAL, 120) == "Completed", details(rig, run_id)
    assert json.loads(str(_row(ws, run_id)["handle"]))["job_id"] == job
    log = _log(rig, run_id, tmp_path)
    assert log.count("job-start") == 1, log
    assert "job-end" in log
    jobs = _as_jobrunner("squeue", "-h", "--states=all", "-n", f"runner-{run_id}", "-o", "%i")
    assert jobs.split() == [job]
    assert status_of(rig, run_id) == "Completed"


RECORDS = """
import os
from runner import Run, ScriptRunConfig
run = Run.get_context()
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.pkl", "w") as f:
    f.write("weights")
run.upload_file("outputs/model.pkl", "outputs/model.pkl")
print("model", run.register_model("net", "outputs/model.pkl").version, flush=True)
child = run.submit_child(ScriptRunConfig(".", "child.py"))
print("child", child.id, flush=True)
"""

RECORDS_CHECK = """
import json, sys
from runner import Model, Run, Workspace
ws = Workspace(sys.argv[1])
parent = Run.get(ws, sys.argv[2])
children = list(parent.get_children())
child = children[0]
child.wait_for_completion()
model = Model(ws, "net")
print("CHECK " + json.dumps({
    "version": model.version, "children": len(children), "child": child.get_status(),
    "target": child.get_details()["target"], "metrics": child.get_metrics()}))
"""


def test_a_script_on_the_cluster_registers_models_and_submits_children_here(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    rig = _rig(ws)
    src = _source(tmp_path)
    (src / "records.py").write_text(textwrap.dedent(RECORDS), encoding="utf-8")
    (src / "child.py").write_text(
        "from runner import Run\nRun.get_context().log('child', 1)\n", encoding="utf-8"
    )
    code = (
        SUBMIT.replace("{env_code}", textwrap.dedent(ENV_CODE))
        .replace("{extra}", "")
        .replace('"job.py"', '"records.py"')
    )
    proc = run_code(code, ws, src, "cluster", 0, timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split("RUN ", 1)[1].split()[0]
    assert wait_status(rig, run_id, TERMINAL, 120) == "Completed", details(rig, run_id)
    checked = run_code(RECORDS_CHECK, ws, run_id, timeout_s=180)
    assert checked.returncode == 0, checked.stderr
    found = json.loads(checked.stdout.split("CHECK ", 1)[1])
    assert found == {
        "version": 1,
        "children": 1,
        "child": "Completed",
        "target": "cluster",
        "metrics": {"child": 1},
    }


RANKS = """
import os, sys
from runner import Run
run = Run.get_context()
rank = int(os.environ["RANK"])
print("rank", rank, "of", os.environ["WORLD_SIZE"], "local", os.environ["LOCAL_RANK"],
      "master", os.environ["MASTER_ADDR"], flush=True)
run.log("rank_seen", rank)
run.tag(f"rank{rank}", "here")
sys.exit(3 if sys.argv[1] == "fail" and rank == 1 else 0)
"""


def test_a_distributed_job_runs_its_ranks_as_srun_tasks(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    rig = _rig(ws)
    src = _source(tmp_path)
    (src / "job.py").write_text(textwrap.dedent(RANKS), encoding="utf-8")
    two = "cfg.distributed_job_config = PyTorchConfiguration(process_count=2)"
    good = _submit(ws, src, "ok", extra=two)
    bad = _submit(ws, src, "fail", extra=two)
    assert wait_status(rig, good, TERMINAL, 120) == "Completed", details(rig, good)
    found = details(rig, good)
    assert sorted(found["metrics"]["rank_seen"]) == [0, 1]  # type: ignore[index]
    files = found["files"]
    assert "azureml-logs/70_driver_log_0.txt" in files  # type: ignore[operator]
    assert "azureml-logs/70_driver_log_1.txt" in files  # type: ignore[operator]
    log = _log(rig, good, tmp_path)
    host = os.uname().nodename.split(".")[0]
    assert f"[rank 0] rank 0 of 2 local 0 master {host}" in log, log
    assert f"[rank 1] rank 1 of 2 local 1 master {host}" in log, log
    tags = run_code(
        "import json, sys; from runner import Run, Workspace\n"
        "print(json.dumps(Run.get(Workspace(sys.argv[1]), sys.argv[2]).get_tags()))",
        ws,
        good,
    )
    assert {"rank0": "here", "rank1": "here"}.items() <= json.loads(tags.stdout).items()
    assert wait_status(rig, bad, TERMINAL, 120) == "Failed"
    assert "rank 1 of the distributed run exited with code 3" in str(details(rig, bad)["error"])


def test_scancel_outside_runner_ends_the_run_canceled(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "sleep", 120)
    wait_status(rig, run_id, ("Running",), 120)
    job = _job_of(shared, run_id)
    _as_jobrunner("scancel", job)
    assert wait_status(rig, run_id, TERMINAL, 60) == "Canceled"
    assert _row(ws, run_id)["status_details"] == f"Slurm job {job} was cancelled in Slurm (scancel)"


def test_max_run_duration_is_slurms_time_limit_and_runners_cancel(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    limit = "cfg.run_config.max_run_duration_seconds = 3"
    run_id = _submit(ws, _source(tmp_path), "sleep", 120, extra=limit)
    wait_status(rig, run_id, ("Running",), 120)
    job = _job_of(shared, run_id)
    shown = _as_jobrunner("squeue", "-h", "-j", job, "-o", "%l")
    assert shown == "1:00", shown  # Slurm counts whole minutes: runner's own cancel is exact
    assert wait_status(rig, run_id, TERMINAL, 30) == "Canceled"
    row = _row(ws, run_id)
    assert "exceeded max_run_duration_seconds=3" in str(row["status_details"]), row
    ran = float(row["end_utc"]) - float(row["start_utc"])  # type: ignore[arg-type]
    assert 3 <= ran < 3 + 2 + KILL_WAIT_S + 5, ran


TICKS = """
import time
from runner import Run
run = Run.get_context()
for i in range(24):
    print("tick", i, flush=True)
    run.log("tick", i)
    time.sleep(0.5)
"""

#: iptables rules that drop the login node's traffic (the test sshd's port), both ways.
CUT = [
    ["INPUT", "-i", "lo", "-p", "tcp", "--dport", "2222", "-j", "DROP"],
    ["OUTPUT", "-o", "lo", "-p", "tcp", "--sport", "2222", "-j", "DROP"],
]


def _iptables(action: str, rule: list[str]) -> None:
    subprocess.run(["iptables", action, *rule], capture_output=True, check=action == "-I")


def test_a_lost_link_to_the_login_node_is_not_responding_then_nothing_is_lost(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    """The login node's port goes dark (packets dropped both ways, as a pulled cable) while
    the job runs: the run becomes NotResponding, the job goes on, and once the link is back
    the log and the metrics arrive whole, nothing doubled."""
    if os.geteuid() != 0:
        pytest.skip("cutting the login node's link needs root (iptables)")
    ws, _ = slurm_ws
    rig = _rig(ws)
    src = _source(tmp_path)
    (src / "job.py").write_text(textwrap.dedent(TICKS), encoding="utf-8")
    run_id = _submit(ws, src)
    wait_status(rig, run_id, ("Running",), 120)
    try:
        for rule in CUT:
            _iptables("-I", rule)
        wait_status(rig, run_id, ("NotResponding",), 30)
        time.sleep(2)
    finally:
        for rule in CUT:
            _iptables("-D", rule)
    assert wait_status(rig, run_id, TERMINAL, 120) == "Completed", details(rig, run_id)
    found = details(rig, run_id)
    assert found["metrics"]["tick"] == list(range(24)), found  # type: ignore[index]
    log = _log(rig, run_id, tmp_path)
    assert [line for line in log.splitlines() if line.startswith("tick")] == [
        f"tick {i}" for i in range(24)
    ], log


def test_a_pending_reason_that_never_clears_fails_the_run(
    slurm_cluster: Cluster, slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    """Partition ``short`` allows one minute; a run asking for ten passes sbatch's check
    (the partition does not enforce its limit at submit) and would wait for ever."""
    ws, _ = slurm_ws
    rig = _rig(ws)
    slurm_cluster.attach(ws, "short", partition="short")
    limit = "cfg.run_config.max_run_duration_seconds = 600"
    run_id = _submit(ws, _source(tmp_path), "quick", target="short", extra=limit)
    assert wait_status(rig, run_id, TERMINAL, 60) == "Failed"
    error = str(details(rig, run_id)["error"])
    assert "Slurm will never start job" in error, error
    assert "PartitionConfig" in error or "PartitionTimeLimit" in error, error
    job = error.split("Slurm will never start job ", 1)[1].split(":")[0]
    wait_until(lambda: _squeue(job) in ("", "CANCELLED"), 30, 0.1, message="job removed")


def test_a_suspended_job_is_not_responding_until_it_resumes(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "sleep", 6)
    wait_status(rig, run_id, ("Running",), 120)
    job = _job_of(shared, run_id)
    subprocess.run(["scontrol", "suspend", job], check=True, capture_output=True)
    try:
        wait_status(rig, run_id, ("NotResponding",), 30)
        assert _row(ws, run_id)["status_details"] == f"Slurm job {job} is SUSPENDED"
    finally:
        subprocess.run(["scontrol", "resume", job], check=False, capture_output=True)
    wait_status(rig, run_id, ("Running", "Finalizing", "Completed"), 30)
    assert wait_status(rig, run_id, TERMINAL, 60) == "Completed", details(rig, run_id)


GREEDY = """
chunks = []
for _ in range(100):
    chunks.append(bytearray(20 << 20))
print("survived", flush=True)
"""


def test_a_job_killed_for_memory_fails_saying_so(
    slurm_cluster: Cluster, slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    ws, _ = slurm_ws
    rig = _rig(ws)
    slurm_cluster.attach(ws, "small", sbatch_args=["--mem=64M"])
    src = _source(tmp_path)
    (src / "job.py").write_text(textwrap.dedent(GREEDY), encoding="utf-8")
    run_id = _submit(ws, src, target="small")
    assert wait_status(rig, run_id, TERMINAL, 120) == "Failed"
    error = str(details(rig, run_id)["error"])
    assert "ran out of memory (OUT_OF_MEMORY)" in error, error
    assert "survived" not in _log(rig, run_id, tmp_path)


def test_the_cli_attaches_a_cluster_after_checking_it(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    login = slurm_cluster.login
    ws = tmp_path / "ws"
    made = run_code("import sys; from runner import Workspace; Workspace.create(sys.argv[1])", ws)
    assert made.returncode == 0, made.stderr
    (ws / "ssh").mkdir(mode=0o700, exist_ok=True)
    (ws / "ssh" / "known_hosts").write_text(login.known_hosts.read_text())
    shared = SHARED_ROOT / f"cli-{tmp_path.name}"  # made by the login user at attach
    base = [
        "target", "attach", "hpc", "--kind", "slurm", "--address", login.address,
        "--ssh-port", str(login.port), "--username", login.user,
        "--private-key-file", str(login.key),
    ]  # fmt: skip
    env = {"RUNNER_WORKSPACE": str(ws)}
    no_dir = run_cli(*base, env=env)
    assert no_dir.returncode == 2, no_dir.stderr
    assert no_dir.stderr.strip().splitlines() == [
        "runner: error: --kind slurm needs --shared-dir DIR: a folder every node of the "
        "cluster sees"
    ]
    bad = run_cli(*base, "--shared-dir", str(shared), "--partition", "nope", env=env)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "has no partition 'nope'" in bad.stderr, bad.stderr
    unwritable = run_cli(*base, "--shared-dir", "/root/not-for-jobrunner", env=env)
    assert unwritable.returncode != 0
    assert "is not writable by jobrunner@" in unwritable.stderr, unwritable.stderr
    listed = run_cli("target", "list", env=env)
    assert [t["name"] for t in json.loads(listed.stdout)] == ["local"]  # nothing recorded
    good = run_cli(
        *base, "--shared-dir", str(shared), "--partition", "debug",
        "--sbatch-arg=--mem=512M", env=env,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    row = json.loads(good.stdout)
    assert row["type"] == "slurm"
    assert row["partition"] == "debug"
    assert row["sharedDir"] == str(shared)
    assert row["sbatchArgs"] == ["--mem=512M"]
    assert shared.is_dir()
    shutil.rmtree(shared, ignore_errors=True)


POLITE = """
import signal, sys, time
from runner import Run
run = Run.get_context()

def stop(signum, frame):
    print("got TERM, saving", flush=True)
    run.log("saved", 1)
    run.flush()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("waiting", flush=True)
time.sleep(120)
"""


def test_cancel_gives_the_script_its_sigterm_first(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    """runner's TERM reaches the script itself (Slurm signals only the task it started),
    which saves and exits within the grace period: Canceled at once, what it saved kept."""
    ws, _ = slurm_ws
    rig = _rig(ws)
    src = _source(tmp_path)
    (src / "job.py").write_text(textwrap.dedent(POLITE), encoding="utf-8")
    run_id = _submit(ws, src)
    wait_status(rig, run_id, ("Running",), 120)
    wait_until(lambda: "waiting" in _stored_log(ws, run_id), 30, 0.1, message="the script")
    t0 = time.monotonic()
    proc = run_cli("run", "cancel", "-r", run_id, env={"RUNNER_WORKSPACE": str(ws)})
    assert proc.returncode == 0, proc.stderr
    assert wait_status(rig, run_id, TERMINAL, 30) == "Canceled"
    assert time.monotonic() - t0 < 2 + 1.5  # within the grace (2 s), not after KillWait
    assert "got TERM, saving" in _log(rig, run_id, tmp_path)
    assert details(rig, run_id)["metrics"] == {"saved": 1}


def _stored_log(ws: Path, run_id: str) -> str:
    """The driver log as the daemon has it so far."""
    path = ws / "runs" / run_id / "logs" / "70_driver_log.txt"
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_node_that_fails_under_the_job_fails_the_run_saying_so(
    slurm_ws: tuple[Path, Path], tmp_path: Path
) -> None:
    """The job's node is set DOWN (as slurmctld does when a node stops answering): Slurm
    ends the job NODE_FAIL, and the run fails naming it, not as the script's failure."""
    ws, _ = slurm_ws
    rig = _rig(ws)
    run_id = _submit(ws, _source(tmp_path), "sleep", 120)
    wait_status(rig, run_id, ("Running",), 120)
    node = os.uname().nodename.split(".")[0]
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=down", "reason=runner-test"],
            check=True,
            capture_output=True,
        )
        assert wait_status(rig, run_id, TERMINAL, 60) == "Failed"
    finally:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=resume"],
            check=False,
            capture_output=True,
        )
        wait_until(slurm_idle, 30, 0.2, message="the node back in service")
    error = str(details(rig, run_id)["error"])
    assert "a node of the job failed (NODE_FAIL)" in error, error
    wait_until(lambda: not run_processes(run_id), 30, 0.1, message="the job's processes gone")
