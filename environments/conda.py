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

py-rattler runs in a short worker process (:mod:`environments.rattler_worker`), never in this
one: its Rust threads can crash a finishing interpreter (SIGSEGV during finalization, 10-27 %
of short runs). The worker prints one JSON result on stdout and leaves with ``os._exit``;
:func:`run_worker` trusts that result over the exit code, and treats a missing result as a
failure. The worker's progress lines go to the build log.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as _platform
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from environments.base import PreparedEnvironment
from environments.cache import EnvironmentCache, log_line, log_size, log_tail
from environments.venv import _run_logged, _uv_options, find_interpreter, find_uv, uv_environment
from runner.errors import ConfigError, EnvironmentBuildError, NotFoundError

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
    "read_lock",
    "run_worker",
]

JSONDict = dict[str, Any]

#: The lock inside every conda prefix (conda-lock format, version 1 on disk).
LOCK_FILE_NAME = "conda-lock.yml"
#: The py-rattler worker, run by path with this interpreter.
WORKER_SCRIPT = Path(__file__).resolve().with_name("rattler_worker.py")
#: What a prefix remembers about itself (variables, python version) for cache hits.
_META_FILE = ".runner-conda.json"
_KEY_HEX = 32  # 128 bits of the sha256: short prefixes keep shebangs short
_INSTALL_HELP = "pip install py-rattler conda-lock"
# uv options that say where pip packages come from (kept for `uv pip compile`).
_INDEX_OPTIONS = {
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--no-index",
    "--allow-insecure-host",
    "--prerelease",
}
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
_LINUX_ARCHES = {
    "x86_64": "64",
    "amd64": "64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


# --- the definition -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CondaDefinition:
    """What a conda environment installs, read from an Environment."""

    name: str  #: the environment's name (for messages)
    channels: tuple[str, ...]  #: channel URLs or names, highest priority first
    specs: tuple[str, ...]  #: conda match specs, python excluded
    python_version: str | None  #: the pinned Python, "X.Y" or "X.Y.Z"
    pip_requirements: tuple[str, ...]  #: pip requirements, as written
    uv_options: tuple[str, ...]  #: uv arguments for the pip options
    variables: Mapping[str, str]  #: the conda ``variables`` section


def channel_url(channel: str) -> str:
    """A channel as py-rattler takes it: local paths become ``file://`` URLs.

    Names (``conda-forge``) and URLs are kept; ``/abs/path``, ``./rel`` and ``~/path`` are
    made absolute ``file://`` URLs.
    """
    if "://" in channel:
        return channel
    if channel.startswith(("/", "./", "../", "~")) or channel in (".", ".."):
        return Path(channel).expanduser().resolve().as_uri()
    return channel


def conda_definition(env: Environment) -> CondaDefinition:
    """The conda definition of ``env``.

    Raises:
        ConfigError: ``env`` is user-managed, a docker image, names a conda file, has no
            conda dependencies, or a pip option uv cannot take.
    """
    python = env.python
    name = env.name
    if python.user_managed_dependencies:
        raise ConfigError(
            f"environment {name!r} is user-managed (python.user_managed_dependencies = True): "
            "nothing is installed; it runs with its interpreter as it is, not the conda builder"
        )
    if env.docker.enabled:
        raise ConfigError(
            f"environment {name!r} has docker.enabled = True: it is built as a docker image; "
            "set docker.enabled = False to build a conda environment on this machine"
        )
    if python.conda_dependencies_file is not None:
        raise ConfigError(
            f"environment {name!r} names python.conda_dependencies_file "
            f"{python.conda_dependencies_file!r}; the conda builder reads only "
            "python.conda_dependencies: use Environment.from_conda_specification(name, path)"
        )
    conda = python.conda_dependencies
    if conda is None:
        raise ConfigError(
            f"environment {name!r} has no conda_dependencies and is not user-managed; set "
            "python.conda_dependencies = CondaDependencies.create(conda_packages=[...])"
        )
    variables = conda.as_dict().get("variables") or {}
    return CondaDefinition(
        name=name,
        channels=tuple(channel_url(c) for c in conda.conda_channels),
        specs=tuple(conda.conda_packages),
        python_version=conda.python_version,
        pip_requirements=tuple(conda.pip_packages),
        uv_options=tuple(_uv_options(conda.pip_options, name)),
        variables={str(k): str(v) for k, v in variables.items()},
    )


def conda_platform() -> str:
    """This machine's conda platform (subdir): ``linux-64``, ``osx-arm64``...

    Raises:
        EnvironmentBuildError: an operating system or CPU conda has no platform for.
    """
    machine = _platform.machine().lower()
    found: str | None = None
    if sys.platform.startswith("linux") and machine in _LINUX_ARCHES:
        found = f"linux-{_LINUX_ARCHES[machine]}"
    elif sys.platform == "darwin":
        found = {"x86_64": "osx-64", "arm64": "osx-arm64"}.get(machine)
    elif sys.platform == "win32":
        found = {"amd64": "win-64", "x86_64": "win-64", "arm64": "win-arm64"}.get(machine)
    if found is None:
        raise EnvironmentBuildError(
            f"conda environments are not supported on {sys.platform}/{machine}: there is no "
            "conda platform for it; use a venv (pip packages only) or a docker environment"
        )
    return found


# --- the worker -----------------------------------------------------------------------------


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


# --- the lock -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PipPackage:
    name: str
    version: str
    url: str
    sha256: str | None


def _conda_lock_modules() -> tuple[Any, Any, Any]:
    """(conda_lock.lockfile, its v2prelim models, its MatchSpec); else EnvironmentBuildError."""
    try:
        with warnings.catch_warnings():
            # conda-lock's vendored conda warns about itself at import (frozendict "pending
            # deprecation"): not ours to act on, and an error under pytest's -W error.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            from conda_lock import lockfile
            from conda_lock.interfaces.vendored_conda import MatchSpec
            from conda_lock.lockfile.v2prelim import models
    except ImportError as exc:
        raise EnvironmentBuildError(
            f"conda-lock is not installed in {sys.executable} ({exc}); it writes and reads "
            f"the lock of conda environments: {_INSTALL_HELP}"
        ) from exc
    return lockfile, models, MatchSpec


def _dependencies(depends: Sequence[str], match_spec: Any) -> dict[str, str]:
    """conda-lock's ``dependencies`` mapping (name -> version spec), as conda-lock builds it."""
    by_name: dict[str, list[Any]] = {}
    for dep in depends:
        spec = match_spec(dep)
        by_name.setdefault(str(spec.name), []).append(spec)
    result: dict[str, str] = {}
    for name, specs in by_name.items():
        merged = specs[0] if len(specs) == 1 else match_spec.merge(specs)[0]
        result[name] = merged.version.spec_str if merged.version is not None else ""
    return result


def _write_lock(
    path: Path,
    *,
    records: Sequence[Mapping[str, Any]],
    pip: Sequence[_PipPackage],
    channels: Sequence[str],
    platform: str,
    content_hash: str,
    metadata: Mapping[str, str],
) -> None:
    """Write ``path`` with conda-lock's model and writer, then read it back with its parser."""
    lockfile, models, match_spec = _conda_lock_modules()
    packages = [
        models.LockedDependency(
            name=rec["name"],
            version=rec["version"],
            manager="conda",
            platform=platform,
            dependencies=_dependencies(rec.get("depends") or [], match_spec),
            url=rec["url"],
            hash=models.HashModel(md5=rec.get("md5"), sha256=rec.get("sha256")),
            categories={"main"},
            build=rec.get("build"),
        )
        for rec in records
    ]
    packages += [
        models.LockedDependency(
            name=p.name,
            version=p.version,
            manager="pip",
            platform=platform,
            dependencies={},
            url=p.url,
            hash=models.HashModel(sha256=p.sha256),
            categories={"main"},
        )
        for p in pip
    ]
    content = models.Lockfile(
        package=packages,
        metadata=models.LockMeta(
            content_hash={platform: content_hash},
            channels=list(channels),
            platforms=[platform],
            sources=[],
            custom_metadata=dict(metadata),
        ),
    )
    lockfile.write_conda_lock_file(content, path, metadata_choices=None)
    parsed = lockfile.parse_conda_lock_file(path)
    wanted = {(r["name"], r["version"]) for r in records} | {(p.name, p.version) for p in pip}
    found = {(p.name, p.version) for p in parsed.package}
    if found != wanted:  # the writer leaves out virtual packages only
        missing = sorted(f"{n}={v}" for n, v in wanted - found if not n.startswith("__"))
        if missing:
            raise EnvironmentBuildError(
                f"the lock {path} does not read back as written: missing {missing}"
            )


def read_lock(lock_file: Path) -> Any:
    """A ``conda-lock.yml`` parsed by conda-lock (its v2 model).

    Raises:
        ConfigError: the file is not a conda-lock lock file.
    """
    import yaml

    lockfile, _, _ = _conda_lock_modules()
    try:
        return lockfile.parse_conda_lock_file(Path(lock_file))
    except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{str(lock_file)!r} is not a conda-lock lock file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); pass the conda-lock.yml of a "
            "conda environment"
        ) from exc


# --- pip ------------------------------------------------------------------------------------


def _dist_infos(prefix: Path) -> set[Path]:
    return set(prefix.glob("lib/python*/site-packages/*.dist-info"))


def _wheel_file_tags(file_name: str) -> set[str]:
    """``a-1.0-py2.py3-none-any.whl`` -> {"py2-none-any", "py3-none-any"}."""
    parts = file_name.rsplit("/", 1)[-1].removesuffix(".whl").split("-")
    if len(parts) < 5:
        return set()
    pys, abis, plats = (part.split(".") for part in parts[-3:])
    return {f"{p}-{a}-{t}" for p in pys for a in abis for t in plats}


def _installed_tags(dist_info: Path) -> set[str]:
    try:
        text = (dist_info / "WHEEL").read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")}


def _metadata(dist_info: Path) -> tuple[str, str]:
    """(Name, Version) from a dist-info's METADATA."""
    name = version = ""
    text = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        if not line.strip():
            break  # the body starts
        if line.startswith("Name:") and not name:
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version:") and not version:
            version = line.split(":", 1)[1].strip()
    return name, version


def _normalise(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def _direct_url(dist_info: Path) -> tuple[str, str | None] | None:
    """(url, sha256) from PEP 610 ``direct_url.json``, for a package installed from a URL."""
    try:
        data = json.loads((dist_info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = data.get("url")
    if not isinstance(url, str):
        return None
    archive = data.get("archive_info") or {}
    hashes = archive.get("hashes") or {}
    sha256 = hashes.get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = str(archive["hash"]).split("=", 1)[1]
    return url, sha256


def _load_toml(path: Path) -> JSONDict:
    text = path.read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    import tomlkit  # a conda-lock dependency

    return dict(tomlkit.parse(text).unwrap())


def _artifact_url(artifact: Mapping[str, Any], base: Path) -> str | None:
    if isinstance(artifact.get("url"), str):
        return str(artifact["url"])
    if isinstance(artifact.get("path"), str):
        return (base / str(artifact["path"])).resolve().as_uri()
    return None


def _pip_sources(
    uv: str,
    python: Path,
    installed: Sequence[tuple[str, str, Path]],
    options: Sequence[str],
    log: Path,
    uv_env: Mapping[str, str],
    cwd: Path,
) -> list[_PipPackage]:
    """Where each installed pip package came from: its wheel (or sdist) URL and sha256.

    ``uv pip compile --no-deps --format pylock.toml`` of the exact installed versions lists
    the files of each; the wheel whose tags are the installed ``WHEEL`` tags is the one.
    """
    found: list[_PipPackage] = []
    pins: list[tuple[str, str, Path]] = []
    for name, version, dist_info in installed:
        direct = _direct_url(dist_info)
        if direct is not None:
            found.append(_PipPackage(name, version, direct[0], direct[1]))
        else:
            pins.append((name, version, dist_info))
    if not pins:
        return found
    compile_options: list[str] = []
    i = 0
    while i < len(options):
        flag = options[i]
        takes_value = i + 1 < len(options) and not options[i + 1].startswith("-")
        if flag in _INDEX_OPTIONS:
            compile_options += options[i : i + 2] if takes_value else [flag]
        i += 2 if takes_value else 1
    with tempfile.TemporaryDirectory(prefix=".pip-lock-", dir=cwd) as tmp:
        folder = Path(tmp)
        (folder / "pins.in").write_text(
            "".join(f"{name}=={version}\n" for name, version, _ in pins), encoding="utf-8"
        )
        pylock = folder / "pylock.toml"
        _run_logged(
            [
                uv,
                "pip",
                "compile",
                "--quiet",  # the lock goes to the file, not (also) to the log
                "--no-deps",
                "--format",
                "pylock.toml",
                "-o",
                str(pylock),
                "--python",
                str(python),
                *compile_options,
                str(folder / "pins.in"),
            ],
            log,
            uv_env,
            "pip compile",
            cwd,
        )
        data = _load_toml(pylock)
    entries = {_normalise(str(p.get("name", ""))): p for p in data.get("packages", [])}
    for name, version, dist_info in pins:
        entry = entries.get(_normalise(name))
        if entry is None:
            raise EnvironmentBuildError(
                f"uv pip compile did not report where pip package {name}=={version} comes from"
            )
        tags = _installed_tags(dist_info)
        wheels = [w for w in entry.get("wheels") or [] if isinstance(w, dict)]
        chosen: Mapping[str, Any] | None = None
        for wheel in wheels:
            url = _artifact_url(wheel, pylock.parent) or ""
            if tags & _wheel_file_tags(str(wheel.get("name") or url)):
                chosen = wheel
                break
        if chosen is None:
            sdist = entry.get("sdist")
            chosen = sdist if isinstance(sdist, dict) else (wheels[0] if wheels else None)
        source = _artifact_url(chosen, pylock.parent) if chosen is not None else None
        if source is None:
            raise EnvironmentBuildError(
                f"uv pip compile lists no file for pip package {name}=={version}"
            )
        hashes = (chosen or {}).get("hashes") or {}
        found.append(_PipPackage(name, version, source, hashes.get("sha256")))
    return found


def _pip_install(prefix: Path, definition: CondaDefinition, log: Path) -> list[_PipPackage]:
    """Install the pip section into ``prefix`` with uv; return what it installed, locked."""
    python = prefix / "bin" / "python"
    if not python.exists():
        raise EnvironmentBuildError(
            f"environment {definition.name!r} has pip packages "
            f"{list(definition.pip_requirements)}, but its conda packages installed no python "
            f"into {prefix}",
            hint="add a channel that has python (conda-forge, or a local channel with python)",
        )
    uv = find_uv()
    uv_env = uv_environment()
    before = _dist_infos(prefix)
    log_line(log, f"pip: installing {list(definition.pip_requirements)} with uv")
    _run_logged(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            # --prefix: the prefix even when bin/python reports another sys.prefix
            "--prefix",
            str(prefix),
            *definition.uv_options,
            *definition.pip_requirements,
        ],
        log,
        uv_env,
        "pip install",
        prefix.parent,
    )
    installed = []
    for dist_info in sorted(_dist_infos(prefix) - before):
        name, version = _metadata(dist_info)
        if name and version:
            installed.append((name, version, dist_info))
    packages = _pip_sources(
        uv, python, installed, definition.uv_options, log, uv_env, prefix.parent
    )
    log_line(
        log,
        f"pip: locked {len(packages)} package(s): "
        + ", ".join(f"{p.name}=={p.version}" for p in packages),
    )
    return packages


def _pip_install_locked(prefix: Path, packages: Sequence[_PipPackage], log: Path) -> None:
    """Install exactly these pip packages (URL and hash, no dependencies) into ``prefix``."""
    python = prefix / "bin" / "python"
    if not python.exists():
        raise EnvironmentBuildError(
            f"the lock has pip packages, but its conda packages installed no python into {prefix}"
        )
    uv = find_uv()
    lines = [
        f"{p.name} @ {p.url}" + (f" --hash=sha256:{p.sha256}" if p.sha256 else "") for p in packages
    ]
    with tempfile.TemporaryDirectory(prefix=".pip-lock-", dir=prefix.parent) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log_line(log, f"pip: installing {len(lines)} locked package(s) with uv")
        _run_logged(
            [
                uv,
                "pip",
                "install",
                "--python",
                str(python),
                "--prefix",
                str(prefix),
                "--no-deps",
                "-r",
                str(requirements),
            ],
            log,
            uv_environment(),
            "pip install",
            prefix.parent,
        )


# --- the builder ----------------------------------------------------------------------------


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
        log_line(
            log,
            f"conda environment {definition.name!r}: specs {list(definition.specs)}, "
            f"python {definition.python_version or '(not pinned)'}, channels "
            f"{list(definition.channels)}, {len(definition.pip_requirements)} pip package(s)",
        )
        workdir = path.parent
        t0 = time.monotonic()
        solved = run_worker(
            {
                "op": "solve",
                "channels": list(definition.channels),
                "specs": list(definition.specs),
                "python": definition.python_version,
                "platform": platform,
                "repodata_cache": str(self.cache.root / ".conda-repodata"),
            },
            log,
            cwd=workdir,
        )
        records: list[JSONDict] = list(solved["records"])
        log_line(log, f"conda: solved {len(records)} package(s) in {time.monotonic() - t0:.2f} s")
        path.mkdir(parents=True)
        lock = path / LOCK_FILE_NAME
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
        self._install_conda(path, lock, platform, log)
        if definition.pip_requirements:
            pip = _pip_install(path, definition, log)
            _write_lock(lock, pip=pip, **lock_args)
            log_line(log, f"conda: added {len(pip)} pip package(s) to {lock}")
        _write_meta(path, definition.variables, definition.python_version)

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
