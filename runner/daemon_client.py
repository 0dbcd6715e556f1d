"""Talking to a workspace's daemon: find it, start it on demand, send it requests.

Standard library only: a script inside a run uses this for ``submit_child`` and
``cancel``. Requests and answers are one JSON object per line.

The daemon listens on a Unix socket file inside the workspace's private daemon folder
(``WS/daemon/daemon.sock``), not in the abstract namespace: any user on the machine can
bind or connect to an abstract name, while the folder's permissions keep everyone but the
workspace's owner (and the shared group, if one is set) from reaching the file at all.
Both ends check the other's credentials besides: the daemon serves only the owner (see
runner.service.daemon), and a client talks only to the process that ``daemon.json`` names, so a
socket bound by anything else is reported and never obeyed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import access
from runner.errors import RunnerError, RunnerWarning, TargetUnavailableError

#: Seconds a daemon started on demand stays up with nothing to do.
DEFAULT_IDLE_EXIT_S = 600.0
#: The largest request or answer line either end accepts (every request is tiny).
MAX_MESSAGE_BYTES = 1 << 20
_SOCKET_NAME = "daemon.sock"
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class DaemonImpostorError(TargetUnavailableError, ConnectionError):
    """The workspace's socket is answered by a process that is not its daemon.

    A ConnectionError too: callers treat it as "no daemon answers", so a real daemon is
    started (it replaces the socket) and nothing is ever sent to the impostor.
    """


def daemon_dir(ws_path: Path) -> Path:
    """The workspace folder holding the daemon's lock, log and info files."""
    return ws_path / "daemon"


def socket_path(ws_path: Path) -> Path:
    """The daemon's socket file for a workspace."""
    return daemon_dir(ws_path) / _SOCKET_NAME


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits in sockaddr_un (107 bytes).

    A deeper workspace is reached through its folder's descriptor (/proc/self/fd/N/...),
    which the kernel resolves like the full path.
    """
    text = str(path)
    if len(os.fsencode(text)) < 100 or not sys.platform.startswith("linux"):
        yield text
        return
    fd = os.open(str(path.parent), os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid, gid


def recv_line(sock: socket.socket, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Bytes up to and including a newline (the protocol's one message), or what came
    before the peer closed the connection. ValueError past ``limit`` bytes."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"message longer than {limit} bytes")
    return data


def daemon_info(ws_path: Path) -> dict[str, Any]:
    """What the running (or last) daemon wrote about itself: pid, python, pythonpath,
    and ``uid``, the owner of the file (the daemon's user)."""
    try:
        with open(daemon_dir(ws_path) / "daemon.json", "rb") as f:
            uid = os.fstat(f.fileno()).st_uid
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return {**data, "uid": uid} if isinstance(data, dict) else {}


def _verify_daemon(ws_path: Path, sock: socket.socket) -> None:
    """Raise DaemonImpostorError unless the peer is the daemon ``daemon.json`` names: the
    same pid, and the user who wrote the file."""
    if not hasattr(socket, "SO_PEERCRED"):
        return  # no credentials to check (not Linux); the folder's permissions still hold
    pid, uid, _ = peer_credentials(sock)
    info = daemon_info(ws_path)
    if pid == 0:
        # The kernel names no pid for a peer outside this pid namespace (a run in a
        # container talking to the host's daemon): only its uid can be checked.
        pid = int(info.get("pid") or 0)
    if (pid, uid) != (info.get("pid"), info.get("uid")):
        raise DaemonImpostorError(
            f"the daemon socket of workspace {ws_path} is answered by pid {pid} (uid {uid}), "
            f"not by the workspace's daemon (pid {info.get('pid')}, uid {info.get('uid')} "
            "in daemon.json); refusing to talk to it",
            hint="stop that process; `runner daemon start` then replaces the socket",
        )


def request(ws_path: Path, message: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request and return the answer.

    ConnectionError if no daemon listens (DaemonImpostorError, a ConnectionError, if
    something else does).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        with socket_address(socket_path(ws_path)) as address:
            sock.connect(address)
        _verify_daemon(ws_path, sock)
        # a daemon that refuses answers before reading: its answer is still here
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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
    except DaemonImpostorError as exc:
        warnings.warn(str(exc), RunnerWarning, stacklevel=2)
        return False
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
        except DaemonImpostorError as exc:
            warnings.warn(str(exc), RunnerWarning, stacklevel=2)
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
    env = dict(os.environ)
    # The daemon must never inherit a run's identity.
    for var in ("RUNNER_RUN_ID", "RUNNER_EXPERIMENT"):
        env.pop(var, None)
    env["RUNNER_WORKSPACE"] = str(ws_path)
    if os.environ.get("RUNNER_RUN_ID"):
        data = daemon_info(ws_path)
        if data.get("python"):
            env["PYTHONPATH"] = str(data.get("pythonpath", ""))
            return str(data["python"]), env
    package_parent = str(Path(__file__).resolve().parent.parent)
    paths = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return sys.executable, env


def ensure_daemon(ws_path: Path, timeout_s: float = 30.0, idle_exit_s: float | None = None) -> None:
    """Start the workspace's daemon unless one answers; return once it answers."""
    if is_running(ws_path):
        return
    folder = daemon_dir(ws_path)
    policy = access.access_of(ws_path)
    access.make_dirs(folder, policy)
    fd = access.create_file(folder / "start.lock", policy, os.O_RDWR)
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
            [
                python,
                "-m",
                "runner.service.daemon",
                "run",
                str(ws_path),
                "--detach",
                "--idle-exit",
                idle,
            ],
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
