"""Talking to a workspace's daemon: find it, start it on demand, send it requests.

Standard library only: a script inside a run uses this for ``submit_child`` and
``cancel``. The daemon listens on a Unix socket (abstract namespace on Linux, so no
stale socket files and no path-length limits); requests and answers are one JSON
object per line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runner.errors import RunnerError, TargetUnavailableError

_LINUX = sys.platform.startswith("linux")  # abstract sockets exist on Linux only
#: Seconds a daemon started on demand stays up with nothing to do.
DEFAULT_IDLE_EXIT_S = 600.0


def daemon_dir(ws_path: Path) -> Path:
    """The workspace folder holding the daemon's lock, log and info files."""
    return ws_path / "daemon"


def socket_address(ws_path: Path) -> str:
    """The daemon's socket address for a workspace."""
    digest = hashlib.sha256(str(ws_path.resolve()).encode()).hexdigest()[:24]
    if _LINUX:
        return f"\0runner-daemon-{digest}"
    return f"/tmp/runner-daemon-{digest}.sock"  # noqa: S108 - a socket, named by hash


def recv_line(sock: socket.socket) -> bytes:
    """Bytes up to and including a newline (the protocol's one message), or what came
    before the peer closed the connection."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request(ws_path: Path, message: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request and return the answer; ConnectionError if no daemon listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(socket_address(ws_path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = recv_line(sock)
    if not data:
        raise ConnectionError("the daemon closed the connection without answering")
    answer: dict[str, Any] = json.loads(data)
    if answer.get("error"):
        raise RunnerError(f"daemon: {answer['error']}")
    return answer


def is_running(ws_path: Path) -> bool:
    """Whether a daemon answers for this very workspace (not a removed one at that path)."""
    try:
        answer = request(ws_path, {"op": "ping"}, timeout_s=2.0)
    except (OSError, ValueError):
        return False
    return answer.get("identity") == workspace_identity(ws_path)


def workspace_identity(ws_path: Path) -> list[int] | None:
    """The workspace file's [device, inode] (a removed and re-created one differs)."""
    try:
        st = (ws_path / "workspace.json").stat()
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def notify(ws_path: Path, message: dict[str, Any]) -> dict[str, Any] | None:
    """Send a request, starting the daemon first if none runs.

    A daemon that exists (it holds the workspace lock) but does not answer (stopped or
    busy) is not replaced: the request is already in the database and the daemon acts
    on it when it resumes. None is returned then.
    """
    unresponsive = False
    if message.get("op") == "wake":
        # The common case in one round trip: the daemon answers with its workspace's
        # identity, which is what is_running() would have asked for separately.
        try:
            answer = request(ws_path, message, timeout_s=2.0)
        except socket.timeout:
            unresponsive = True  # (stopped, or busy): no need to ask again
        except (OSError, ValueError):
            pass
        else:
            if answer.get("identity") == workspace_identity(ws_path):
                return answer
    if (unresponsive or not is_running(ws_path)) and _lock_held(ws_path):
        # A daemon killed a moment ago still holds the lock while it is reaped: wait a
        # little for the lock to be released before leaving the request to the database.
        deadline = time.monotonic() + 1.0
        while _lock_held(ws_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _lock_held(ws_path):
            return None
    ensure_daemon(ws_path)
    return request(ws_path, message)


def _host_python(ws_path: Path) -> tuple[str, dict[str, str]]:
    """The interpreter (and PYTHONPATH) to start a daemon with.

    Inside a run, sys.executable may be the user's environment without runner's
    host-side dependencies; the last daemon wrote down which Python it ran with.
    """
    info = daemon_dir(ws_path) / "daemon.json"
    env = dict(os.environ)
    # The daemon must never inherit a run's identity.
    for var in ("RUNNER_RUN_ID", "RUNNER_EXPERIMENT"):
        env.pop(var, None)
    env["RUNNER_WORKSPACE"] = str(ws_path)
    if os.environ.get("RUNNER_RUN_ID") and info.exists():
        try:
            data = json.loads(info.read_text())
            env["PYTHONPATH"] = data.get("pythonpath", "")
            return str(data["python"]), env
        except (OSError, ValueError, KeyError):
            pass
    package_parent = str(Path(__file__).resolve().parent.parent)
    paths = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return sys.executable, env


def ensure_daemon(ws_path: Path, timeout_s: float = 30.0, idle_exit_s: float | None = None) -> None:
    """Start the workspace's daemon unless one answers; return once it answers."""
    if is_running(ws_path):
        return
    folder = daemon_dir(ws_path)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(folder / "start.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if is_running(ws_path):
            return
        python, env = _host_python(ws_path)
        if idle_exit_s is not None:
            idle = str(idle_exit_s)
        else:
            idle = os.environ.get("RUNNER_DAEMON_IDLE_S", str(DEFAULT_IDLE_EXIT_S))
        starter = subprocess.Popen(
            [python, "-m", "runner.daemon", "run", str(ws_path), "--detach", "--idle-exit", idle],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(ws_path),
        )
        _, err = starter.communicate(timeout=timeout_s)  # the starter forks and exits at once
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while time.monotonic() < deadline:
            if is_running(ws_path):
                return
            if not _lock_held(ws_path) and starter.returncode not in (0, None):
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        log = folder / "daemon.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else err.decode()[-2000:]
        raise TargetUnavailableError(
            f"the runner daemon for workspace {ws_path} did not start within {timeout_s:.0f} s",
            hint=f"see {log}: {tail.strip()[-500:]}",
        )
    finally:
        os.close(fd)


def stop_daemon(ws_path: Path, timeout_s: float = 30.0) -> bool:
    """Ask the daemon to stop and wait until it is gone; False if none was running."""
    try:
        request(ws_path, {"op": "stop"})
    except OSError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(ws_path) and not _lock_held(ws_path):
            return True
        time.sleep(0.02)
    return False


def _lock_held(ws_path: Path) -> bool:
    path = daemon_dir(ws_path) / "daemon.lock"
    if not path.exists():
        return False
    fd = os.open(str(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
