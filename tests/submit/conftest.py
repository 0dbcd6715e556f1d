"""Fixtures for script runs: source folders of real scripts, markers, status recording,
and a teardown that stops every workspace daemon a test started and proves that no
process of any run outlived the test.

The daemon double-forks, so it is no child of the test process and the leak check of
``tests/conftest.py`` cannot see it or the runs it launched. Here:

- ``SR_PIDS`` (set before anything is submitted, so the daemon and every run inherit
  it) names a folder where each ``tests/scripts/sr_*`` process records its pid and
  kernel start time;
- at teardown every daemon of a workspace under ``tmp_path`` is woken (SIGCONT, in case
  a test stopped it) and stopped with ``daemon_client.stop_daemon``; then no recorded
  process, and no process carrying ``RUNNER_RUN_ID`` with a workspace under ``tmp_path``
  in its environment, may be left. Leftovers are killed (so later tests start clean)
  and fail the test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from runner.config import ScriptRunConfig
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import Workspace
from tests.helpers import (
    SCRIPTS,
    StatusRecorder,
    alarm_deadline,
    alive_recorded,
    end_leftover_runs,
    stop_daemons_under,
    wait_until,
)

__all__ = ["alive_recorded"]  # tests import it from here

#: The life of a run, in order; NotResponding sits beside Running.
ORDER = {
    "NotStarted": 0,
    "Starting": 1,
    "Provisioning": 2,
    "Preparing": 3,
    "Queued": 4,
    "Running": 5,
    "NotResponding": 5,
    "CancelRequested": 6,
    "Finalizing": 7,
    "Completed": 8,
    "Failed": 8,
    "Canceled": 8,
}
TERMINAL = {"Completed", "Failed", "Canceled"}


@pytest.fixture
def pids_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the sr_* scripts record their pids (inherited by daemons and runs)."""
    folder = tmp_path / "pids"
    folder.mkdir()
    monkeypatch.setenv("SR_PIDS", str(folder))
    # A daemon started on demand stays up briefly; teardown stops it anyway.
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    return folder


#: No test here may take longer: a hung wait fails the test instead of the whole session.
TEST_DEADLINE_S = 90


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a test stuck for TEST_DEADLINE_S instead of hanging the session."""
    with alarm_deadline(TEST_DEADLINE_S):
        yield


@pytest.fixture(autouse=True)
def no_run_outlives_the_test(tmp_path: Path, pids_dir: Path) -> Iterator[None]:
    """Stop the daemons this test started; fail if any process of a run is left."""
    yield
    problems = stop_daemons_under(tmp_path)
    problems += end_leftover_runs(tmp_path, pids_dir, wait_s=5.0)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# -- building runs ---------------------------------------------------------------------


def user_metrics(run: Run) -> dict[str, Any]:
    """The run's metrics without the ``sys/*`` samples the daemon adds."""
    return {k: v for k, v in run.get_metrics().items() if not k.startswith("sys/")}


class Kit:
    """Builds source folders of real scripts, configs, markers; waits on runs."""

    def __init__(self, tmp_path: Path, exp: Experiment) -> None:
        self.tmp = tmp_path
        self.exp = exp
        self.ws: Workspace = exp.workspace
        self.markers = tmp_path / "markers"
        self.markers.mkdir(exist_ok=True)

    def source(
        self,
        *scripts: str,
        folder: Path | None = None,
        sub: Mapping[str, Sequence[str]] | None = None,
    ) -> Path:
        """A source folder holding sr_common.py and the named scripts (plus subfolders)."""
        src = (
            folder if folder is not None else self.tmp / f"src-{len(list(self.tmp.glob('src-*')))}"
        )
        src.mkdir(parents=True, exist_ok=True)
        for name in ("sr_common.py", *scripts):
            shutil.copy(SCRIPTS / name, src / name)
        for subdir, names in (sub or {}).items():
            self.source(*names, folder=src / subdir)
        return src

    def marker(self, name: str) -> Path:
        """A path under the markers folder (not created)."""
        return self.markers / name

    def config(
        self,
        script: str,
        arguments: Sequence[Any] = (),
        env: Mapping[str, str] | None = None,
        grace_s: float = 1.0,
        source: Path | None = None,
        **kwargs: Any,
    ) -> ScriptRunConfig:
        """A ScriptRunConfig for one script (copied into a fresh source folder)."""
        src = source if source is not None else self.source(script)
        cfg = ScriptRunConfig(str(src), script, arguments=list(arguments), **kwargs)
        cfg.run_config.environment_variables = {k: str(v) for k, v in (env or {}).items()}
        cfg.run_config.cancel_grace_seconds = grace_s
        return cfg

    def submit(self, script: str, *arguments: Any, **kwargs: Any) -> Run:
        """Submit one script to the experiment."""
        return self.exp.submit(self.config(script, arguments, **kwargs))

    @staticmethod
    def wait_status(run: Run, *statuses: str, timeout_s: float = 30.0) -> str:
        """Poll ``run.get_status()`` until it is one of ``statuses``."""

        def reached() -> str | None:
            status = run.get_status()
            return status if status in statuses else None

        return wait_until(reached, timeout_s, message=f"run {run.id} to be {'/'.join(statuses)}")

    @staticmethod
    def wait_file(path: Path, timeout_s: float = 30.0) -> Path:
        """Wait for a marker file."""
        wait_until(path.exists, timeout_s, message=f"marker {path.name}")
        return path


@pytest.fixture
def kit(tmp_path: Path, exp: Experiment) -> Kit:
    """The builder of this test's runs."""
    return Kit(tmp_path, exp)


def assert_never_backwards(history: Sequence[str]) -> None:
    """A status history only moves forward (Running <-> NotResponding excepted)."""
    for old, new in zip(history, history[1:]):
        assert ORDER[new] >= ORDER[old], f"status went back from {old} to {new}: {history}"
    assert sum(s in TERMINAL for s in history) <= 1, history


@pytest.fixture
def statuses(ws: Workspace) -> Iterator[StatusRecorder]:
    """A running StatusRecorder for the test's workspace."""
    with StatusRecorder(ws) as recorder:
        yield recorder
