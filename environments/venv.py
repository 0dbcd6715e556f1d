"""pip environments built with uv: one venv per spec hash, with a lock of what was installed.

An :class:`~runner.environment.Environment` whose ``python.user_managed_dependencies`` is
False and whose conda dependencies hold no conda package but ``pip`` (``python`` is the
version, not a package) is a pip environment. :class:`VenvBuilder` makes it with uv:

1. ``uv venv --python <interpreter> <folder>``: about 0.3 s, against 5-8 s for
   ``python -m venv`` (ensurepip). The interpreter is ``python.interpreter_path`` or the
   conda dependencies' ``python=X.Y[.Z]`` found on this machine (:func:`find_interpreter`).
2. ``uv pip install --python <folder>/bin/python <pip options> <pip packages>``.
3. ``uv pip freeze`` into ``<folder>/requirements.lock`` (with the index options), the lock
   that :meth:`VenvBuilder.build_from_lock` reinstalls exactly with ``uv pip sync``.

Folders live in the :class:`~environments.cache.EnvironmentCache` under ``venv-<spec hash>``
(``venv-lock-<hash of the lock and the python>`` for rebuilds from a lock), so a second
``prepare`` of the same definition is a cache hit: no subprocess, well under 50 ms.

uv does not read pip's configuration (``pip.conf``, ``pip config list``). What it gets here:

- TLS: ``SSL_CERT_FILE`` is set to the system CA bundle (``/etc/ssl/certs/ca-certificates.crt``)
  when that file exists and neither ``SSL_CERT_FILE`` nor uv's system-certificates switch is
  set, so that uv trusts a TLS-inspecting proxy the system trusts. (An environment variable,
  not ``--native-tls``, because uv renamed that flag to ``--system-certs``.)
- Indexes: ``UV_INDEX_URL``/``UV_EXTRA_INDEX_URL`` as uv reads them, else ``PIP_INDEX_URL``/
  ``PIP_EXTRA_INDEX_URL`` copied to them; an environment's own pip options
  (``--index-url``, ``--extra-index-url``, ``--find-links``, ...) come after and win.
  Index settings are not part of the spec hash: the lock records what was installed.
- ``UV_PYTHON_DOWNLOADS=never``: uv never downloads a Python; a missing one is a ConfigError.

uv's output is written to the build log as it runs. Its own download cache (``uv cache dir``)
is shared, so a second environment with the same packages installs in milliseconds.

The tools live beside this module: :mod:`environments.uv_tools` (finding and running uv)
and :mod:`environments.interpreters` (:func:`find_interpreter`).
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from environments.base import PreparedEnvironment
from environments.cache import EnvironmentCache, log_line
from environments.interpreters import _VERSION, find_interpreter
from environments.interpreters import PYENV_ROOTS as PYENV_ROOTS
from environments.uv_tools import SYSTEM_CA_BUNDLE as SYSTEM_CA_BUNDLE
from environments.uv_tools import _run_logged, find_uv, uv_environment
from runner.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = [
    "LOCK_FILE_NAME",
    "VenvBuilder",
    "find_interpreter",
    "find_uv",
    "pip_install_args",
    "uv_environment",
]

#: The lock inside every venv: the exact packages, for ``uv pip sync``.
LOCK_FILE_NAME = "requirements.lock"
_KEY_HEX = 32  # 128 bits of the sha256: short paths keep entry-point shebangs short
_LOCK_HEADER = "# runner venv lock: the exact packages of this environment (uv pip sync)"
# conda specs of pip itself: "pip", "pip=24.0", "pip==24.0", "pip>=23", "conda-forge::pip 24.0"
_CONDA_PIP = re.compile(r"^(?:[^:\s]+::)?pip(?P<rest>(?:\s*[=<>!~].*|\s+\S.*)?)$")
# pip options (as CondaDependencies normalises them) -> uv pip install arguments.
_OPTIONS_WITH_VALUE = {
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "--find-links": "--find-links",
    "--trusted-host": "--allow-insecure-host",
    "--no-binary": "--no-binary",
    "--only-binary": "--only-binary",
    "--editable": "--editable",
}
_FLAG_OPTIONS: dict[str, tuple[str, ...]] = {
    "--no-index": ("--no-index",),
    "--pre": ("--prerelease", "allow"),
    "--no-build-isolation": ("--no-build-isolation",),
    "--no-deps": ("--no-deps",),
    "--upgrade": (),  # a new venv has nothing to upgrade
    "--prefer-binary": (),  # uv prefers wheels anyway
}
# Options that say where packages come from: kept in the lock so that a rebuild finds them.
_LOCK_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "--no-index")


# --- what to install ----------------------------------------------------------------------


def _pip_from_conda(spec: str) -> str:
    """The pip requirement for a conda spec of pip: ``pip=24.0`` -> ``pip==24.0.*``."""
    match = _CONDA_PIP.match(spec)
    rest = match.group("rest").strip() if match else ""
    if not rest:
        return "pip"
    if rest.startswith("==") or rest[0] in "<>!~":
        return "pip" + rest.replace(" ", "")
    version = rest.lstrip("= ").split("=", 1)[0].strip()  # "=24.0=py_0": drop the build
    return f"pip=={version}" if version.endswith("*") else f"pip=={version}.*"


def _uv_options(options: Sequence[str], name: str) -> list[str]:
    """uv arguments for pip options such as ``--index-url URL``; unknown ones are refused."""
    args: list[str] = []
    for option in options:
        parts = option.split(None, 1)
        key, value = parts[0], parts[1] if len(parts) > 1 else ""
        if key in _OPTIONS_WITH_VALUE and value:
            args += [_OPTIONS_WITH_VALUE[key], value]
        elif key in _FLAG_OPTIONS and not value:
            args += list(_FLAG_OPTIONS[key])
        else:
            known = sorted([*_OPTIONS_WITH_VALUE, *_FLAG_OPTIONS])
            raise ConfigError(
                f"environment {name!r}: pip option {option!r} is not supported by the venv "
                f"builder (it installs with uv); use only {', '.join(known)}, and remove it "
                "with conda_dependencies.remove_pip_option()"
            )
    return args


def pip_install_args(env: Environment) -> tuple[list[str], list[str], dict[str, str]]:
    """What a pip environment installs: (requirements, uv options, conda variables).

    Raises:
        ConfigError: the environment is not a pip environment (user-managed, docker, conda
            packages, a conda file), or has a pip option uv has no equivalent for.
    """
    python = env.python
    name = env.name
    if python.user_managed_dependencies:
        raise ConfigError(
            f"environment {name!r} is user-managed (python.user_managed_dependencies = True): "
            "nothing is installed; it runs with its interpreter as it is, not the venv builder"
        )
    if env.docker.enabled:
        raise ConfigError(
            f"environment {name!r} has docker.enabled = True: it is built as a docker image, "
            "not a venv; set docker.enabled = False to build a venv on this machine"
        )
    if python.conda_dependencies_file is not None:
        raise ConfigError(
            f"environment {name!r} names python.conda_dependencies_file "
            f"{python.conda_dependencies_file!r}; the venv builder reads only "
            "python.conda_dependencies: use Environment.from_conda_specification(name, path)"
        )
    conda = python.conda_dependencies
    if conda is None:
        raise ConfigError(
            f"environment {name!r} has no conda_dependencies and is not user-managed; set "
            "python.conda_dependencies = CondaDependencies.create(pip_packages=[...]), or "
            "python.user_managed_dependencies = True"
        )
    others = [spec for spec in conda.conda_packages if not _CONDA_PIP.match(spec)]
    if others:
        raise ConfigError(
            f"environment {name!r} has conda packages {others!r}: the venv builder installs "
            "pip packages only; move them to pip packages "
            "(CondaDependencies.create(pip_packages=[...])), or build the environment with "
            "conda"
        )
    requirements = [_pip_from_conda(spec) for spec in conda.conda_packages]
    requirements += list(conda.pip_packages)
    variables = conda.as_dict().get("variables") or {}
    return requirements, _uv_options(conda.pip_options, name), dict(variables)


# --- the builder --------------------------------------------------------------------------


class VenvBuilder:
    """Builds pip environments as uv venvs, cached by the environment's spec hash.

    Args:
        cache: where environments are kept; default :class:`EnvironmentCache` at
            :func:`~environments.cache.cache_root`.

    Example:
        >>> cd = CondaDependencies.create(pip_packages=["six==1.16.0"])  # doctest: +SKIP
        >>> env = Environment("six"); env.python.conda_dependencies = cd  # doctest: +SKIP
        >>> prepared = VenvBuilder().prepare(env, Path("prepare.log"))  # doctest: +SKIP
        >>> prepared.python  # doctest: +SKIP
        '/root/.cache/runner/envs/venv-6c1f.../bin/python'
    """

    kind: ClassVar[str] = "venv"

    def __init__(self, cache: EnvironmentCache | None = None) -> None:
        self.cache = EnvironmentCache() if cache is None else cache

    @staticmethod
    def cache_key(env: Environment) -> str:
        """The cache key of a pip environment: ``venv-`` and its spec hash."""
        return f"venv-{env.spec_hash()[:_KEY_HEX]}"

    def prepare(self, env: Environment, log: Path) -> PreparedEnvironment:
        """The venv of ``env``: from the cache, or built now (uv's output goes to ``log``).

        Raises:
            ConfigError: ``env`` is not a pip environment, or its Python is not here.
            EnvironmentBuildError: uv failed (unknown package, unsolvable pins, no network);
                the message has the log's last lines.
        """
        requirements, options, variables = pip_install_args(env)
        key = self.cache_key(env)
        conda = env.python.conda_dependencies
        version = conda.python_version if conda is not None else None
        lock_options = _lock_options(conda.pip_options if conda is not None else ())

        def build(path: Path) -> None:
            log_line(log, f"venv environment {env.name!r}: {len(requirements)} requirement(s)")
            python = find_interpreter(version, env.python.interpreter_path)
            uv = find_uv()
            uv_env = uv_environment()
            _create_venv(uv, python, path, log, uv_env)
            target = str(path / "bin" / "python")
            if requirements:
                _run_logged(
                    [uv, "pip", "install", "--python", target, *options, *requirements],
                    log,
                    uv_env,
                    "pip install",
                    path.parent,
                )
            _write_lock(uv, path, log, uv_env, lock_options)

        path = self.cache.get_or_build(key, build, log, is_valid=_venv_is_valid)
        return _prepared(path, variables)

    def build_from_lock(self, lock_file: Path, python: str, log: Path) -> PreparedEnvironment:
        """A venv with exactly the packages of a lock (``uv pip sync``: nothing is resolved).

        Args:
            lock_file: a ``requirements.lock`` that :meth:`prepare` wrote (or any file of
                pinned requirements, with index options at the top).
            python: the base interpreter: a version (``"3.11"``) or a path.
            log: the build log.

        The cache key is the hash of the lock's content and ``python``.

        Raises:
            NotFoundError: no such lock file.
            ConfigError: the Python is not here.
            EnvironmentBuildError: uv failed, or the lock is not fully pinned.
        """
        lock = Path(lock_file)
        try:
            content = lock.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"lock file {str(lock)!r} not found; pass the requirements.lock of a venv"
            ) from exc
        digest = hashlib.sha256(python.encode("utf-8") + b"\0" + content).hexdigest()
        key = f"venv-lock-{digest[:_KEY_HEX]}"
        is_version = _VERSION.match(python) is not None

        def build(path: Path) -> None:
            log_line(log, f"venv from lock {lock}")
            interpreter = find_interpreter(
                python if is_version else None, None if is_version else python
            )
            uv = find_uv()
            uv_env = uv_environment()
            _create_venv(uv, interpreter, path, log, uv_env)
            (path / LOCK_FILE_NAME).write_bytes(content)
            _run_logged(
                [
                    uv,
                    "pip",
                    "sync",
                    "--python",
                    str(path / "bin" / "python"),
                    "--require-hashes" if b"--hash" in content else "--strict",
                    str(path / LOCK_FILE_NAME),
                ],
                log,
                uv_env,
                "pip sync",
                path.parent,
            )

        path = self.cache.get_or_build(key, build, log, is_valid=_venv_is_valid)
        return _prepared(path, {})


def _create_venv(uv: str, python: str, path: Path, log: Path, env: Mapping[str, str]) -> None:
    _run_logged([uv, "venv", "--python", python, str(path)], log, env, "venv", path.parent)


def _lock_options(options: Sequence[str]) -> list[str]:
    return [o for o in options if o.split(None, 1)[0] in _LOCK_OPTIONS]


def _write_lock(
    uv: str, path: Path, log: Path, env: Mapping[str, str], options: Sequence[str]
) -> None:
    """The venv's installed distributions, after the index options, into requirements.lock.

    Read from the venv's ``*.dist-info`` folders in this process: the same lines as
    ``uv pip freeze`` (``name==version``, or ``name @ url`` for direct installs)
    without another process (~12 ms of a ~0.1 s build).
    """
    frozen = _frozen(path)
    cfg = (path / "pyvenv.cfg").read_text(encoding="utf-8")
    found = re.search(r"^version_info\s*=\s*(\S+)", cfg, re.MULTILINE)
    lines = [_LOCK_HEADER, f"# python: {found.group(1) if found else 'unknown'}"]
    lines += list(options)
    lines += frozen
    lock = path / LOCK_FILE_NAME
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log_line(log, f"lock: {lock} ({len(frozen)} package(s))")


def _frozen(path: Path) -> list[str]:
    """``uv pip freeze`` lines of a venv, from its dist-info metadata."""
    found: dict[str, str] = {}
    for site in sorted(path.glob("lib/python*/site-packages")):
        for info in site.glob("*.dist-info"):
            try:
                meta = email.parser.Parser().parsestr(
                    (info / "METADATA").read_text(encoding="utf-8", errors="replace"),
                    headersonly=True,
                )
            except OSError:
                continue
            name, version = meta.get("Name"), meta.get("Version")
            if not name or not version:
                continue
            line = f"{name}=={version}"
            direct = info / "direct_url.json"
            if direct.is_file():
                try:
                    url = json.loads(direct.read_text(encoding="utf-8")).get("url")
                except (OSError, ValueError):
                    url = None
                if url:
                    line = f"{name} @ {url}"
            found[re.sub(r"[-_.]+", "-", name).lower()] = line
    return [found[k] for k in sorted(found)]


def _venv_is_valid(path: Path) -> bool:
    """A cached venv is usable: its python resolves (the base interpreter is still there)."""
    return (path / "bin" / "python").exists() and (path / LOCK_FILE_NAME).is_file()


def _prepared(path: Path, variables: Mapping[str, str]) -> PreparedEnvironment:
    bin_dir = path / "bin"
    env = {
        "VIRTUAL_ENV": str(path),
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)]),
        **variables,
    }
    return PreparedEnvironment(
        python=str(bin_dir / "python"), env=env, lock_file=path / LOCK_FILE_NAME
    )
