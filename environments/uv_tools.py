"""Finding and running uv: the binary, the environment variables it runs with (TLS,
indexes, no Python downloads: see :mod:`environments.venv`), and one logged run of it."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from environments.cache import log_line, log_size, log_tail
from runner.errors import EnvironmentBuildError

__all__ = ["SYSTEM_CA_BUNDLE", "find_uv", "uv_environment"]

#: The CA bundle handed to uv when nothing else is configured.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def find_uv() -> str:
    """The uv binary: the one the ``uv`` package ships (a runner dependency), else uv on PATH.

    Raises:
        EnvironmentBuildError: neither is there.
    """
    try:
        from uv import find_uv_bin  # lazy: the package may be absent (then uv on PATH)
    except ImportError:
        pass
    else:
        try:
            return find_uv_bin()
        except FileNotFoundError:
            pass
    found = shutil.which("uv")
    if found:
        return found
    raise EnvironmentBuildError(
        "uv is not installed: pip environments are built with it; `pip install uv` into the "
        f"Python that runs runner ({sys.executable})"
    )


def uv_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables uv runs with: TLS, index and no-download settings added."""
    env = dict(os.environ if base is None else base)
    system_certs = env.get("UV_SYSTEM_CERTS") or env.get("UV_NATIVE_TLS")
    if not env.get("SSL_CERT_FILE") and not system_certs and SYSTEM_CA_BUNDLE.is_file():
        env["SSL_CERT_FILE"] = str(SYSTEM_CA_BUNDLE)
    for pip_name, uv_name in (
        ("PIP_INDEX_URL", "UV_INDEX_URL"),
        ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"),
    ):
        if env.get(pip_name) and not env.get(uv_name):
            env[uv_name] = env[pip_name]
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env["UV_NO_PROGRESS"] = "1"  # no spinners in a log file
    env["NO_COLOR"] = "1"
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON", "UV_SYSTEM_PYTHON"):
        env.pop(var, None)  # --python names the target; nothing else may
    return env


def _run_logged(
    argv: Sequence[str], log: Path, env: Mapping[str, str], what: str, cwd: Path
) -> str:
    """Run uv with its stderr (and, unless captured, stdout) appended to ``log`` as it comes.

    It runs in ``cwd`` (the cache folder), so that no ``uv.toml`` or ``pyproject.toml`` of
    wherever runner was started changes the build.

    Returns stdout when ``what`` is ``"freeze"`` (captured), else "". Raises
    EnvironmentBuildError when it exits non-zero; the child is killed if we are interrupted.
    """
    start = log_size(log)
    log_line(log, "$ " + shlex.join(argv))
    capture = what == "freeze"
    t0 = time.monotonic()
    with open(log, "ab", buffering=0) as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else out,
            stderr=out,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate()
        finally:
            if proc.poll() is None:  # interrupted: leave no uv (nor a build backend) behind
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
                proc.wait()
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        log_line(log, f"{what} failed: exit code {proc.returncode} after {seconds:.2f} s")
        reason = _uv_error(log_tail(log, since=start))
        raise EnvironmentBuildError(
            f"`uv {what}` exited with {proc.returncode}" + (f": {reason}" if reason else "")
        )
    log_line(log, f"{what}: done in {seconds:.2f} s")
    return stdout.decode("utf-8", "replace") if capture else ""


def _uv_error(output: str) -> str:
    """uv's ``error:`` line and its ``cause:`` lines, as one line ("" if there is none)."""
    found: list[str] = []
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("error:"):
            found = [text.removeprefix("error:").strip()]
        elif found and text.startswith(("cause:", "Caused by:")):
            found.append(text.split(":", 1)[1].strip())
    return "; ".join(part for part in found if part)
