"""Cancel and ./outputs: TERM to the whole tree (also processes in their own session), a
grace period, then KILL; Canceled recorded; cancel before the run started; a parent's
cancel reaches its children; max_run_duration_seconds enforced the same way; ./outputs
stored at Finalizing however the run ended."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from runner import Experiment
from runner.errors import RunnerWarning
from tests.helpers import StatusRecorder, wait_until
from tests.submit.conftest import (
    Kit,
    alive_recorded,
    assert_never_backwards,
    user_metrics,
)

TREE = {"main", "child", "grandchild", "setsid", "orphan"}


@pytest.mark.parametrize(
    ("mode", "status"), [("ok", "Completed"), ("fail", "Failed"), ("wait", "Canceled")]
)
def test_outputs_are_stored_however_the_run_ends(kit: Kit, mode: str, status: str) -> None:
    ready = kit.marker("ready")
    run = kit.submit("sr_outputs.py", mode, str(ready))
    if mode == "wait":
        kit.wait_file(ready)
        run.cancel()
    assert run.wait_for_completion(raise_on_error=False)["status"] == status
    names = run.get_file_names()
    assert "outputs/result.txt" in names
    assert "outputs/sub dir/deep.bin" in names
    dest = kit.tmp / "dl"
    run.download_files(prefix="outputs", output_directory=str(dest))
    assert (dest / "outputs" / "result.txt").read_text() == f"result of {mode}"
    assert (dest / "outputs" / "sub dir" / "deep.bin").read_bytes() == bytes(range(256))


def test_cancel_terminates_the_whole_tree(
    kit: Kit, statuses: StatusRecorder, pids_dir: Path
) -> None:
    ready = kit.marker("ready")
    run = kit.submit("sr_tree.py", "main", str(ready), "stay", grace_s=30)
    kit.wait_file(ready)
    assert set(alive_recorded(pids_dir).values()) == TREE
    started = time.monotonic()
    run.cancel()
    assert run.get_status() in ("CancelRequested", "Finalizing", "Canceled")
    details = run.wait_for_completion(raise_on_error=False)
    # every process obeyed TERM: nobody waited for the 30 s grace period
    assert time.monotonic() - started < 10
    assert details["status"] == "Canceled"
    assert details["statusDetails"] == "canceled by user"
    assert "error" not in details
    assert alive_recorded(pids_dir) == {}
    history = statuses.history(run.id)
    assert_never_backwards(history)  # CancelRequested, Finalizing, if seen, in this order
    assert history[-1] == "Canceled"


def test_what_a_finished_script_left_running_is_stopped(kit: Kit, pids_dir: Path) -> None:
    ready = kit.marker("ready")
    run = kit.submit("sr_tree.py", "main", str(ready), "exit")
    assert run.wait_for_completion()["status"] == "Completed"
    assert ready.exists()
    assert alive_recorded(pids_dir) == {}


def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(
    kit: Kit, pids_dir: Path
) -> None:
    grace = 1.5
    ready, termed = kit.marker("ready"), kit.marker("termed")
    run = kit.submit("sr_stubborn.py", str(ready), str(termed), grace_s=grace)
    kit.wait_file(ready)
    run.cancel()
    kit.wait_file(termed)
    term_at = float(termed.read_text())
    details = run.wait_for_completion(raise_on_error=False)
    ended = time.time()
    assert details["status"] == "Canceled"
    assert grace - 0.1 <= ended - term_at < grace + 5
    assert alive_recorded(pids_dir) == {}
    assert details["runDefinition"]["cancelGraceSeconds"] == grace


def test_cancel_before_the_run_started(kit: Kit, exp: Experiment) -> None:
    """The run is recorded (Starting) but no daemon has picked it up yet: holding the
    daemon's start lock keeps every daemon from starting until the cancel is in."""
    started = kit.marker("started")
    cfg = kit.config("sr_probe.py", env={"SR_STARTED": started})
    folder = exp.workspace.path / "daemon"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(folder / "start.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def in_thread(fn) -> None:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        threads.append(threading.Thread(target=body))
        threads[-1].start()

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        in_thread(lambda: exp.submit(cfg))
        run = wait_until(lambda: next(iter(exp.get_runs()), None), message="the run recorded")
        wait_until(lambda: run.get_status() == "Starting")
        in_thread(run.cancel)
        wait_until(lambda: run.get_status() == "CancelRequested")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
    assert "startTimeUtc" not in details
    assert not started.exists()  # the script never ran


def test_cancel_of_a_parent_reaches_its_children(kit: Kit, exp: Experiment, pids_dir: Path) -> None:
    ready = kit.marker("ready")
    src = kit.source("sr_parent_cancel.py", sub={"child_src": ["sr_probe.py"]})
    run = exp.submit(kit.config("sr_parent_cancel.py", [str(ready)], source=src))
    kit.wait_file(ready)
    children = list(run.get_children())
    assert len(children) == 2
    assert {c.get_status() for c in children} == {"Running"}
    run.cancel()
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    for child in children:
        assert child.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    assert alive_recorded(pids_dir) == {}


def test_max_run_duration_is_enforced_like_a_cancel(kit: Kit, pids_dir: Path) -> None:
    started = kit.marker("started")
    run = kit.submit(
        "sr_probe.py",
        env={"SR_STARTED": started, "SR_GO": kit.marker("never")},
        max_run_duration_seconds=1,
        grace_s=1,
    )
    kit.wait_file(started)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
    assert "exceeded max_run_duration_seconds=1" in details["statusDetails"]
    assert details["runDefinition"]["maxRunDurationSeconds"] == 1
    assert run.get_metrics()["v"] == [0, 1, 2]
    assert alive_recorded(pids_dir) == {}


def test_cancel_of_a_finished_run_says_so(kit: Kit) -> None:
    run = kit.submit("sr_probe.py")
    assert run.wait_for_completion()["status"] == "Completed"
    with pytest.warns(RunnerWarning, match=r"already Completed; cancel\(\) changed nothing"):
        run.cancel()
    assert run.get_status() == "Completed"


def test_a_run_can_cancel_itself(kit: Kit, pids_dir: Path) -> None:
    run = kit.submit("sr_self_cancel.py")
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    assert user_metrics(run) == {"before_cancel": 1}
    assert alive_recorded(pids_dir) == {}


def test_cancel_of_a_queued_run(
    kit: Kit, exp: Experiment, monkeypatch: pytest.MonkeyPatch, statuses: StatusRecorder
) -> None:
    monkeypatch.setenv("RUNNER_MAX_CONCURRENT", "1")  # read by the daemon this test starts
    src = kit.source("sr_probe.py")
    first_started, go, second_started = kit.marker("1"), kit.marker("go"), kit.marker("2")
    first = exp.submit(
        kit.config("sr_probe.py", source=src, env={"SR_STARTED": first_started, "SR_GO": go})
    )
    kit.wait_file(first_started)
    second = exp.submit(kit.config("sr_probe.py", source=src, env={"SR_STARTED": second_started}))
    kit.wait_status(second, "Queued")
    second.cancel()
    details = second.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
    assert "startTimeUtc" not in details
    assert first.get_status() == "Running"
    go.touch()
    assert first.wait_for_completion()["status"] == "Completed"
    assert not second_started.exists()  # it never ran
    history = statuses.history(second.id)
    assert_never_backwards(history)
    assert "Running" not in history
