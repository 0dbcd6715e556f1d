"""Liveness: heartbeats while Running, NotResponding when they stop and Running when they
resume; a killed daemon is replaced and its runs re-adopted (they still complete, or
fail with the reason when their process died too); runs outlive the process that
submitted them and can be canceled from any other process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from runner import Run, Workspace, daemon_client
from tests.helpers import StatusRecorder, daemon_pid, heartbeat_of, run_script, wait_until
from tests.submit.conftest import (
    Kit,
    alive_recorded,
    assert_never_backwards,
    user_metrics,
)

HEARTBEAT_S = 0.2


@pytest.fixture
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every 0.2 s (NotResponding after 0.6 s), for the daemon this test
    starts and for this process's judgement of them."""
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", str(HEARTBEAT_S))


def heartbeat(run: Run) -> float:
    return heartbeat_of(run)


def stop_between_writes(ws: Workspace, pid: int) -> None:
    """SIGSTOP the daemon, but never while it holds the database's write lock (which
    would block this process's writes until the busy timeout)."""
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
        conn = sqlite3.connect(ws._store.db_path, timeout=0.05, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)  # it was mid-write: let it finish, try again
        finally:
            conn.close()
    raise AssertionError("could not stop the daemon between two writes")


def kill_daemon(ws: Workspace) -> int:
    pid = daemon_pid(ws.path)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: daemon_pid(ws.path) != pid, message="the daemon to die")
    return pid


@pytest.mark.usefixtures("fast_heartbeats")
def test_not_responding_while_the_daemon_is_stopped_running_again_after(
    kit: Kit, statuses: StatusRecorder
) -> None:
    started, go = kit.marker("started"), kit.marker("go")
    run = kit.submit("sr_probe.py", env={"SR_STARTED": started, "SR_GO": go})
    kit.wait_file(started)
    first = heartbeat(run)
    wait_until(lambda: heartbeat(run) > first, message="a heartbeat")

    pid = daemon_pid(kit.ws.path)
    assert pid is not None
    stop_between_writes(kit.ws, pid)
    try:
        kit.wait_status(run, "NotResponding", timeout_s=10)
        assert run.get_detailed_status()["details"] == "no heartbeat from its supervisor"
        statuses.wait_seen(run.id, "NotResponding")
        assert daemon_pid(kit.ws.path) == pid  # no second daemon while this one lives
    finally:
        os.kill(pid, signal.SIGCONT)
    kit.wait_status(run, "Running", timeout_s=10)
    go.touch()
    assert run.wait_for_completion()["status"] == "Completed"
    history = statuses.history(run.id)
    assert_never_backwards(history)
    at = history.index("NotResponding")
    assert history[at - 1 : at + 2] == ["Running", "NotResponding", "Running"], history


def _ended(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie (it may go between the two looks)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.usefixtures("fast_heartbeats")
@pytest.mark.parametrize(
    ("script_ends", "daemon_end"),
    [
        ("after_readoption", "killed"),
        ("while_no_daemon", "killed"),
        ("after_readoption", "stopped"),
    ],
)
def test_a_killed_daemon_is_replaced_and_the_run_still_completes(
    kit: Kit, statuses: StatusRecorder, script_ends: str, daemon_end: str, tmp_path: Path
) -> None:
    started, go, out = kit.marker("started"), kit.marker("go"), tmp_path / "report.json"
    run = kit.submit("sr_probe.py", env={"SR_STARTED": started, "SR_GO": go, "SR_OUT": out})
    kit.wait_file(started)
    script = json.loads(out.read_text())["pid"]
    if daemon_end == "killed":
        old = kill_daemon(kit.ws)
    else:  # asked to stop: it leaves its runs running for the next daemon
        old = daemon_pid(kit.ws.path)
        assert daemon_client.stop_daemon(kit.ws.path)
        assert daemon_pid(kit.ws.path) is None
    assert psutil.pid_exists(script)  # the run goes on without its supervisor
    if script_ends == "while_no_daemon":
        go.touch()
        wait_until(lambda: _ended(script))
    else:
        # The next status checks notice the silence and start a daemon, which re-adopts.
        wait_until(
            lambda: run.get_status() and daemon_pid(kit.ws.path) not in (None, old),
            message="a new daemon",
        )
        kit.wait_status(run, "Running", timeout_s=20)
        assert psutil.pid_exists(script)
        go.touch()
    assert run.wait_for_completion()["status"] == "Completed"
    history = statuses.history(run.id)
    assert "NotResponding" in history, history
    new = daemon_pid(kit.ws.path)
    assert new is not None
    assert new != old
    assert user_metrics(run) == {"v": [0, 1, 2], "after_go": 1}
    assert "outputs/probe.txt" in run.get_file_names()
    assert_never_backwards(statuses.history(run.id))


@pytest.mark.usefixtures("fast_heartbeats")
@pytest.mark.parametrize("killed", ["script", "whole_run"])
def test_a_killed_daemon_and_script_end_failed_with_the_reason(
    kit: Kit, killed: str, tmp_path: Path
) -> None:
    started, out = kit.marker("started"), tmp_path / "report.json"
    run = kit.submit(
        "sr_probe.py", env={"SR_STARTED": started, "SR_GO": kit.marker("never"), "SR_OUT": out}
    )
    kit.wait_file(started)
    report = json.loads(out.read_text())
    kill_daemon(kit.ws)
    if killed == "whole_run":
        os.kill(report["ppid"], signal.SIGKILL)  # the keeper that would write the exit code
    os.kill(report["pid"], signal.SIGKILL)
    kit.wait_status(run, "Failed", timeout_s=20)
    error = run.get_details()["error"]["error"]
    if killed == "whole_run":
        assert error["kind"] == "lost"
        assert "ended while no supervisor watched it" in error["message"]
        assert error["exitCode"] is None
    else:
        assert error["kind"] == "script_failed"
        assert error["exitCode"] == 128 + signal.SIGKILL


@pytest.mark.usefixtures("fast_heartbeats")
def test_a_run_whose_daemon_was_killed_can_be_canceled_tree_and_all(
    kit: Kit, pids_dir: Path
) -> None:
    ready = kit.marker("ready")
    run = kit.submit("sr_tree.py", "main", str(ready), "stay", grace_s=30)
    kit.wait_file(ready)
    kill_daemon(kit.ws)
    run.cancel()  # starts a daemon, which re-adopts the run and stops its whole tree
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    assert alive_recorded(pids_dir) == {}


def test_a_run_outlives_the_process_that_submitted_it(kit: Kit) -> None:
    go = kit.marker("go")
    src = kit.source("sr_probe.py")
    started = time.monotonic()
    submitted = run_script("sr_submitter.py", kit.ws.path, src, "sr_probe.py", go)
    assert time.monotonic() - started < 30
    run = Run.get(kit.ws, submitted.stdout.strip())
    assert run.get_status() in ("Starting", "Preparing", "Queued", "Running")
    go.touch()  # only now, with the submitter gone, may the script end
    assert run.wait_for_completion()["status"] == "Completed"
    assert run.get_metrics()["after_go"] == 1


def test_a_run_can_be_canceled_from_another_process(kit: Kit) -> None:
    started = kit.marker("started")
    run = kit.submit("sr_probe.py", env={"SR_STARTED": started, "SR_GO": kit.marker("never")})
    kit.wait_file(started)
    canceled = run_script("sr_canceler.py", kit.ws.path, run.id)
    assert canceled.stdout.strip() in ("CancelRequested", "Finalizing", "Canceled")
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"


@pytest.mark.usefixtures("fast_heartbeats")
def test_get_details_alone_notices_a_dead_daemon(kit: Kit, tmp_path: Path) -> None:
    started, go = kit.marker("started"), kit.marker("go")
    run = kit.submit("sr_probe.py", env={"SR_STARTED": started, "SR_GO": go})
    kit.wait_file(started)
    kill_daemon(kit.ws)
    go.touch()
    try:
        wait_until(
            lambda: run.get_details()["status"] != "Running",
            timeout_s=3,
            message="get_details() to notice",
        )
    finally:
        # let get_status() re-adopt and end the run either way, for a clean teardown
        kit.wait_status(run, "Completed", timeout_s=20)
