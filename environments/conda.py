"""Conda environments without a conda binary: py-rattler solves and installs, conda-lock locks.

An :class:`~runner.environment.Environment` whose conda dependencies name conda packages is
built by :class:`CondaBuilder` in three steps (SPEC "Environments": locked in conda-lock format
before it is installed, and the lock is kept with the run):

1. **Solve** the definition with py-rattler: the channels in order (strict channel priority:
   a package comes from the first channel that has it), the conda packages, and
   ``python=X.Y`` when the definition pins a Python and a channel has ``python``; for this
   machine's platform and ``noarch``, with its detected virtual packages (``__glibc``...).
2. **Lock**: the solution is written as ``conda-lock.yml`` through conda-lock's own lockfile
   model (:mod:`conda_lock.lockfile.v2prelim.models`) and writer, and read back with
   conda-lock's parser. (py-rattler's ``LockFile.to_path`` writes pixi's lock format, not
   conda-lock's; it *reads* conda-lock files, which step 3 relies on.)
3. **Install from the lock**: py-rattler reads ``conda-lock.yml`` and links its conda
   packages into the prefix (package cache: ``<cache root>/.conda-pkgs``).
4. The pip section, if any, is installed with uv into the prefix (``--python
   <prefix>/bin/python --prefix <prefix>``), and what uv installed is added to the lock as
   ``manager: pip`` entries with the wheel's URL and sha256 (found with ``uv pip compile
   --format pylock.toml`` of the installed versions), so the lock rebuilds the pip part too.

:meth:`CondaBuilder.build_from_lock` installs a ``conda-lock.yml`` as it is, with no solve:
the conda packages with py-rattler, the pip packages with ``uv pip install --no-deps`` from
their URLs and hashes.

Prefixes live in the :class:`~environments.cache.EnvironmentCache`: ``conda-<platform>-<spec
hash>`` (``conda-lock-<platform>-<hash of the lock>`` for rebuilds), so a second ``prepare``
of the same definition is a cache hit with no solve and no subprocess. The lock is
``<prefix>/conda-lock.yml`` (:attr:`PreparedEnvironment.lock_file`).

py-rattler runs in a short worker process (:mod:`environments.conda_worker`), never in this
one. The steps live beside this module: :mod:`environments.conda_definition` (what to
install), :mod:`environments.conda_worker` (solve, install), :mod:`environments.conda_lock`
(the lock), :mod:`environments.conda_pip` (the pip section).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from environments.base import PreparedEnvironment
from environments.cache import EnvironmentCache, log_line
from environments.conda_definition import (
    CondaDefinition,
    channel_url,
    conda_definition,
    conda_platform,
)
from environments.conda_lock import _PipPackage, _write_lock, read_lock
from environments.conda_pip import _pip_install, _pip_install_locked
from environments.conda_worker import WORKER_SCRIPT, run_worker
from environments.interpreters import find_interpreter
from runner.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = [
    "LOCK_FILE_NAME",
    "WORKER_SCRIPT",
    "CondaBuilder",
    "CondaDefinition",
    "channel_url",
    "conda_definition",
    "conda_platform",
    "pip_section_problem",
    "read_lock",
    "run_worker",
]

JSONDict = dict[str, Any]

#: The lock inside every conda prefix (conda-lock format, version 1 on disk).
LOCK_FILE_NAME = "conda-lock.yml"
#: What a prefix remembers about itself (variables, python version) for cache hits.
_META_FILE = ".runner-conda.json"
_KEY_HEX = 32  # 128 bits of the sha256: short prefixes keep shebangs short


# --- the builder ----------------------------------------------------------------------------


def pip_section_problem(name: str, requirements: Sequence[str]) -> str:
    """Why a conda environment with pip packages cannot be built on another host (yet)."""
    return (
        f"environment {name!r} has pip packages {list(requirements)} in its conda "
        "dependencies, which remote (SSH) targets cannot lock yet (only an install here "
        "finds what pip chose); make them conda packages, or use a venv (pip packages "
        "only) or a docker environment there"
    )


def _is_valid(path: Path) -> bool:
    return (path / LOCK_FILE_NAME).is_file() and (path / _META_FILE).is_file()


def _write_meta(path: Path, variables: Mapping[str, str], python_version: str | None) -> None:
    data = {"variables": dict(variables), "python_version": python_version}
    (path / _META_FILE).write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")


def _prepared(
    path: Path, variables: Mapping[str, str], python_version: str | None, log: Path
) -> PreparedEnvironment:
    bin_dir = path / "bin"
    python = bin_dir / "python"
    if python.exists():
        interpreter = str(python)
    else:  # a conda environment of tools only: run the script with a Python of this machine
        interpreter = find_interpreter(python_version)
        log_line(log, f"no python in {path}; scripts run with {interpreter}")
    env = {
        "CONDA_PREFIX": str(path),
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)]),
        **variables,
    }
    return PreparedEnvironment(python=interpreter, env=env, lock_file=path / LOCK_FILE_NAME)


class CondaBuilder:
    """Builds conda environments with py-rattler (no conda binary), locked with conda-lock.

    Args:
        cache: where environments are kept; default :class:`EnvironmentCache` at
            :func:`~environments.cache.cache_root`.
        package_cache: py-rattler's package cache; default ``<cache root>/.conda-pkgs``.

    Example:
        >>> cd = CondaDependencies.create(conda_packages=["numpy=1.26"])  # doctest: +SKIP
        >>> env = Environment("np"); env.python.conda_dependencies = cd  # doctest: +SKIP
        >>> prepared = CondaBuilder().prepare(env, Path("prepare.log"))  # doctest: +SKIP
        >>> prepared.lock_file  # doctest: +SKIP
        PosixPath('/root/.cache/runner/envs/conda-linux-64-1f0c.../conda-lock.yml')
    """

    kind: ClassVar[str] = "conda"

    def __init__(
        self, cache: EnvironmentCache | None = None, *, package_cache: Path | None = None
    ) -> None:
        self.cache = EnvironmentCache() if cache is None else cache
        self.package_cache = package_cache

    def _package_cache(self) -> Path:
        return self.package_cache or self.cache.root / ".conda-pkgs"

    @staticmethod
    def cache_key(env: Environment, platform: str | None = None) -> str:
        """The cache key of a conda environment: ``conda-<platform>-`` and its spec hash."""
        return f"conda-{platform or conda_platform()}-{env.spec_hash()[:_KEY_HEX]}"

    def prepare(self, env: Environment, log: Path) -> PreparedEnvironment:
        """The conda environment of ``env``: from the cache, or solved, locked and installed.

        Raises:
            ConfigError: ``env`` is not a conda environment, or has a pip option uv lacks.
            EnvironmentBuildError: an unknown package, unsolvable pins, an unreadable channel,
                a failed install; the message names the specs and channels, and has the
                log's last lines.
        """
        definition = conda_definition(env)
        platform = conda_platform()
        key = self.cache_key(env, platform)
        spec_hash = env.spec_hash()

        def build(path: Path) -> None:
            self._build(path, definition, platform, spec_hash, log)

        path = self.cache.get_or_build(key, build, log, is_valid=_is_valid)
        return _prepared(path, definition.variables, definition.python_version, log)

    def _build(
        self, path: Path, definition: CondaDefinition, platform: str, spec_hash: str, log: Path
    ) -> None:
        path.mkdir(parents=True)
        lock = path / LOCK_FILE_NAME
        lock_args = self._solve_and_lock(lock, definition, platform, spec_hash, log)
        self._install_conda(path, lock, platform, log)
        if definition.pip_requirements:
            pip = _pip_install(path, definition, log)
            _write_lock(lock, pip=pip, **lock_args)
            log_line(log, f"conda: added {len(pip)} pip package(s) to {lock}")
        _write_meta(path, definition.variables, definition.python_version)

    def _solve_and_lock(
        self,
        lock: Path,
        definition: CondaDefinition,
        platform: str,
        spec_hash: str,
        log: Path,
        virtual_packages: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """Solve the conda packages and write ``lock`` (no pip section); returns the
        arguments of :func:`_write_lock` that a pip section is added with.

        ``virtual_packages`` (``[name, version, build]``): those of another host, for a
        lock made here for it; None detects this machine's.
        """
        log_line(
            log,
            f"conda environment {definition.name!r}: specs {list(definition.specs)}, "
            f"python {definition.python_version or '(not pinned)'}, channels "
            f"{list(definition.channels)}, {len(definition.pip_requirements)} pip package(s)",
        )
        t0 = time.monotonic()
        request: dict[str, Any] = {
            "op": "solve",
            "channels": list(definition.channels),
            "specs": list(definition.specs),
            "python": definition.python_version,
            "platform": platform,
            "repodata_cache": str(self.cache.root / ".conda-repodata"),
        }
        if virtual_packages is not None:
            request["virtual_packages"] = [list(v) for v in virtual_packages]
        solved = run_worker(request, log, cwd=lock.parent.parent)
        records: list[JSONDict] = list(solved["records"])
        log_line(log, f"conda: solved {len(records)} package(s) in {time.monotonic() - t0:.2f} s")
        metadata = {
            "runner.environment": definition.name,
            "runner.spec_hash": spec_hash,
            "runner.python": definition.python_version or "",
            "runner.variables": json.dumps(dict(definition.variables), sort_keys=True),
        }
        t1 = time.monotonic()
        lock_args: dict[str, Any] = {
            "records": records,
            "channels": definition.channels,
            "platform": platform,
            "content_hash": spec_hash,
            "metadata": metadata,
        }
        _write_lock(lock, pip=[], **lock_args)
        log_line(log, f"conda: wrote {lock} in {time.monotonic() - t1:.2f} s")
        return lock_args

    def lock_for_host(
        self,
        env: Environment,
        log: Path,
        *,
        platform: str,
        virtual_packages: Sequence[Sequence[str]],
    ) -> Path:
        """The lock of ``env`` for another host, made here exactly as for a build here
        (same solve, same writer), and kept in the cache: solved once per definition,
        platform and virtual packages.

        Raises:
            ConfigError: ``env`` is not a conda environment, or has a pip section (which
                only an install can lock: see :func:`environments.conda_pip._pip_install`).
            EnvironmentBuildError: as :meth:`prepare`.
        """
        definition = conda_definition(env)
        if definition.pip_requirements:
            raise ConfigError(pip_section_problem(env.name, definition.pip_requirements))
        spec_hash = env.spec_hash()
        described = json.dumps([list(v) for v in virtual_packages], sort_keys=True)
        digest = hashlib.sha256(f"{spec_hash}\n{described}".encode()).hexdigest()
        key = f"conda-hostlock-{platform}-{digest[:_KEY_HEX]}"

        def build(path: Path) -> None:
            path.mkdir(parents=True)
            log_line(log, f"conda: locking for {platform} with {described}")
            self._solve_and_lock(
                path / LOCK_FILE_NAME, definition, platform, spec_hash, log, virtual_packages
            )

        path = self.cache.get_or_build(
            key, build, log, is_valid=lambda p: (p / LOCK_FILE_NAME).is_file()
        )
        return path / LOCK_FILE_NAME

    def _install_conda(self, path: Path, lock: Path, platform: str, log: Path) -> None:
        t0 = time.monotonic()
        run_worker(
            {
                "op": "install",
                "lock_file": str(lock),
                "prefix": str(path),
                "platform": platform,
                "package_cache": str(self._package_cache()),
            },
            log,
            cwd=path.parent,
        )
        log_line(log, f"conda: installed from the lock in {time.monotonic() - t0:.2f} s")

    def build_from_lock(self, lock_file: Path, log: Path) -> PreparedEnvironment:
        """The environment of a ``conda-lock.yml``, exactly: installed as locked, no solve.

        The cache key is ``conda-lock-<platform>-`` and the hash of the lock's content; the
        lock is copied into the prefix as it is.

        Raises:
            NotFoundError: no such lock file.
            ConfigError: it is not a conda-lock file, or locks no package for this platform.
            EnvironmentBuildError: the install failed.
        """
        source = Path(lock_file)
        try:
            content = source.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"lock file {str(source)!r} not found; pass the conda-lock.yml of a conda "
                "environment"
            ) from exc
        platform = conda_platform()
        digest = hashlib.sha256(content).hexdigest()
        key = f"conda-lock-{platform}-{digest[:_KEY_HEX]}"

        def build(path: Path) -> None:
            log_line(log, f"conda environment from the lock {source}")
            path.mkdir(parents=True)
            lock = path / LOCK_FILE_NAME
            lock.write_bytes(content)
            parsed = read_lock(lock)
            if platform not in parsed.metadata.platforms:
                raise ConfigError(
                    f"lock file {str(source)!r} locks the platform(s) "
                    f"{', '.join(parsed.metadata.platforms)}, not this machine's {platform}; "
                    "solve the environment's definition on this machine instead"
                )
            mine = [p for p in parsed.package if p.platform == platform]
            log_line(
                log,
                f"conda: the lock has {sum(p.manager == 'conda' for p in mine)} conda and "
                f"{sum(p.manager == 'pip' for p in mine)} pip package(s) for {platform}",
            )
            self._install_conda(path, lock, platform, log)
            pip = [
                _PipPackage(p.name, p.version, p.url, p.hash.sha256)
                for p in mine
                if p.manager == "pip"
            ]
            if pip:
                _pip_install_locked(path, pip, log)
            custom = parsed.metadata.custom_metadata or {}
            try:
                variables = json.loads(custom.get("runner.variables") or "{}")
            except ValueError:
                variables = {}
            _write_meta(path, variables, custom.get("runner.python") or None)

        path = self.cache.get_or_build(key, build, log, is_valid=_is_valid)
        try:
            meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        variables = {str(k): str(v) for k, v in (meta.get("variables") or {}).items()}
        return _prepared(path, variables, meta.get("python_version"), log)
