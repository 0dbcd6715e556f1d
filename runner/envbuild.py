"""Building environments on demand: ``runner env build`` and the API behind it.

Three ways to say what to build:

- :func:`rebuild_from_run`: the exact environment a run ran in, from the lock the daemon
  stored with it (``azureml-environment/requirements.lock`` of a pip environment,
  ``azureml-environment/conda-lock.yml`` of a conda one). Nothing is solved: the venv is
  made with ``uv pip sync`` of the lock, the conda prefix is installed from the lock as it
  is (:meth:`~environments.venv.VenvBuilder.build_from_lock`,
  :meth:`~environments.conda.CondaBuilder.build_from_lock`). A user-managed run has no lock:
  nothing was built for it, so there is nothing to rebuild (a ConfigError says so).
- :func:`build_registered`: a registered environment (``Environment.get(ws, name,
  version)``), built now as ``env.build_local(ws)`` would, from the cache when it is there.
- :func:`build_definition` with :func:`load_definition`: a definition on disk (a folder
  written by ``env.save_to_directory``, a conda ``.yml``, a pip ``requirements.txt``).

Each returns the :class:`~environments.base.PreparedEnvironment`; the builders write their
progress to the build log given (default: the workspace's ``environment-builds.log``).
:class:`LogFollower` copies such a log to a stream while a build runs (the CLI shows it on
stderr).

The builders are imported when called, never at import time: this module is copied with
the rest of ``runner`` into the in-run client, which is standard-library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from environments.cache import log_line
from environments.conda import CondaBuilder
from environments.selection import builder_for, kind_of
from environments.venv import VenvBuilder, find_interpreter
from runner.conda_dependencies import PYTHON_DEFAULT_VERSION
from runner.environment import Environment
from runner.errors import ConfigError, NotFoundError
from runner.run import Run
from runner.status import NOT_YET_RUNNING_VALUES

if TYPE_CHECKING:
    from environments.base import PreparedEnvironment
    from runner.environment import Environment
    from runner.workspace import Workspace

__all__ = [
    "LOCK_ARTIFACTS",
    "LogFollower",
    "build_definition",
    "build_registered",
    "default_log",
    "describe",
    "find_run_lock",
    "load_definition",
    "new_build_log",
    "rebuild_from_run",
    "timed_build",
]

#: Where the daemon stores a run's environment lock, and which builder reads each one.
LOCK_FOLDER = "azureml-environment"
LOCK_ARTIFACTS = {
    f"{LOCK_FOLDER}/requirements.lock": "venv",
    f"{LOCK_FOLDER}/conda-lock.yml": "conda",
}
#: The header line of a venv lock that names the Python it was made with.
_PYTHON_HEADER = re.compile(r"^#\s*python:\s*(\S+)\s*$", re.MULTILINE)
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
#: How many logs of ``runner env build`` a workspace keeps.
BUILD_LOGS_KEPT = 50


def default_log(ws: Workspace) -> Path:
    """The workspace's build log, which ``env.build_local(ws)`` appends to as well."""
    return ws.path / "environment-builds.log"


def new_build_log(ws: Workspace, keep: int = BUILD_LOGS_KEPT) -> Path:
    """A fresh log file for one build (``runner env build``), under the workspace's
    ``environment-builds/``; only the newest ``keep`` such logs are kept."""
    folder = ws.path / "environment-builds"
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.log"))
    for stale in old[: max(0, len(old) - keep + 1)]:
        with contextlib.suppress(OSError):
            stale.unlink()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return folder / f"{stamp}-{os.getpid()}.log"


# --- rebuild from a run ---------------------------------------------------------------------


def find_run_lock(ws: Workspace, run_id: str) -> tuple[str, str] | None:
    """``(artifact name, builder kind)`` of the environment lock stored with a run, or None.

    Raises:
        NotFoundError: no such run in the workspace.
    """

    return _lock_of(Run.get(ws, run_id))


def _lock_of(run: Any) -> tuple[str, str] | None:
    names = set(run.get_file_names())
    for name, kind in LOCK_ARTIFACTS.items():
        if name in names:
            return name, kind
    return None


def rebuild_from_run(ws: Workspace, run_id: str, log: Path | None = None) -> PreparedEnvironment:
    """The exact environment of a run, rebuilt from its stored lock (no solve).

    The lock is downloaded from the run's files to a temporary folder and handed to the
    builder of its kind; the result lives in the environment cache under a key made from
    the lock (``venv-lock-...``, ``conda-lock-<platform>-...``), so a second rebuild of the
    same lock is a cache hit. A venv is made with the Python the lock names (``# python:
    X.Y.Z``; the run's ``python.interpreter_path`` when it is that version; another X.Y.*
    when X.Y.Z is not installed, said in the log).

    Args:
        ws: the run's workspace.
        run_id: the run.
        log: the build log (default :func:`default_log`).

    Raises:
        NotFoundError: no such run.
        ConfigError: the run has no lock: its environment is user-managed or a docker image
            (nothing was built), or was never built (the message says which, and what to do);
            or the Python the lock needs is not on this machine.
        EnvironmentBuildError: the rebuild failed; the message has the log's last lines.

    Example:
        >>> prepared = rebuild_from_run(ws, "train_1700000000_1a2b3c4d")  # doctest: +SKIP
        >>> prepared.python  # doctest: +SKIP
        '/root/.cache/runner/envs/venv-lock-9c1e.../bin/python'
    """

    run = Run.get(ws, run_id)
    log = default_log(ws) if log is None else Path(log)
    found = _lock_of(run)
    env = run.get_environment()
    if found is None:
        raise ConfigError(_no_lock_reason(run, env))
    name, kind = found
    log_line(log, f"rebuilding the environment of run {run_id} from its {name}")
    with tempfile.TemporaryDirectory(prefix="runner-lock-") as tmp:
        lock = Path(run.download_file(name, str(Path(tmp) / name.rsplit("/", 1)[-1])))
        if kind == "conda":
            return CondaBuilder().build_from_lock(lock, log)

        python = _lock_python(lock.read_text(encoding="utf-8", errors="replace"), env, log)
        return VenvBuilder().build_from_lock(lock, python, log)


def _no_lock_reason(run: Any, env: Environment) -> str:
    """Why a run has no environment lock, and what the user can do instead."""

    status = run.get_status()
    prefix = f"run {run.id} has nothing to rebuild: "
    try:
        kind = kind_of(env)
    except ConfigError:
        kind = "docker"
    if kind == "user_managed":
        python = env.python.interpreter_path or run.get_details()["runDefinition"].get("python")
        used = f" ({python})" if python else ""
        return (
            prefix + f"its environment {env.name!r} is user-managed "
            "(python.user_managed_dependencies = True), so runner built nothing and stored no "
            f"lock; it ran with its interpreter{used} as it is"
        )
    if kind == "docker":
        return (
            prefix + f"its environment {env.name!r} is a docker image (docker.enabled = True), "
            "which runner does not build, so no lock was stored"
        )
    if status in NOT_YET_RUNNING_VALUES:
        return (
            prefix + f"it is {status} and its environment {env.name!r} is not built yet, so no "
            "lock is stored; wait until it is Running and try again"
        )
    return (
        prefix + f"it ended {status} without a stored lock: its environment {env.name!r} was "
        "never built (see its azureml-logs/55_environment_prep_log.txt); to build the "
        "definition instead (solving again), save it with "
        "run.get_environment().save_to_directory(DIR) and run 'runner env build --file DIR'"
    )


def _lock_python(lock_text: str, env: Environment, log: Path) -> str:
    """The base Python of a venv rebuilt from ``lock_text``: a version, or a path.

    In order: the run's ``python.interpreter_path`` when it exists here and is the version
    the lock names; the lock's ``# python: X.Y.Z`` when that is installed; another X.Y.*
    (the same ABI, so the locked wheels fit), logged; without a header, the definition's
    python version, else runner's default.
    """

    found = _PYTHON_HEADER.search(lock_text)
    recorded = found.group(1) if found and _VERSION.match(found.group(1)) else None
    path = env.python.interpreter_path
    if path:
        try:
            return find_interpreter(recorded, path)
        except ConfigError as exc:
            log_line(log, f"not using the run's interpreter_path: {exc}")
    if recorded is None:
        conda = env.python.conda_dependencies
        version = (conda.python_version if conda is not None else None) or PYTHON_DEFAULT_VERSION
        log_line(log, f"the lock names no Python; using Python {version}")
        return version
    try:
        find_interpreter(recorded)
    except ConfigError:
        match = _VERSION.match(recorded)
        if match is None or match.group(3) is None:
            raise
        minor = f"{match.group(1)}.{match.group(2)}"
        other = find_interpreter(minor)  # a ConfigError here names what to install
        log_line(
            log,
            f"Python {recorded}, which the lock was made with, is not installed here; using "
            f"{other} (Python {minor}.*: the same ABI, so the locked wheels fit)",
        )
        return minor
    return recorded


# --- build a definition ---------------------------------------------------------------------


def build_definition(
    env: Environment, log: Path, default_python: str | None = None
) -> PreparedEnvironment:
    """Build (or find in the cache) ``env`` now, as a submitted run's preparation would.

    Raises:
        ConfigError: the definition cannot be built here (docker, a missing Python...).
        EnvironmentBuildError: the build failed; the message has the log's last lines.
    """

    env.validate()
    return builder_for(env, default_python).prepare(env, log)


def build_registered(
    ws: Workspace, name: str, version: str | None = None, log: Path | None = None
) -> PreparedEnvironment:
    """Build the registered environment ``name`` (``version``, default the latest) now.

    The same as ``Environment.get(ws, name, version).build_local(ws)``, returning what was
    prepared.

    Raises:
        NotFoundError: no such environment or version.
        ConfigError, EnvironmentBuildError: as :func:`build_definition`.
    """

    env = Environment.get(ws, name, version)
    return build_definition(env, default_log(ws) if log is None else Path(log))


def load_definition(path: str | os.PathLike[str]) -> Environment:
    """An environment definition from disk.

    ``path`` is a folder written by ``env.save_to_directory`` (``azureml_environment.json``,
    or that file itself), a conda environment file (``.yml``/``.yaml``), or a pip
    requirements file (any other file). The environment is named after the file or folder.

    Raises:
        NotFoundError: nothing at ``path``.
        ConfigError: the file cannot be read as a definition.
    """

    target = Path(path).expanduser()
    if target.is_dir():
        return Environment.load_from_directory(target)
    if not target.is_file():
        raise NotFoundError(
            f"no environment definition at {str(target)!r}: pass a folder written by "
            "env.save_to_directory(), a conda .yml, or a pip requirements.txt"
        )
    if target.name == "azureml_environment.json":
        return Environment.load_from_directory(target.parent)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", target.stem).strip("-") or "environment"
    if target.suffix.lower() in (".yml", ".yaml"):
        return Environment.from_conda_specification(name, target)
    return Environment.from_pip_requirements(name, target)


# --- reporting ------------------------------------------------------------------------------


def describe(prepared: PreparedEnvironment, seconds: float) -> dict[str, Any]:
    """The JSON the CLI prints for a built environment.

    ``prefix`` is the environment's folder and ``cacheKey`` its name in the cache (None for
    a user-managed environment, which is not built).
    """
    folder = prepared.env.get("VIRTUAL_ENV") or prepared.env.get("CONDA_PREFIX")
    kind = (
        "venv"
        if "VIRTUAL_ENV" in prepared.env
        else "conda"
        if "CONDA_PREFIX" in prepared.env
        else "user_managed"
    )
    return {
        "kind": kind,
        "python": prepared.python,
        "prefix": folder,
        "lockFile": None if prepared.lock_file is None else str(prepared.lock_file),
        "cacheKey": None if folder is None else Path(folder).name,
        "seconds": round(seconds, 3),
    }


class LogFollower:
    """Copies what is appended to a log file to a stream, live, from a thread.

    Lines are written whole as they arrive (polled every ``poll_s``); :meth:`stop` copies
    what is left, even a last line without a newline. Used as a context manager.

    Example:
        >>> with LogFollower(log, sys.stderr):  # doctest: +SKIP
        ...     VenvBuilder().prepare(env, log)
    """

    def __init__(self, path: Path, out: IO[str], *, poll_s: float = 0.05) -> None:
        self.path = Path(path)
        self.out = out
        self.poll_s = poll_s
        try:
            self.offset = self.path.stat().st_size  # only what this build writes
        except OSError:
            self.offset = 0
        self._pending = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-follower", daemon=True)

    def start(self) -> LogFollower:
        """Start following."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following, after copying everything written so far."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._copy(final=True)

    def __enter__(self) -> LogFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._copy(final=False)

    def _copy(self, final: bool) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        self.offset += len(data)
        self._pending += data
        if final:
            whole, self._pending = self._pending, b""
        else:
            cut = self._pending.rfind(b"\n") + 1
            whole, self._pending = self._pending[:cut], self._pending[cut:]
        if whole:
            text = whole.decode("utf-8", "replace")
            with contextlib.suppress(OSError, ValueError):
                self.out.write(text if text.endswith("\n") else text + "\n")
                self.out.flush()


def timed_build(
    build: Callable[[], PreparedEnvironment], log: Path, out: IO[str] | None
) -> tuple[PreparedEnvironment, float]:
    """Run ``build()`` (following ``log`` to ``out`` when given); return it and its seconds."""
    t0 = time.monotonic()
    if out is None:
        prepared = build()
    else:
        with LogFollower(log, out):
            prepared = build()
    return prepared, time.monotonic() - t0
