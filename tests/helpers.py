"""Helpers shared by the tests: waiting on conditions and running the tiny scripts.

Tests synchronise with marker files and ``wait_until``; they never sleep and then
assert. Scripts under ``tests/scripts`` are real programs run as real processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

if TYPE_CHECKING:
    from runner.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T],
    timeout_s: float = 10.0,
    interval_s: float = 0.01,
    message: str | None = None,
) -> T:
    """Poll ``pred`` until it returns something truthy, and return that.

    Fails the test (AssertionError) when ``timeout_s`` passes first, saying what was
    awaited and what ``pred`` returned last.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(pred, "__name__", repr(pred))
            raise AssertionError(
                f"waited {timeout_s} s for {what}; the last check returned {value!r}"
            )
        time.sleep(interval_s)


def script_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a test script: ours, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("RUNNER_RUN_ID", None)
    if extra:
        env.update(extra)
    return env


def script_argv(name: str, args: Sequence[Any] = ()) -> list[str]:
    """argv running ``tests/scripts/NAME`` with the test's interpreter."""
    return [sys.executable, str(SCRIPTS / name), *map(str, args)]


def run_script(
    name: str,
    *args: Any,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    check: bool = True,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a test script to its end and return what it printed.

    With ``check`` a non-zero exit fails the test with the script's output.
    """
    proc = subprocess.run(
        script_argv(name, args),
        env=script_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{name} {list(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def start_script(
    name: str,
    *args: Any,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> subprocess.Popen[str]:
    """Start a test script in the background; the caller waits for it (or kills it)."""
    return subprocess.Popen(
        script_argv(name, args),
        env=script_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> tuple[str, str]:
    """Wait for a started script; fail the test with its output if it did not exit 0."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"{proc.args!r} did not finish in {timeout_s} s\n--- stdout ---\n{out}\n"
            f"--- stderr ---\n{err}"
        ) from None
    if proc.returncode != 0:
        raise AssertionError(
            f"{proc.args!r} exited {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
    return out, err


@contextmanager
def sql_statements(ws: Any) -> Iterator[list[str]]:
    """The SQL this thread runs on the workspace's connection while the block runs.

    Real SQLite tracing (``set_trace_callback``), not a stand-in: the list fills as
    statements execute; statements of other threads (the metric writer) are left out.
    """
    seen: list[str] = []
    me = threading.current_thread()

    def trace(sql: str) -> None:
        if threading.current_thread() is me:
            seen.append(sql)

    conn = ws._store.conn
    conn.set_trace_callback(trace)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


#: The statuses a run ends in.
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})


class StatusRecorder:
    """Records every distinct status of every run of a workspace, polling its database
    through a connection of its own (as another process would) every millisecond."""

    def __init__(self, ws: Workspace) -> None:
        self.db = ws._store.db_path
        self.seen: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            while not self._stop.is_set():
                for run_id, status in conn.execute("SELECT id, status FROM runs"):
                    history = self.seen.setdefault(run_id, [])
                    if not history or history[-1] != status:
                        history.append(status)
                time.sleep(0.001)
        finally:
            conn.close()

    def __enter__(self) -> StatusRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_seen(self, run_id: str, status: str, timeout_s: float = 10.0) -> None:
        """Wait until the recorder has seen the run in ``status`` (for short-lived states
        that the test itself ends, such as NotResponding before SIGCONT)."""
        wait_until(
            lambda: status in self.seen.get(run_id, []),
            timeout_s,
            message=f"the recorder to see run {run_id} {status}",
        )

    def history(self, run_id: str, timeout_s: float = 10.0) -> list[str]:
        """The statuses seen for a run, in order, once the recorder saw it end."""

        def ended() -> bool:
            seen = self.seen.get(run_id, [])
            return bool(seen) and seen[-1] in TERMINAL

        wait_until(ended, timeout_s, message=f"the recorder to see run {run_id} end")
        return list(self.seen[run_id])


def daemon_pid(ws_path: Path) -> int | None:
    """The pid the workspace's (last) daemon wrote down, if it is still alive."""
    try:
        pid = int(json.loads((ws_path / "daemon" / "daemon.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return pid


def workspaces_under(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "workspace.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # nothing of interest inside a workspace
    return found


def run_processes_under(root: Path) -> list[psutil.Process]:
    """Live processes of runs whose workspace lies under ``root`` (found by environment)."""
    prefixes = {str(root), str(root.resolve())}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except psutil.Error:
            continue
        ws = env.get("RUNNER_WORKSPACE", "")
        if env.get("RUNNER_RUN_ID") and any(ws.startswith(p) for p in prefixes):
            found.append(proc)
    return found


def stop_daemons_under(root: Path) -> list[str]:
    """Stop the daemon of every workspace under ``root``; problems found, as sentences."""
    import contextlib
    import signal

    from runner import daemon_client

    problems = []
    for ws_path in workspaces_under(root):
        pid = daemon_pid(ws_path)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a test may have stopped it
        daemon_client.stop_daemon(ws_path, timeout_s=15)
        # Its lock goes with its files, a moment before the process is gone.
        gone_by = time.monotonic() + 10
        while (pid := daemon_pid(ws_path)) is not None and time.monotonic() < gone_by:
            time.sleep(0.02)
        if pid is not None:
            problems.append(f"the daemon of {ws_path} (pid {pid}) did not stop when asked")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return problems
