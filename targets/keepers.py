"""The processes of local runs: keepers (``runner.keeper``), started ahead of need, and
the handle of a run's process tree. What LocalTarget (targets/local.py) starts runs with.

Each run has a keeper process: the leader of the run's own session, a child subreaper
(orphans of the run come back to it), the holder of the run's cgroup where cgroup v2 can
be used, and the writer of its exit code. Starting Python costs ~10 ms of CPU, more than
the rest of a small run's overhead, so the daemon keeps a keeper factory
(``KeeperFactory``, ``keeper.py factory``) that forks keepers ahead of need: a launch
hands the idle one its spec.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import psutil

from runner import keeper as keeper_mod
from runner.errors import TargetUnavailableError
from runner.service.proc import ProcessId, terminate_tree
from runner.shim import LEFTOVER_GRACE_S, read_exit_file
from targets.base import Job, LaunchSpec, LocalTree
from targets.host import HostHandle

#: The variable every process of a run inherits (set by the daemon): it finds processes
#: that left both the run's session and its process tree (a double-forked daemon).
RUN_ID_VAR = "RUNNER_RUN_ID"
#: How long past the grace period a canceled keeper may take before it is killed too.
KEEPER_MARGIN_S = 5.0
#: How long a new daemon waits for the keeper of a run an earlier daemon was launching.
LAUNCH_EVIDENCE_S = 3.0
_KEEPER = str(Path(keeper_mod.__file__).resolve())


def started_file(exit_file: Path) -> Path:
    """Where a run's keeper records that it started the run (beside the exit file)."""
    return exit_file.with_name("started")


def read_started(exit_file: Path) -> dict[str, object] | None:
    """What the run's keeper recorded when it started the script (pid, cgroup), or None."""
    try:
        data = json.loads(started_file(exit_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class KeeperFactory:
    """The daemon's end of ``keeper.py factory``: hands launch specs to ready keepers.

    The factory process is started on first use (and again if it died); it always has an
    idle keeper forked, set up as a subreaper and, where cgroups are used, already inside
    a cgroup of its own, waiting for a spec. Closing its stdin (``close()``, or the
    daemon's death) ends the factory and its idle keeper; keepers that keep runs go on.
    """

    def __init__(self, python: str | None = None, cache_dir: Path | None = None) -> None:
        self.python = python or sys.executable
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._program: str | None = None

    def program(self) -> str:
        """The keeper as a compiled file in ``cache_dir`` (a script given by path is
        compiled at every start), else its source."""
        if self._program is None:
            self._program = _KEEPER
            if self.cache_dir is not None:
                import hashlib
                import py_compile

                # Named by its source and by this interpreter (which compiles it and runs it
                # as self.python): a stale or foreign .pyc is never picked up.
                digest = hashlib.sha256(Path(_KEEPER).read_bytes()).hexdigest()[:16]
                target = self.cache_dir / f"keeper-{digest}.{sys.implementation.cache_tag}.pyc"
                try:
                    if not target.exists():
                        tmp = target.with_name(f"{target.name}.{os.getpid()}")
                        py_compile.compile(_KEEPER, cfile=str(tmp), doraise=True)
                        # (py_compile copies the source's mode: the folder's is what counts)
                        os.chmod(tmp, self.cache_dir.stat().st_mode & 0o660)
                        os.replace(tmp, target)
                    self._program = str(target)
                except (OSError, py_compile.PyCompileError):
                    pass  # the source works too, only slower
        return self._program

    def start(self) -> None:
        """Start the factory now (it forks its first idle keeper at once)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            proc = self._proc = subprocess.Popen(
                [self.python, "-I", "-S", self.program(), "factory"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        return proc

    def launch(self, spec: bytes) -> ProcessId:
        """Hand a marshal-ed spec to the idle keeper; its identity. OSError if the
        factory fails (it is restarted on the next call)."""
        with self._lock:
            proc = self._ensure()
            stdin, stdout = proc.stdin, proc.stdout
            if stdin is None or stdout is None:  # never: both are PIPEs
                raise OSError("the keeper factory has no pipes")
            try:
                stdin.write(len(spec).to_bytes(4, "big") + spec)
                stdin.flush()
                answer = stdout.readline()
            except OSError:
                self._stop(proc)
                raise
            try:
                pid, created = answer.split()
                # (create time None: it died at once; the exit file tells the rest)
                return ProcessId(int(pid), 0.0 if created == b"None" else float(created))
            except ValueError:
                self._stop(proc)
                raise OSError(f"the keeper factory answered {answer[:80]!r}") from None

    def close(self) -> None:
        """End the factory and its idle keeper (running keepers are not touched)."""
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)
                self._proc = None

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._proc is proc:
            self._proc = None


def identify(pid: int, created: float) -> ProcessId:
    """A keeper's identity as psutil computes it now.

    ``created`` (from the keeper or its factory) is boot time + start ticks read in another
    process, maybe hours ago: a clock step since then moves the boot time /proc reports,
    and psutil's exact comparison would take a live keeper for a dead one. A process with
    that pid started within a second of ``created`` is the keeper; none: it has ended.
    """
    try:
        now = ProcessId.of(pid)
    except Exception:  # gone (or not ours to see): the exit file tells the rest
        return ProcessId(pid, created)
    return now if abs(now.create_time - created) < 1.0 else ProcessId(pid, created)


def _exit_waiter(pid: ProcessId, exited: threading.Event) -> None:
    """Set ``exited`` when a process that is not our child ends (a pidfd, Linux 5.3+;
    elsewhere a poll that slows to 0.1 s)."""
    fd = -1
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(pid.pid)
    try:
        if fd >= 0 and pid.is_alive():  # the pidfd is of this very process
            select.select([fd], [], [])
        else:
            delay = 0.005
            while pid.is_alive():
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
    finally:
        if fd >= 0:
            os.close(fd)
        exited.set()


class LocalHandle(HostHandle):
    """A run's process tree on this machine."""

    def __init__(
        self,
        pid: ProcessId,
        exit_file: Path,
        popen: subprocess.Popen[bytes] | None = None,
        run_id: str | None = None,
        keeper: bool = False,
    ) -> None:
        self.pid = pid
        self.exit_file = exit_file
        self.run_id = run_id
        #: the tree is kept by runner.keeper (runs launched by older versions: a sh shim)
        self.keeper = keeper
        self._popen = popen
        self._code: int | None = None
        self._exited = threading.Event()
        # A thread blocked on the exit notices it at once (Popen.wait(timeout) would poll
        # with sleeps of up to 50 ms): waitpid for our child, a pidfd for another's.
        if popen is not None:
            threading.Thread(target=self._reap, args=(popen,), daemon=True).start()
        elif keeper:
            threading.Thread(target=_exit_waiter, args=(pid, self._exited), daemon=True).start()

    def _reap(self, popen: subprocess.Popen[bytes]) -> None:
        popen.wait()
        self._exited.set()

    def poll(self) -> int | None:
        """The exit code, or None while the run's keeper is alive."""
        if self._code is not None:
            return self._code
        if self._popen is not None:
            code = self._popen.poll()
            if code is None:
                return None
            self._code = read_exit_file(self.exit_file)
            if self._code is None:  # the keeper itself died (killed by a signal)
                self._code = 128 - code if code < 0 else code
            return self._code
        if self.pid.is_alive():
            return None
        code2 = read_exit_file(self.exit_file)
        # Gone without an exit file: killed while nobody could see how it ended.
        self._code = code2 if code2 is not None else -1
        return self._code

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code; None if ``timeout_s`` passed first."""
        if (self._popen is not None or self.keeper) and self._code is None:
            if not self._exited.wait(timeout_s):
                return None
            return self.poll()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = 0.005
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        return code

    def cancel(self, grace_s: float = 10.0) -> None:
        """Stop the whole tree: SIGTERM, ``grace_s``, SIGKILL for whatever is left.

        A keeper does it for its run (it knows every process, the escaped ones too); what
        runs here is the check that it did, and the fallback when the keeper is gone or
        hangs: the tree, the session and the processes carrying the run's id, and the
        run's cgroup.
        """
        if self.keeper:
            proc = self.pid.process()
            if proc is not None:
                # (the keeper may end between the look and the signal: seen once in 1,000 runs)
                with contextlib.suppress(OSError, psutil.NoSuchProcess):
                    proc.terminate()
                self.wait(grace_s + KEEPER_MARGIN_S)
            if read_exit_file(self.exit_file) is not None and not self.pid.is_alive():
                return  # the keeper saw every process of the run end
        marker = (RUN_ID_VAR, self.run_id) if self.run_id else None
        terminate_tree(
            self.pid, 0.0 if self.keeper else grace_s, session=self.pid.pid, env_marker=marker
        )
        cgroup = (read_started(self.exit_file) or {}).get("cgroup")
        if isinstance(cgroup, str) and os.path.isdir(cgroup):
            keeper_mod.kill_cgroup(cgroup)
            keeper_mod.remove_cgroup(cgroup)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)

    def describe(self) -> dict[str, str]:
        """Enough to reattach: pid, its create time, the exit file (and the run id)."""
        described = {
            "kind": "local",
            "pid": str(self.pid.pid),
            "create_time": repr(self.pid.create_time),
            "exit_file": str(self.exit_file),
        }
        if self.keeper:
            described["keeper"] = "1"
        if self.run_id:
            described["run_id"] = self.run_id
        return described

    def properties(self) -> dict[str, str] | None:
        """``runner.containment`` (``cgroup`` or ``subreaper``: how the keeper holds the
        run's processes together) once the keeper has said; None until then."""
        if not self.keeper:
            return {}
        started = read_started(self.exit_file)
        if started is None:
            return None
        return {"runner.containment": "cgroup" if started.get("cgroup") else "subreaper"}

    def local_tree(self) -> LocalTree | None:
        """The keeper and the run's processes below it."""
        return LocalTree(self.pid, root_is_runner=self.keeper)


def _log(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")


def _send(pipe: IO[bytes] | None, line: bytes) -> None:
    if pipe is None:
        raise OSError("the keeper has no stdin")
    try:
        pipe.write(line)
        pipe.flush()
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def start_run(spec: LaunchSpec, keepers: KeeperFactory | None) -> LocalHandle:
    """Hand the run to a keeper (the factory's, else one of its own); its output goes to
    the driver log."""
    spec.driver_log.parent.mkdir(parents=True, exist_ok=True)
    # marshal: the keeper reads it without importing json (its start would double).
    line = marshal.dumps(
        {
            "run_id": spec.run_id,
            "argv": [str(a) for a in spec.argv],
            "env": {str(k): str(v) for k, v in spec.env.items()},
            "workdir": str(spec.workdir),
            "driver_log": str(spec.driver_log),
            "exit_file": str(spec.exit_file),
            "started": str(started_file(spec.exit_file)),
            "grace_s": float(spec.grace_s),
            "leftover_grace_s": LEFTOVER_GRACE_S,
            "cgroup": keeper_mod.cgroups_wanted(),
            "umask": spec.umask,
            "ranks": [
                {
                    "rank": r.rank,
                    "env": {str(k): str(v) for k, v in r.env.items()},
                    "log": str(r.log),
                }
                for r in spec.ranks
            ],
        }
    )
    if keepers is not None:
        try:
            described = keepers.launch(line)
            pid = identify(described.pid, described.create_time)
        except OSError as exc:
            _log(f"the keeper factory failed ({exc}); starting a keeper of its own")
        else:
            return LocalHandle(
                pid, spec.exit_file, run_id=spec.env.get(RUN_ID_VAR) or spec.run_id, keeper=True
            )
    try:
        popen = _fresh_keeper()
        _send(popen.stdin, line)
    except OSError as exc:
        raise TargetUnavailableError(f"could not start the run's keeper: {exc}") from exc
    try:
        pid = ProcessId.of(popen.pid)
    except Exception:  # exited already; create time unknown but the popen knows the code
        pid = ProcessId(popen.pid, 0.0)
    return LocalHandle(
        pid, spec.exit_file, popen, run_id=spec.env.get(RUN_ID_VAR) or spec.run_id, keeper=True
    )


def _fresh_keeper() -> subprocess.Popen[bytes]:
    """A keeper of this run's own, started now (no factory, or it failed)."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", _KEEPER],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # the run's own session, led by its keeper
        close_fds=True,
    )


def find_started(job: Job) -> dict[str, str] | None:
    """The keeper an earlier daemon started for the run, as it recorded its start in the
    run's folder (waiting ``LAUNCH_EVIDENCE_S`` for it); None when there is none."""
    deadline = time.monotonic() + LAUNCH_EVIDENCE_S
    started = read_started(job.exit_file)
    while started is None and time.monotonic() < deadline:
        time.sleep(0.05)
        started = read_started(job.exit_file)
    if started is None:
        return None
    keeper = identify(int(str(started["pid"])), float(str(started.get("create_time") or 0)))
    return LocalHandle(keeper, job.exit_file, run_id=job.run_id, keeper=True).describe()


def handle_of(described: Mapping[str, str]) -> LocalHandle:
    """A handle for a run started by an earlier supervisor."""
    pid = ProcessId(int(described["pid"]), float(described["create_time"]))
    return LocalHandle(
        pid,
        Path(described["exit_file"]),
        run_id=described.get("run_id"),
        keeper=described.get("keeper") == "1",
    )
