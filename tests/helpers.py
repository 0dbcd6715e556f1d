"""Helpers shared by the tests: waiting on conditions and running the tiny scripts.

Tests synchronise with marker files and ``wait_until``; they never sleep and then
assert. Scripts under ``tests/scripts`` are real programs run as real processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
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


def run_code(
    code: str,
    *args: object,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (dedented; argv: ``args``) as its own process, as a notebook cell
    or a short script would run; the test process keeps nothing open."""
    return _run([python, "-c", textwrap.dedent(code), *map(str, args)], cwd, env, timeout_s)


def run_cli(
    *argv: str,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGV`` as its own process."""
    return _run([sys.executable, "-m", "runner", *argv], cwd, env, timeout_s)


def _run(
    argv: list[str],
    cwd: Path | str | None,
    env: Mapping[str, str] | None,
    timeout_s: float,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=script_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def stop_daemon_of(ws: Path) -> None:
    """``runner daemon stop`` for workspace folder ``ws`` (a test's clean-up)."""
    run_cli("daemon", "stop", cwd=REPO, env={"RUNNER_WORKSPACE": str(ws)})


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


def start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (the start time), or None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def recorded_pids(folder: Path) -> dict[int, tuple[str, str]]:
    """pid -> (start ticks, role) of every process a test script recorded in ``folder``
    (one file per pid holding '<ticks> <role>')."""
    out = {}
    for path in folder.iterdir():
        if path.name.isdigit():
            ticks, _, role = path.read_text().partition(" ")
            out[int(path.name)] = (ticks, role)
    return out


def alive_recorded(folder: Path) -> dict[int, str]:
    """pid -> role of the recorded processes that still run (pid reuse cannot fake one)."""
    return {
        pid: role
        for pid, (ticks, role) in recorded_pids(folder).items()
        if start_ticks(pid) == ticks
    }


def end_leftover_runs(root: Path, pids: Path, wait_s: float) -> list[str]:
    """After a test: give the processes of runs under ``root`` (recorded in ``pids``, or
    found by their environment) ``wait_s`` to end; kill the rest and say which."""
    deadline_at = time.monotonic() + wait_s
    while True:
        left_recorded = alive_recorded(pids)
        left_env = [p for p in run_processes_under(root) if p.pid not in left_recorded]
        if (not left_recorded and not left_env) or time.monotonic() > deadline_at:
            break
        time.sleep(0.02)
    if not left_recorded and not left_env:
        return []
    names = [f"{pid} ({role})" for pid, role in left_recorded.items()]
    names += [f"{p.pid} ({' '.join(_cmdline_of(p))[:200]})" for p in left_env]
    for pid in left_recorded:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in left_env:
        with suppress(psutil.Error):
            proc.kill()
    return ["processes of runs outlived the test: " + ", ".join(names)]


def _cmdline_of(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return ["(exited)"]


@contextmanager
def alarm_deadline(limit_s: float) -> Iterator[None]:
    """Fail the test if it runs past ``limit_s`` (there is no pytest-timeout here):
    SIGALRM interrupts the main thread's wait with the traceback of where it hung."""
    import pytest

    def on_alarm(signum: int, frame: Any) -> None:
        pytest.fail(f"the test took more than {limit_s} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cgroup_v2_problem() -> str | None:
    """Why runs cannot be contained in cgroup v2 here (None when they can): the test
    process must be root and a cgroup2 hierarchy must give new cgroups ``cgroup.kill``
    (Linux 5.14+). Probed by making (and removing) an empty cgroup."""
    if os.geteuid() != 0:
        return "cgroup containment needs root; the tests run as uid " + str(os.geteuid())
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [
                line.split(" - ")[0].split()[4]
                for line in f
                if " - " in line and line.split(" - ")[1].split()[0] == "cgroup2"
            ]
    except OSError as exc:
        return f"cannot read /proc/self/mountinfo: {exc}"
    if not mounts:
        return "no cgroup2 file system is mounted"
    own = "/"
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip() or "/"
    reasons = []
    for mount in mounts:
        for base in (Path(mount) / own.lstrip("/"), Path(mount)):
            if (base / "cgroup.kill").exists():
                return None
            probe = base / f"runner-test-probe-{os.getpid()}"
            try:
                probe.mkdir()
            except OSError as exc:
                reasons.append(f"{base}: {errno.errorcode.get(exc.errno, exc.errno)}")
                continue
            try:
                if (probe / "cgroup.kill").exists():
                    return None
                reasons.append(f"{base}: no cgroup.kill (kernel before 5.14)")
            finally:
                with contextlib.suppress(OSError):
                    probe.rmdir()
    return "no usable cgroup2 hierarchy: " + "; ".join(reasons)


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``): infrastructure must be there, not skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def run_setup_script(script: Path) -> str | None:
    """Run one of scripts/*_services.sh once per session; None when it succeeded, else why
    not."""
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    return None if proc.returncode == 0 else f"{script.name} failed: {proc.stdout}{proc.stderr}"


def require_service(
    what: str, problem: Callable[[], str | None], script: Path, enable: str
) -> None:
    """Skip unless ``problem()`` finds nothing; with CI=true, run ``script`` first (as root)
    and fail when ``what`` is still not usable."""
    import pytest

    found = problem()
    if found is not None and in_ci():
        if os.geteuid() == 0:
            found = run_setup_script(script) or problem()
        if found is not None:
            pytest.fail(f"CI=true and no usable {what}: {found}", pytrace=False)
    if found is not None:
        pytest.skip(f"no usable {what} ({found}); to enable: {enable}")


def require_cgroups() -> None:
    """Skip where runs cannot get a cgroup v2 of their own (fail instead under CI=true)."""
    import pytest

    problem = cgroup_v2_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but runs cannot be contained in cgroup v2: {problem}")
    pytest.skip(f"{problem} (run the tests as root on Linux 5.14+ to include this)")


def heartbeat_of(run: Any) -> float:
    """The run's last heartbeat (seconds since the epoch; 0 before the first)."""
    row = run._store.get_run(run.id)
    assert row is not None
    return float(row.heartbeat_utc or 0.0)


def source_folder(tmp_path: Path, code: str, name: str = "main.py") -> Path:
    """A new source folder under ``tmp_path`` holding one script (``code``, dedented)."""
    folder = tmp_path / f"src-{len(list(tmp_path.glob('src-*')))}"
    folder.mkdir()
    (folder / name).write_text(textwrap.dedent(code), encoding="utf-8")
    return folder


@dataclasses.dataclass
class CliResult:
    """What ``runner ARGV`` did in-process: its exit code and both streams."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def call_cli(capsys: Any, *argv: object) -> CliResult:
    """``runner ARGV`` in-process (paths are passed as their text); never a traceback."""
    from runner import cli

    code = cli.main([os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return CliResult(code, captured.out, captured.err)
