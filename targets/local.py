"""LocalTarget: the run as a process tree in its own session on this machine, under the
exit-code shim of ``runner.shim``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from runner.errors import TargetUnavailableError
from runner.proc import ProcessId, terminate_tree
from runner.shim import SHIM, read_exit_file
from targets.base import LaunchSpec

#: The variable every process of a run inherits (set by the daemon): it finds processes
#: that left both the run's session and its process tree (a double-forked daemon).
RUN_ID_VAR = "RUNNER_RUN_ID"


class LocalHandle:
    """A run's process tree on this machine."""

    def __init__(
        self,
        pid: ProcessId,
        exit_file: Path,
        popen: subprocess.Popen[bytes] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.pid = pid
        self.exit_file = exit_file
        self.run_id = run_id
        self._popen = popen
        self._code: int | None = None
        self._exited = threading.Event()
        if popen is not None:
            # A blocking waitpid in a thread notices the exit at once; Popen.wait(timeout)
            # would poll with sleeps of up to 50 ms.
            threading.Thread(target=self._reap, args=(popen,), daemon=True).start()

    def _reap(self, popen: subprocess.Popen[bytes]) -> None:
        popen.wait()
        self._exited.set()

    def poll(self) -> int | None:
        """The exit code, or None while the run's main process is alive."""
        if self._code is not None:
            return self._code
        if self._popen is not None:
            code = self._popen.poll()
            if code is None:
                return None
            self._code = read_exit_file(self.exit_file)
            if self._code is None:  # the shim itself died (killed by a signal)
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
        if self._popen is not None and self._code is None:
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
        """TERM the whole tree (its session too), wait ``grace_s``, KILL the rest."""
        marker = (RUN_ID_VAR, self.run_id) if self.run_id else None
        terminate_tree(self.pid, grace_s, session=self.pid.pid, env_marker=marker)
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
        if self.run_id:
            described["run_id"] = self.run_id
        return described


class LocalTarget:
    """Runs processes on this machine."""

    kind: ClassVar[str] = "local"

    def check(self) -> None:
        """The local machine is always there."""

    def launch(self, spec: LaunchSpec) -> LocalHandle:
        """Start the run in its own session, stdout and stderr into the driver log."""
        spec.driver_log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(spec.driver_log, "ab") as log, open(os.devnull, "rb") as devnull:
                popen = subprocess.Popen(
                    [
                        "/bin/sh",
                        "-c",
                        SHIM,
                        "runner-shim",
                        str(spec.workdir),
                        str(spec.exit_file),
                        *spec.argv,
                    ],
                    stdin=devnull,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(spec.env),
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise TargetUnavailableError(f"could not start {spec.argv[0]!r}: {exc}") from exc
        try:
            pid = ProcessId.of(popen.pid)
        except Exception:  # exited already; create time unknown but the popen knows the code
            pid = ProcessId(popen.pid, 0.0)
        return LocalHandle(pid, spec.exit_file, popen, run_id=spec.env.get(RUN_ID_VAR))

    def reattach(self, described: Mapping[str, str]) -> LocalHandle:
        """A handle for a run started by an earlier supervisor."""
        pid = ProcessId(int(described["pid"]), float(described["create_time"]))
        return LocalHandle(pid, Path(described["exit_file"]), run_id=described.get("run_id"))

    def close(self) -> None:
        """Nothing to release."""
