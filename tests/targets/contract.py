"""The contract every target keeps: ONE suite, run through separate processes for each
target (local, docker, ssh, and the FakeTarget; later slurm, ray).

A ``Rig`` says how to reach one target from a workspace (the compute target to submit
to, the environment, the variables the submitting process needs); ``test_contract.py``
makes one per target and runs every scenario below with it. Each scenario submits from a
process that exits at once, acts from other processes, and checks the outcome from yet
another one: the test process holds no workspace, connection or daemon open.

A new target passes this suite before it is registered (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.helpers import daemon_pid, run_cli, run_code, wait_until

TERMINAL = ("Completed", "Failed", "Canceled")


@dataclass(frozen=True)
class Rig:
    """One target, ready in a workspace."""

    name: str  #: the target kind (the test id)
    ws: Path  #: the workspace folder, the compute target attached
    compute: str  #: ``compute_target=`` of the runs
    #: Python lines that set ``env`` (an Environment) for the run; "" for the default one
    env_code: str = ""
    #: variables of every process of the test (RUNNER_TARGETS for a plugin target...)
    variables: Mapping[str, str] = field(default_factory=dict)
    #: seconds a run may take to start and end (an image build, a host's first session)
    patience_s: float = 90.0


SUBMIT = """
import sys
from runner import Environment, Experiment, ScriptRunConfig, Workspace

ws = Workspace(sys.argv[1])
cfg = ScriptRunConfig(sys.argv[2], "job.py", arguments=sys.argv[4:], compute_target=sys.argv[3])
env = None
{env_code}
if env is not None:
    cfg.run_config.environment = env
cfg.run_config.cancel_grace_seconds = 2
print("RUN", Experiment(ws, "contract").submit(cfg).id)
"""

DETAILS = """
import json, sys
from runner import Run, Workspace

run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
details = run.get_details()
out = {
    "status": run.get_status(),
    "error": (details.get("error") or {}).get("error", {}).get("message"),
    "metrics": run.get_metrics(),
    "files": run.get_file_names(),
    "properties": run.get_properties(),
}
if len(sys.argv) > 3:
    dest = sys.argv[3]
    for name in out["files"]:
        if name.startswith("outputs/") or name == "azureml-logs/70_driver_log.txt":
            run.download_file(name, dest + "/" + name)
print("DETAILS " + json.dumps(out))
"""

JOB = """
import os, sys, time
from runner import Run

run = Run.get_context()
mode = sys.argv[1]
print("contract-start", run.id, flush=True)
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
os.makedirs("outputs", exist_ok=True)
with open("outputs/result.txt", "w") as f:
    f.write("made by " + run.id)
run.log("score", 0.5)
print("contract-end", flush=True)
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


def source(tmp: Path) -> Path:
    """A source folder with the contract's job."""
    folder = tmp / f"src-{len(list(tmp.glob('src-*')))}"
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent(JOB), encoding="utf-8")
    return folder


def submit(rig: Rig, src: Path, *args: object) -> str:
    """Submit from a process of its own, which exits at once; the run's id."""
    code = SUBMIT.replace("{env_code}", textwrap.dedent(rig.env_code))
    proc = run_code(code, rig.ws, src, rig.compute, *args, env=rig.variables, timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    return next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RUN "))


def details(rig: Rig, run_id: str, download: Path | None = None) -> dict[str, object]:
    """The run as another process sees it."""
    args: list[object] = [rig.ws, run_id] + ([download] if download else [])
    proc = run_code(DETAILS, *args, env=rig.variables, timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DETAILS "))
    found: dict[str, object] = json.loads(line[len("DETAILS ") :])
    return found


def status_of(rig: Rig, run_id: str) -> str:
    """The run's status, read from the store by this process (nothing kept open)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{rig.ws / 'runner.db'}?mode=ro", uri=True, timeout=30)
    ) as conn:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(row[0]) if row else "?"


def wait_status(rig: Rig, run_id: str, wanted: tuple[str, ...], timeout_s: float) -> str:
    """Wait until the run's status is one of ``wanted``."""

    def reached() -> str | None:
        status = status_of(rig, run_id)
        return status if status in wanted else None

    return wait_until(reached, timeout_s, 0.1, message=f"run {run_id} to reach {wanted}")


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live processes carrying the run's id (here, in containers, on loopback hosts)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.status() != psutil.STATUS_ZOMBIE
                and proc.environ().get("RUNNER_RUN_ID") == run_id
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def driver_log(rig: Rig, run_id: str, tmp: Path) -> str:
    """The stored driver log of an ended run."""
    folder = tmp / f"dl-{run_id}"
    details(rig, run_id, folder)
    return (folder / "azureml-logs" / "70_driver_log.txt").read_text(encoding="utf-8")


# -- the scenarios -------------------------------------------------------------------------


def completes_with_logs_metrics_and_outputs(rig: Rig, tmp: Path) -> None:
    """A run that exits 0 ends Completed with its log, metric and ./outputs stored."""
    run_id = submit(rig, source(tmp), "quick", 0, 0)
    assert wait_status(rig, run_id, TERMINAL, rig.patience_s) == "Completed", details(rig, run_id)
    folder = tmp / "got"
    found = details(rig, run_id, folder)
    assert found["metrics"] == {"score": 0.5}
    assert "outputs/result.txt" in found["files"]  # type: ignore[operator]
    assert (folder / "outputs" / "result.txt").read_text() == f"made by {run_id}"
    log = (folder / "azureml-logs" / "70_driver_log.txt").read_text()
    assert f"contract-start {run_id}" in log, log
    assert "contract-end" in log, log


def fails_with_the_scripts_exit_code(rig: Rig, tmp: Path) -> None:
    """A run that exits 3 ends Failed, saying so; what it stored is kept."""
    run_id = submit(rig, source(tmp), "quick", 0, 3)
    assert wait_status(rig, run_id, TERMINAL, rig.patience_s) == "Failed"
    found = details(rig, run_id)
    assert "exited with code 3" in str(found["error"]), found
    assert found["metrics"] == {"score": 0.5}
    assert "outputs/result.txt" in found["files"]  # type: ignore[operator]


def cancel_ends_the_whole_run(rig: Rig, tmp: Path) -> None:
    """Canceled from another process while it runs: Canceled, and nothing of it is left."""
    run_id = submit(rig, source(tmp), "sleep", 120, 0)
    wait_status(rig, run_id, ("Running",), rig.patience_s)
    wait_until(lambda: run_processes(run_id), 30, 0.1, message=f"run {run_id}'s processes")
    proc = run_cli(
        "run", "cancel", "-r", run_id, env={**rig.variables, "RUNNER_WORKSPACE": str(rig.ws)}
    )
    assert proc.returncode == 0, proc.stderr
    assert wait_status(rig, run_id, TERMINAL, 60) == "Canceled"
    assert not run_processes(run_id)
    assert "contract-end" not in driver_log(rig, run_id, tmp)


def outlives_a_killed_daemon(rig: Rig, tmp: Path) -> None:
    """The daemon is SIGKILLed while the run runs; the next daemon re-adopts it (it is not
    started again) and records its end."""
    run_id = submit(rig, source(tmp), "sleep", 4, 0)
    wait_status(rig, run_id, ("Running",), rig.patience_s)
    pid = daemon_pid(rig.ws)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: daemon_pid(rig.ws) is None, 10, 0.05, message="the daemon to die")
    time.sleep(0.5)
    started = run_cli(
        "daemon", "start", env={**rig.variables, "RUNNER_WORKSPACE": str(rig.ws)}, timeout_s=60
    )
    assert started.returncode == 0, started.stderr
    assert wait_status(rig, run_id, TERMINAL, rig.patience_s) == "Completed", details(rig, run_id)
    log = driver_log(rig, run_id, tmp)
    assert log.count("contract-start") == 1, log
    assert "contract-end" in log, log


SCENARIOS = (
    completes_with_logs_metrics_and_outputs,
    fails_with_the_scripts_exit_code,
    cancel_ends_the_whole_run,
    outlives_a_killed_daemon,
)
