"""A full disk loses nothing silently (issue 12): every step is its own process.

The workspace lives on a small tmpfs mounted for the test (root only; skipped with a
message otherwise, and failed instead under CI=true). The test process never opens the
workspace (it could not unmount it): tests/faults/disk_full_steps.py does every step.

- A submitted run whose ./outputs fit on the disk but whose stored copy does not ends
  Failed, naming the full disk, with no working folder or temporary file left behind;
  what was recorded before is intact, and the next run Completes.
- Run.log of a new metric, Run.flush() and complete() in a full workspace raise
  StoreError (not sqlite3.OperationalError); the values wait and are stored once space
  is freed.
- An upload to a full workspace raises StoreError and records nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, daemon_pid, stop_daemons_under, wait_until

HERE = Path(__file__).resolve().parent
STEPS = HERE / "disk_full_steps.py"
TERMINAL = {"Completed", "Failed", "Canceled"}
#: The tmpfs: the workspace and a run's working copy of its outputs fit, a second
#: (stored) copy of those outputs does not.
FS_MIB = 24
OUTPUTS_MIB = 14


def _no_tmpfs_reason() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    return None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A FS_MIB MiB tmpfs at tmp_path/'fs', unmounted (daemons stopped first) at the end."""
    reason = _no_tmpfs_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"disk-full tests cannot run under CI: {reason}")
        pytest.skip(f"disk-full tests skipped: {reason}")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_MIB}M", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs at {mnt}: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mnt
    finally:
        problems = stop_daemons_under(mnt)
        for ws in mnt.iterdir():  # by pid, should the socket not answer
            pid = daemon_pid(ws)
            if pid is not None:
                os.kill(pid, 9)
        wait_until(
            lambda: subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0,
            timeout_s=15,
            interval_s=0.2,
            message=f"unmounting {mnt}",
        )
        assert not problems, problems


def step(*args: Any, cwd: Path) -> dict[str, Any]:
    """Run one step of disk_full_steps.py in its own process; its JSON answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RUNNER_DAEMON_IDLE_S"] = "120"
    done = subprocess.run(
        [sys.executable, str(STEPS), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"step {args} failed:\n{done.stdout}\n{done.stderr}"
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def tmp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp-" in p.name]


def ended(ws: Path, run_id: str, cwd: Path) -> dict[str, Any]:
    return wait_until(
        lambda: (r := step("read", ws, run_id, cwd=cwd))["status"] in TERMINAL and r,
        timeout_s=60,
        interval_s=0.3,
        message=f"run {run_id} to end",
    )


@pytest.mark.slow
def test_outputs_that_do_not_fit_fail_the_run_and_leave_nothing_behind(
    small_fs: Path, tmp_path: Path
) -> None:
    ws = small_fs / "ws"
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(HERE / "train_big.py", source)
    before = step("setup", ws, cwd=tmp_path)["run"]

    run_id = step("submit", ws, source, OUTPUTS_MIB, cwd=tmp_path)["run"]
    run = ended(ws, run_id, tmp_path)

    assert run["status"] == "Failed", run  # never Completed without its outputs
    error = run["error"]["error"]
    assert error["kind"] == "store_failed"
    assert "disk full" in error["message"], error
    assert str(ws) in error["message"], error
    assert "free space" in error["message"], error
    assert "wrote 14 MiB" in error["logTail"]  # the log it could not store, in the error
    # What the run recorded while it ran is intact; its outputs are not half there.
    assert run["metrics"] == {"epoch": 1}
    assert run["tags"]["trained"] == "yes"
    assert not [f for f in run["files"] if f.startswith("outputs/")], run["files"]
    # No working copy, no temporary file, no marker left behind.
    assert not (ws / "runs" / run_id / "work").exists()
    assert not (ws / "runs" / run_id / "store_failure").exists()
    assert tmp_files(ws) == []
    # Earlier data is intact.
    earlier = step("read", ws, before, cwd=tmp_path)
    assert earlier["status"] == "Completed"
    assert earlier["metrics"] == {"loss": 100}
    assert earlier["tags"]["kept"] == "yes"
    assert earlier["files"] == ["notes.txt"]

    # The space the outputs took is free again: a run that fits Completes.
    again = step("submit", ws, source, 1, cwd=tmp_path)["run"]
    after = ended(ws, again, tmp_path)
    assert after["status"] == "Completed", after
    assert "outputs/big.bin" in after["files"]
    assert tmp_files(ws) == []
    assert not (ws / "runs" / again / "work").exists()


def in_full_workspace(name: str, small_fs: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """(workspace, answer) of step ``name`` in a workspace with earlier data."""
    ws = small_fs / "ws"
    step("setup", ws, cwd=tmp_path)
    return ws, step(name, ws, small_fs / "ballast", cwd=tmp_path)


def assert_disk_full(error: dict[str, Any] | None, ws: Path) -> None:
    """``error`` (a step's answer) is the StoreError of a full disk under ``ws``."""
    assert error is not None, "it succeeded on a full disk"
    assert error["type"] == "runner.errors.StoreError", error
    assert f"workspace {ws}: cannot " in error["message"], error
    assert "disk full" in error["message"], error
    assert "free space on the file system of" in error["message"], error


def test_log_and_flush_in_a_full_workspace_raise_store_error(
    small_fs: Path, tmp_path: Path
) -> None:
    ws, out = in_full_workspace("flush_full", small_fs, tmp_path)
    for what in ("log_new", "flush", "complete", "submit", "tag"):
        assert_disk_full(out[what], ws)
    assert "record metrics for run" in out["flush"]["message"]
    # The CLI says it in one line (exit 1), not with a traceback of sqlite3.
    assert out["cli"]["rc"] == 1, out["cli"]
    assert "disk full" in out["cli"]["stderr"], out["cli"]
    assert "Traceback" not in out["cli"]["stderr"], out["cli"]
    assert "sqlite3" not in out["cli"]["stderr"], out["cli"]
    # Nothing logged was lost: the values waited in memory until there was space.
    assert out["stored"] == out["logged"]
    # complete() could not record anything (the database was full): still not Completed.
    assert out["status_after"] != "Completed"
    assert tmp_files(ws) == []


def test_upload_to_a_full_workspace_raises_store_error_and_records_nothing(
    small_fs: Path, tmp_path: Path
) -> None:
    ws, out = in_full_workspace("upload_full", small_fs, tmp_path)
    assert_disk_full(out["upload"], ws)
    assert out["files_while_full"] == []  # nothing half-recorded
    assert out["tmp_files"] == []  # the partial blob was removed
    assert out["files_after"] == ["big.bin"]  # and it works once space is freed


@pytest.mark.slow
@pytest.mark.parametrize("daemon_killed", [False, True], ids=["daemon-waits", "daemon-killed"])
def test_a_run_ending_while_the_disk_is_full_fails_once_there_is_space(
    small_fs: Path, tmp_path: Path, daemon_killed: bool
) -> None:
    """Nothing fits, not even the end of the run: it is never Completed meanwhile. Once
    space is freed, the waiting daemon records it Failed (naming the disk); a daemon
    killed meanwhile left the outputs in place, and the next one stores them (and
    records the run's end): either way nothing is lost without saying so."""
    ws = small_fs / "ws"
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(HERE / "train_big.py", source)
    ready, release = tmp_path / "ready", tmp_path / "release"
    step("setup", ws, cwd=tmp_path)
    run_id = step("submit", ws, source, 2, ready, release, cwd=tmp_path)["run"]
    wait_until(ready.exists, timeout_s=60, message="the run to write its outputs")
    ballast = small_fs / "ballast"
    step("fill", ws, ballast, cwd=tmp_path)
    release.touch()
    daemon_log = ws / "daemon" / "daemon.log"
    wait_until(
        lambda: "cannot record its end yet" in daemon_log.read_text(errors="replace"),
        timeout_s=60,
        message="the daemon to find that not even the run's end can be recorded",
    )
    while_full = step("read", ws, run_id, cwd=tmp_path)
    assert while_full["status"] != "Completed", while_full

    if daemon_killed:
        pid = daemon_pid(ws)
        assert pid is not None
        os.kill(pid, 9)
        wait_until(lambda: daemon_pid(ws) is None, message="the killed daemon to be gone")
    ballast.unlink()
    run = ended(ws, run_id, tmp_path)  # reading starts a daemon if none runs
    if daemon_killed:
        # The keeper could not write the exit code either (the disk was full): the run
        # is Failed for that, saying so; its outputs were kept and are stored now.
        assert "outputs/big.bin" in run["files"], run  # stored by the next daemon
        if run["status"] != "Completed":
            assert run["status"] == "Failed", run
            assert "exit code is unknown" in run["error"]["error"]["message"], run
        assert not (ws / "runs" / run_id / "work").exists()
        assert tmp_files(ws) == []
        return
    assert run["status"] == "Failed", run
    assert run["error"]["error"]["kind"] == "store_failed"
    assert "disk full" in run["error"]["error"]["message"], run
    assert not (ws / "runs" / run_id / "work").exists()
    assert not (ws / "runs" / run_id / "store_failure").exists()
    assert tmp_files(ws) == []
    after = ended(ws, step("submit", ws, source, 1, cwd=tmp_path)["run"], tmp_path)
    assert after["status"] == "Completed", after
