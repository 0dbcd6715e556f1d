"""Processes: identity that survives pid reuse, liveness, and killing whole trees.

A process is named by (pid, create_time): a pid alone may be reused by an unrelated
process after the original exits. Zombies count as dead (``kill -0`` succeeds on them).
Host side only: imports psutil.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

import psutil

#: The default grace period between SIGTERM and SIGKILL on cancel.
DEFAULT_GRACE_S = 10.0


@dataclass(frozen=True)
class ProcessId:
    """A process identity that pid reuse cannot fake."""

    pid: int  #: the operating system's process id
    create_time: float  #: psutil's create time, seconds since the epoch

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        """The identity of a running process; psutil.NoSuchProcess if it is gone."""
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live psutil.Process, or None when it has exited (or is a zombie)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def is_alive(self) -> bool:
        """Whether this very process still runs."""
        return self.process() is not None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(
    root: ProcessId, session: int | None = None, env_marker: tuple[str, str] | None = None
) -> list[psutil.Process]:
    """The root and every descendant, plus processes of the root's session, plus
    processes whose environment holds ``env_marker`` (NAME, VALUE).

    Descendants that started their own session (``setsid``) are found through the
    parent links psutil sees at the moment of the snapshot; processes still in the
    run's session but re-parented elsewhere are found by session id. A process that
    left the session *and* lost its parent (a double-forked daemon) has no link left to
    the run but the environment it inherited: ``env_marker`` finds it.
    """
    found: dict[int, psutil.Process] = {}
    top = root.process()
    if top is not None:
        found[top.pid] = top
        try:
            for child in top.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    if session is not None or env_marker is not None:
        me = os.getpid()
        for proc in psutil.process_iter():
            try:
                if proc.pid in found or proc.pid == me:
                    continue
                if (session is not None and os.getsid(proc.pid) == session) or (
                    env_marker is not None and _has_env(proc, env_marker)
                ):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found.setdefault(child.pid, child)
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                continue
    return list(found.values())


def _has_env(proc: psutil.Process, marker: tuple[str, str]) -> bool:
    needle = f"\0{marker[0]}={marker[1]}\0".encode()
    try:  # the raw block: several times faster than psutil's parsed dict
        with open(f"/proc/{proc.pid}/environ", "rb") as f:
            return needle in b"\0" + f.read() + b"\0"
    except FileNotFoundError:
        pass
    except OSError:  # gone, or not ours to read
        return False
    try:  # no /proc: not Linux
        return proc.environ().get(marker[0]) == marker[1]
    except psutil.Error:  # gone, a zombie, or not ours to read
        return False


def terminate_tree(
    root: ProcessId,
    grace_s: float = DEFAULT_GRACE_S,
    *,
    session: int | None = None,
    env_marker: tuple[str, str] | None = None,
    extra: list[psutil.Process] | None = None,
) -> list[int]:
    """SIGTERM the whole tree, wait up to ``grace_s``, SIGKILL what is left.

    Returns the pids that had to be killed. The tree is snapshotted before the first
    signal and re-scanned once after it, so children forked while dying are caught too.
    """
    procs = {p.pid: p for p in process_tree(root, session, env_marker)}
    for p in extra or []:
        procs.setdefault(p.pid, p)
    _signal_all(procs.values(), signal.SIGTERM)
    # Children started between the snapshot and the signal: one more pass.
    for p in process_tree(root, session, env_marker):
        if p.pid not in procs:
            procs[p.pid] = p
            _signal_all([p], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    delay = 0.001
    while True:
        left = [p for p in procs.values() if _alive(p)]
        if not left:
            return []
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(delay, deadline - now))  # KILL on time, not up to a poll late
        delay = min(delay * 2, 0.02)
    _signal_all(left, signal.SIGKILL)
    gone_deadline = time.monotonic() + 5.0
    while any(_alive(p) for p in left) and time.monotonic() < gone_deadline:
        time.sleep(0.002)
    return [p.pid for p in left]


def _signal_all(procs: object, sig: int) -> None:
    for p in procs:  # type: ignore[attr-defined]
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            p.send_signal(sig)


def groups_of(pid: int) -> set[int]:
    """The supplementary groups of a process (from /proc), empty if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()
