"""Fixtures for life cycles as users live them: every step is its own short process.

The rule of this layer: the pytest process never opens a workspace. It does not build a
``Workspace``, ``Experiment`` or ``Run``, and never touches ``runner.store``. Scripts that
submit and exit (``scripts/lc_submit.py``), ``python -m runner ...`` commands, and a
reader in yet another process (``scripts/lc_read.py``, printing JSON) do everything.
Tests of other layers keep the database open in the test process for their whole
length, which hides whatever goes wrong only once every other process has closed it.

What a test gets (``lc``, a :class:`Lifecycle`):

- a fresh workspace folder ``tmp_path/'ws'`` (``RUNNER_WORKSPACE`` of every process it
  starts), a ledger file each training script appends ``"<run id> <pid>"`` to as it
  starts (so how many times, and in which order, each run executed), a markers folder
  for runs that hold until released, and a pids folder (``LC_PIDS``) where run
  processes record themselves;
- ``py(script, ...)``, ``start(script, ...)``, ``cli(...)``, ``submit(...)``, ``read(...)``:
  the processes, each with a timeout so that a hang fails the test. Each runs in
  tmp_path with the session's environment less every ``RUNNER_*`` variable, plus the
  repository on ``PYTHONPATH``, ``RUNNER_WORKSPACE``, ``LC_LEDGER``, ``LC_PIDS`` and
  ``RUNNER_DAEMON_IDLE_S=120`` (longer than any wait: an idle daemon replaced by a new
  one must not rescue, and so hide, a run stuck under the old one).

Teardown (autouse): background processes the test started are killed, every held run is
released, every daemon of a workspace under ``tmp_path`` is stopped
(``tests.helpers.stop_daemons_under``, which talks to the socket and lock files only),
and no process of a run may be left: neither one that recorded itself in ``LC_PIDS``
(an escaped grandchild with an empty environment included) nor one carrying
``RUNNER_RUN_ID`` with such a workspace. Leftovers are killed and fail the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from runner import daemon_client
from tests.helpers import (
    REPO,
    alarm_deadline,
    daemon_pid,
    end_leftover_runs,
    recorded_pids,
    start_ticks,
    stop_daemons_under,
    wait_until,
)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
#: A test may take no longer (slow ones SLOW_DEADLINE_S): SIGALRM fails it with the
#: traceback of where it hung instead of hanging the session.
DEADLINE_S = 120
SLOW_DEADLINE_S = 240
#: Default limit of one step (a submit, a CLI command, a read).
STEP_TIMEOUT_S = 60.0


def alive(pid: int, ticks: str) -> bool:
    """Whether the very process (pid and start time) still runs; a zombie is dead."""
    return start_ticks(pid) == ticks


class StepFailed(AssertionError):
    """A step's process exited non-zero or did not finish in time."""


def _explain(proc: subprocess.CompletedProcess[str] | Any, what: str) -> str:
    return (
        f"{what}\n--- stdout ---\n{proc.stdout or ''}\n--- stderr ---\n{proc.stderr or ''}".rstrip()
    )


class Lifecycle:
    """One workspace and the short processes that use it."""

    def __init__(self, tmp: Path, name: str = "ws") -> None:
        self.tmp = tmp
        self.ws = tmp / name
        self.ledger = tmp / f"ledger-{name}.txt"
        self.markers = tmp / "markers"
        self.pids = tmp / "pids"
        for folder in (self.markers, self.pids):
            folder.mkdir(exist_ok=True)
        self.background: list[subprocess.Popen[str]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
                "PYTHONUNBUFFERED": "1",
                "RUNNER_WORKSPACE": str(self.ws),
                # Longer than any wait of a test: a daemon that idles out and is replaced
                # by a fresh one must never rescue (and so hide) a run stuck under it.
                # Teardown stops the daemons; this only bounds a crashed session's.
                "RUNNER_DAEMON_IDLE_S": "120",
                "LC_LEDGER": str(self.ledger),
                "LC_PIDS": str(self.pids),
            }
        )
        self.env = env

    def for_workspace(self, name: str) -> Lifecycle:
        """Another workspace (and ledger) under the same tmp_path, sharing the teardown."""
        other = Lifecycle(self.tmp, name)
        other.background = self.background
        other.env = {
            **self.env,
            "RUNNER_WORKSPACE": str(other.ws),
            "LC_LEDGER": str(other.ledger),
        }
        return other

    # -- processes -----------------------------------------------------------------------

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = STEP_TIMEOUT_S,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one process to its end in tmp_path; fail the test if it hangs (or, with
        ``check``, exits non-zero), with what it printed."""
        try:
            proc = subprocess.run(
                list(argv),
                env=self._env(env),
                cwd=self.tmp,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailed(
                _explain(exc, f"{' '.join(map(str, argv))!r} did not finish in {timeout_s} s")
            ) from None
        if check and proc.returncode != 0:
            raise StepFailed(
                _explain(proc, f"{' '.join(map(str, argv))!r} exited {proc.returncode}")
            )
        return proc

    def py(self, script: str | Path, *args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``python SCRIPT ARGS`` (a name is looked up in tests/lifecycle/scripts)."""
        path = script if isinstance(script, Path) else SCRIPTS / script
        return self.run([sys.executable, str(path), *map(str, args)], **kw)

    def start(self, script: str, *args: Any, env: Mapping[str, str] | None = None) -> Any:
        """Start a script in the background; teardown kills it if the test did not."""
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / script), *map(str, args)],
            env=self._env(env),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.background.append(proc)
        return proc

    def cli(self, *argv: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``python -m runner ARGV`` as its own process."""
        return self.run([sys.executable, "-m", "runner", *map(str, argv)], **kw)

    def cli_json(self, *argv: Any, **kw: Any) -> Any:
        """``python -m runner GROUP COMMAND -o json ARGS``, its output parsed (``-o`` right
        after the command: everything after a script name belongs to the script)."""
        proc = self.cli(*argv[:2], "-o", "json", *argv[2:], **kw)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise StepFailed(_explain(proc, f"runner {argv} printed no JSON")) from None

    # -- runs ----------------------------------------------------------------------------

    def source(self, *scripts: str) -> Path:
        """A fresh source folder holding lc_common.py and the named training scripts."""
        src = self.tmp / f"src-{len(list(self.tmp.glob('src-*')))}"
        src.mkdir()
        for name in ("lc_common.py", *scripts):
            shutil.copy(SCRIPTS / name, src / name)
        return src

    def submit(
        self,
        source: Path,
        script: str,
        *args: Any,
        experiment: str,
        count: int = 1,
        grace_s: float | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = STEP_TIMEOUT_S,
    ) -> list[str]:
        """Submit SCRIPT COUNT times from a short process that exits at once; the ids."""
        argv: list[Any] = ["-e", experiment, "-s", source, "--count", count]
        if grace_s is not None:
            argv += ["--grace", grace_s]
        proc = self.py("lc_submit.py", *argv, script, "--", *args, env=env, timeout_s=timeout_s)
        return [r["id"] for r in json.loads(proc.stdout.splitlines()[-1])["runs"]]

    def read(
        self,
        *ids: str,
        experiment: str | None = None,
        wait_s: float | None = None,
        watch_s: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """What a fresh process sees of the runs: id -> run (see scripts/lc_read.py)."""
        argv: list[Any] = []
        if experiment is not None:
            argv += ["-e", experiment]
        if wait_s is not None:
            argv += ["--wait", wait_s]
        if watch_s is not None:
            argv += ["--watch", watch_s]
        if ids:
            argv += ["--ids", *ids]
        limit = STEP_TIMEOUT_S + (wait_s or 0) + (watch_s or 0)
        proc = self.py("lc_read.py", *argv, env=env, timeout_s=limit)
        return {r["id"]: r for r in json.loads(proc.stdout.splitlines()[-1])["runs"]}

    def wait_completed(self, *ids: str, wait_s: float = 20.0) -> dict[str, dict[str, Any]]:
        """Wait for the runs from a fresh process; fail unless all Completed in time."""
        seen = self.read(*ids, wait_s=wait_s)
        assert all(seen[i]["status"] == "Completed" and not seen[i]["timedOut"] for i in ids), (
            f"not all Completed within {wait_s} s: "
            + ", ".join(f"{i}: {seen[i]['status']}" for i in ids)
            + f"\nledger: {self.ledger_lines()}\n{self.daemon_log()}"
        )
        return seen

    def statuses(self, experiment: str) -> dict[str, str]:
        """run id -> status, from ``runner run list -e EXP -o json`` in its own process."""
        return {r["runId"]: r["status"] for r in self.cli_json("run", "list", "-e", experiment)}

    def wait_statuses(
        self, experiment: str, wanted: Mapping[str, str], timeout_s: float = 20.0
    ) -> None:
        """Poll ``runner run list`` until each run of ``wanted`` has its status."""
        last: dict[str, str] = {}

        def reached() -> bool:
            last.clear()
            last.update(self.statuses(experiment))
            return all(last.get(i) == s for i, s in wanted.items())

        try:
            wait_until(reached, timeout_s, interval_s=0.1)
        except AssertionError:
            raise AssertionError(
                f"waited {timeout_s} s for {dict(wanted)}; `runner run list` said {last}\n"
                f"ledger: {self.ledger_lines()}\n{self.daemon_log()}"
            ) from None

    # -- evidence ------------------------------------------------------------------------

    def ledger_lines(self) -> list[str]:
        """The run ids in the ledger, in the order the runs started (one per execution)."""
        try:
            text = self.ledger.read_text()
        except FileNotFoundError:
            return []
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def assert_each_executed_once(self, ids: Sequence[str]) -> None:
        """The ledger names each run exactly once, and nothing else."""
        lines = self.ledger_lines()
        counts = {i: lines.count(i) for i in ids}
        assert counts == dict.fromkeys(ids, 1), f"executions per run: {counts}; ledger: {lines}"
        assert sorted(lines) == sorted(ids), f"ledger names other runs too: {lines}"

    def marker(self, name: str) -> Path:
        """A path in the markers folder."""
        return self.markers / name

    def wait_started(self, run_id: str, timeout_s: float = 20.0) -> None:
        """Wait until a held run's script says it started."""
        try:
            wait_until(self.marker(f"{run_id}.started").exists, timeout_s)
        except AssertionError:
            raise AssertionError(
                f"run {run_id} did not start within {timeout_s} s; ledger "
                f"{self.ledger_lines()}\n{self.daemon_log()}"
            ) from None

    def release(self, *ids: str) -> None:
        """Let held runs end."""
        for run_id in ids:
            self.marker(f"{run_id}.release").touch()

    def daemon_log(self) -> str:
        """The tail of the workspace daemon's log (for failure messages)."""
        try:
            text = (self.ws / "daemon" / "daemon.log").read_text(errors="replace")
        except OSError:
            return "(no daemon log)"
        return "--- daemon log (tail) ---\n" + text[-2000:]

    # -- the daemon ----------------------------------------------------------------------

    def daemon_pid(self) -> int | None:
        """The live daemon's pid from WS/daemon/daemon.json, if any."""
        return daemon_pid(self.ws)

    def kill_daemon(self) -> int:
        """``kill -9`` the workspace's daemon; its pid, once it is gone and its lock free."""
        pid = self.daemon_pid()
        assert pid is not None, f"no daemon runs for {self.ws}\n{self.daemon_log()}"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.daemon_pid() != pid, 10, message=f"daemon {pid} to die")
        wait_until(lambda: not daemon_client._lock_held(self.ws), 10, message="the daemon's lock")
        return pid

    def recorded(self) -> dict[int, tuple[str, str]]:
        """pid -> (start ticks, role) of every process the run scripts recorded."""
        return recorded_pids(self.pids)


@pytest.fixture
def lc(tmp_path: Path) -> Lifecycle:
    """This test's workspace and the processes that use it."""
    return Lifecycle(tmp_path)


@pytest.fixture(autouse=True)
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a stuck test instead of hanging the session (slow tests get longer)."""
    with alarm_deadline(SLOW_DEADLINE_S if request.node.get_closest_marker("slow") else DEADLINE_S):
        yield


@pytest.fixture(autouse=True)
def nothing_left_behind(lc: Lifecycle, tmp_path: Path) -> Iterator[None]:
    """Stop what the test started; fail if any process of a run is left."""
    yield
    problems: list[str] = []
    for proc in lc.background:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    (lc.markers / "all.release").touch()
    problems += stop_daemons_under(tmp_path)
    problems += end_leftover_runs(tmp_path, lc.pids, wait_s=10.0)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
