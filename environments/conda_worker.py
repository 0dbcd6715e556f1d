"""The py-rattler worker: a short process that solves or installs, and its result.

py-rattler runs in a short worker process (:mod:`environments.rattler_worker`), never in this
one: its Rust threads can crash a finishing interpreter (SIGSEGV during finalization, 10-27 %
of short runs). The worker prints one JSON result on stdout and leaves with ``os._exit``;
:func:`run_worker` trusts that result over the exit code, and treats a missing result as a
failure. The worker's progress lines go to the build log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from environments.cache import log_line, log_size, log_tail
from runner.errors import EnvironmentBuildError

__all__ = ["WORKER_SCRIPT", "run_worker"]

JSONDict = dict[str, Any]

#: The py-rattler worker, run by path with this interpreter.
WORKER_SCRIPT = Path(__file__).resolve().with_name("rattler_worker.py")
_INSTALL_HELP = "pip install py-rattler conda-lock"
_HINTS = {
    "unknown-package": (
        "check the package names, or add the channel that has them with "
        "conda_dependencies.add_channel(URL) (a file:// URL or a path for a local channel)"
    ),
    "unsolvable": "relax or change the version pins; the solver's explanation is above",
    "invalid-spec": "write conda match specs such as 'numpy=1.26' or 'numpy >=1.26,<2'",
    "no-channel": "add one with conda_dependencies.add_channel(URL)",
    "missing": _INSTALL_HELP,
    "lock": "pass a conda-lock.yml written by runner or by conda-lock",
    "platform": "rebuild the lock on this platform, or solve the definition again",
}


class _WorkerFailed(EnvironmentBuildError):
    """The worker reported a failure of a known kind (unknown package, unsolvable...)."""

    def __init__(self, kind: str, message: str, *, log_path: str | None = None) -> None:
        super().__init__(message, log_path=log_path, hint=_HINTS.get(kind))
        self.kind = kind


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _last_json(stdout: bytes) -> JSONDict | None:
    """The worker's result: the last stdout line that is a JSON object with an "ok" key."""
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def run_worker(
    request: Mapping[str, Any],
    log: Path,
    *,
    argv: Sequence[str] | None = None,
    cwd: Path | None = None,
) -> JSONDict:
    """Run one py-rattler worker request; return its result (``"ok": true``).

    The worker's stderr (progress) is appended to ``log``. Its result counts, not its exit
    code: an exit by signal or with 134/139 after ``"ok": true`` is py-rattler's finalization
    crash and is logged and ignored.

    Args:
        request: the JSON request (see :mod:`environments.rattler_worker`).
        log: the build log.
        argv: the worker command (default: this Python running :data:`WORKER_SCRIPT`).
        cwd: where the worker runs (default: the current folder).

    Raises:
        EnvironmentBuildError: the worker reported a failure (its message, with a hint for
            the known kinds), or ended without a result.
    """
    command = list(argv) if argv is not None else [sys.executable, str(WORKER_SCRIPT)]
    op = str(request.get("op", "?"))
    start = log_size(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "ab", buffering=0) as err:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(json.dumps(dict(request)).encode("utf-8"))
        finally:
            if proc.poll() is None:  # interrupted: leave no worker behind
                proc.kill()
                proc.wait()
    code = proc.returncode
    result = _last_json(stdout)
    seconds = time.monotonic() - t0
    if result is None:
        log_line(log, f"rattler worker ({op}) ended with {_describe_exit(code)} without a result")
        raise EnvironmentBuildError(
            f"the py-rattler worker ({op}) ended with {_describe_exit(code)} after "
            f"{seconds:.2f} s without reporting a result; its last output: "
            f"{log_tail(log, 5, since=start) or '(none)'}",
            log_path=str(log),
            hint=f"if py-rattler is missing or broken: {_INSTALL_HELP}",
        )
    if code != 0 and result.get("ok") is True:
        log_line(
            log,
            f"rattler worker ({op}) ended with {_describe_exit(code)} after reporting success "
            "(py-rattler's finalization crash); the result stands",
        )
    if result.get("ok") is not True:
        kind = str(result.get("kind", "error"))
        raise _WorkerFailed(kind, str(result.get("message", "no message")), log_path=str(log))
    return result
