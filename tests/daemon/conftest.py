"""Fixtures for the GPU box: fake GPUs, daemon settings, runs that hold their slots until
released, and a teardown that stops the workspace daemons a test started.

- ``fake_nvml_lib`` compiles ``fake_nvml.c`` (a stand-in ``libnvidia-ml.so.1`` that the
  real nvidia-ml-py code loads) with gcc once per session; ``fake_gpus`` puts it on
  ``LD_LIBRARY_PATH`` with ``FAKE_NVML_GPUS=4`` for every process the test starts
  (the daemon discovers GPUs in its own process, at start).
- The daemon double-forks: it is no child of the test process, so the leak check of
  ``tests/conftest.py`` cannot see it or its runs. At teardown every daemon of a
  workspace under ``tmp_path`` is stopped, and no process carrying ``RUNNER_RUN_ID``
  with such a workspace in its environment may be left (leftovers are killed and fail
  the test).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner import daemon_client
from runner.config import ScriptRunConfig
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import Workspace
from tests.helpers import (
    REPO,
    SCRIPTS,
    alarm_deadline,
    daemon_pid,
    run_processes_under,
    stop_daemons_under,
    wait_until,
)

FAKE_NVML_C = Path(__file__).resolve().with_name("fake_nvml.c")
TERMINAL = {"Completed", "Failed", "Canceled"}
#: No test here may take longer (the 1,000-run test gets SLOW_DEADLINE_S): a hung wait
#: fails the test with its traceback instead of hanging the session.
DEADLINE_S = 90
SLOW_DEADLINE_S = 300


# -- fake GPUs -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the stand-in ``libnvidia-ml.so.1``, built from fake_nvml.c."""
    folder = tmp_path_factory.mktemp("fake-nvml")
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "the GPU tests compile tests/daemon/fake_nvml.c: install gcc"
    lib = folder / "libnvidia-ml.so.1"
    proc = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(lib), str(FAKE_NVML_C)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"gcc failed:\n{proc.stderr}"
    return folder


@dataclass
class FakeGpus:
    """The fake NVML of this test: its library folder, GPU count and load file."""

    lib_dir: Path
    count: int
    state: Path

    def set_load(self, loads: dict[int, tuple[int, int]]) -> None:
        """Simulate load: GPU index -> (memory used MiB, utilization %)."""
        text = "".join(f"{i} {used} {util}\n" for i, (used, util) in loads.items())
        tmp = self.state.with_name(self.state.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state)

    def env(self) -> dict[str, str]:
        """The variables that make a process see these GPUs."""
        return {
            "LD_LIBRARY_PATH": str(self.lib_dir),
            "FAKE_NVML_GPUS": str(self.count),
            "FAKE_NVML_STATE": str(self.state),
        }


@pytest.fixture
def fake_gpus(fake_nvml_lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGpus:
    """Four fake GPUs for every process this test starts (set before the first submit)."""
    gpus = FakeGpus(fake_nvml_lib, 4, tmp_path / "nvml-state")
    gpus.set_load({})
    for name, value in gpus.env().items():
        monkeypatch.setenv(name, value)
    return gpus


# -- daemon settings and teardown ----------------------------------------------------------


def configure(
    ws: Workspace,
    *,
    gpus: str | None = None,
    max_concurrent: int | None = None,
    system_metrics_s: float = 0,
) -> None:
    """Write WS/daemon/settings.json (what ``runner daemon start`` writes) before the
    daemon starts. System metrics are off unless asked for."""
    settings: dict[str, Any] = {"system_metrics_s": system_metrics_s}
    if gpus is not None:
        settings["gpus"] = gpus
    if max_concurrent is not None:
        settings["max_concurrent"] = max_concurrent
    folder = daemon_client.daemon_dir(ws.path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings))


def kill_daemon(ws_path: Path) -> int:
    """kill -9 the workspace's daemon; returns its pid once it is gone."""
    pid = daemon_pid(ws_path)
    assert pid is not None, f"no daemon runs for {ws_path}"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: daemon_pid(ws_path) != pid, 10, message=f"daemon {pid} to die")
    wait_until(lambda: not daemon_client._lock_held(ws_path), 10, message="the daemon lock")
    return pid


def daemon_status(ws_path: Path) -> dict[str, Any]:
    """What ``runner daemon status`` reports."""
    return daemon_client.request(ws_path, {"op": "status"})


def daemon_log(ws_path: Path) -> str:
    """The tail of the daemon's log (for failure messages)."""
    try:
        return (ws_path / "daemon" / "daemon.log").read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "(exited)"


@pytest.fixture(autouse=True)
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a stuck test instead of hanging the session (slow tests get longer)."""
    with alarm_deadline(SLOW_DEADLINE_S if request.node.get_closest_marker("slow") else DEADLINE_S):
        yield


@pytest.fixture(autouse=True)
def stop_daemons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop the daemons this test started; fail if any process of a run is left."""
    # A daemon started on demand exits soon after the test even if teardown fails.
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    yield
    problems = stop_daemons_under(tmp_path)
    # Release every run still waiting for the test, then give them a moment to end.
    for markers in tmp_path.glob("markers*"):
        (markers / "all.release").touch()
    deadline_at = time.monotonic() + 10.0
    while (left := run_processes_under(tmp_path)) and time.monotonic() < deadline_at:
        time.sleep(0.02)
    if left:
        problems.append(
            "processes of runs outlived the test: "
            + ", ".join(f"{p.pid} {_cmdline(p)}" for p in left)
        )
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# -- building and watching runs ------------------------------------------------------------


class Box:
    """Builds runs of the gb_* scripts and reads what they recorded."""

    def __init__(self, tmp_path: Path, exp: Experiment) -> None:
        self.exp = exp
        self.ws: Workspace = exp.workspace
        self.markers = tmp_path / "markers"
        self.markers.mkdir(exist_ok=True)
        self.src = tmp_path / "src"
        self.src.mkdir(exist_ok=True)
        for name in ("gb_common.py", "gb_hold.py", "gb_once.py", "gb_memory.py"):
            shutil.copy(SCRIPTS / name, self.src / name)

    def config(
        self,
        script: str = "gb_hold.py",
        arguments: Sequence[Any] = (),
        gpu_count: int = 0,
        priority: int = 0,
        env: dict[str, str] | None = None,
    ) -> ScriptRunConfig:
        """A ScriptRunConfig of a gb_* script, with the markers folder as first argument."""
        cfg = ScriptRunConfig(str(self.src), script, arguments=[str(self.markers), *arguments])
        cfg.run_config.gpu_count = gpu_count
        cfg.run_config.priority = priority
        cfg.run_config.environment_variables = dict(env or {})
        cfg.run_config.cancel_grace_seconds = 1.0
        return cfg

    def submit(self, gpu_count: int = 0, priority: int = 0, *arguments: Any) -> Run:
        """Submit a gb_hold.py run (it holds its slot until released)."""
        return self.exp.submit(self.config("gb_hold.py", arguments, gpu_count, priority))

    def started(self, run: Run) -> dict[str, Any] | None:
        """What the run recorded when it started (its GPU view), or None."""
        return self._read(run, "started")

    def ended(self, run: Run) -> dict[str, Any] | None:
        """What the run recorded just before it ended, or None."""
        return self._read(run, "ended")

    def _read(self, run: Run, suffix: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.markers / f"{run.id}.{suffix}").read_text())
        except FileNotFoundError:
            return None
        return data

    def wait_started(self, run: Run, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until the run's script runs; its GPU view."""
        try:
            view = wait_until(
                lambda: self.started(run), timeout_s, message=f"run {run.id} to start"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; it is {raw_status(run)}; daemon log:\n{daemon_log(self.ws.path)}"
            ) from None
        assert view is not None
        return view

    def release(self, *runs: Run) -> None:
        """Let held runs end."""
        for run in runs:
            (self.markers / f"{run.id}.release").touch()

    def gpus_of(self, run: Run) -> set[int]:
        """The GPU indices a started run was given (from CUDA_VISIBLE_DEVICES)."""
        view = self.started(run)
        assert view is not None, f"run {run.id} has not started"
        return {int(g) for g in (view["cuda"] or "").split(",") if g}


@pytest.fixture
def box(tmp_path: Path, exp: Experiment) -> Box:
    """The builder of this test's runs."""
    return Box(tmp_path, exp)


def raw_status(run: Run) -> tuple[str, str | None]:
    """(status, details) straight from the database, without the heartbeat check that
    ``get_status()`` does (which would start a daemon)."""
    row = run._store.get_run(run.id)
    assert row is not None
    return row.status, row.status_details


def wait_status(run: Run, *statuses: str, timeout_s: float = 30.0) -> str:
    """Poll the run's raw status until it is one of ``statuses``."""

    def reached() -> str | None:
        status = raw_status(run)[0]
        return status if status in statuses else None

    status = wait_until(reached, timeout_s, message=f"run {run.id} to be {'/'.join(statuses)}")
    assert status is not None
    return status


def wait_details(run: Run, fragment: str, timeout_s: float = 30.0, exact: bool = False) -> str:
    """Wait until ``get_detailed_status()`` details contain ``fragment`` (are exactly
    ``fragment`` with ``exact``); the details."""

    def reached() -> str | None:
        details = run.get_detailed_status()["details"] or ""
        return details if (details == fragment if exact else fragment in details) else None

    details = wait_until(reached, timeout_s, message=f"details of run {run.id} to say {fragment!r}")
    assert details is not None
    return details


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGV`` as a separate process (it discovers GPUs itself)."""
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [full.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )
