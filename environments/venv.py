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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from environments.base import PreparedEnvironment
from environments.cache import EnvironmentCache, log_line, log_size, log_tail
from runner.conda_dependencies import PYTHON_DEFAULT_VERSION
from runner.errors import ConfigError, EnvironmentBuildError, NotFoundError

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
#: The CA bundle handed to uv when nothing else is configured.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Where pyenv keeps Pythons when ``PYENV_ROOT`` is not set (CI machines have 3.9-3.13 there).
PYENV_ROOTS = (Path("~/.pyenv"), Path("/root/.pyenv"))
_KEY_HEX = 32  # 128 bits of the sha256: short paths keep entry-point shebangs short
_LOCK_HEADER = "# runner venv lock: the exact packages of this environment (uv pip sync)"
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[ab]\d+)?$")
_PYENV_DIR = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
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


# --- tools --------------------------------------------------------------------------------


def find_uv() -> str:
    """The uv binary: the one the ``uv`` package ships (a runner dependency), else uv on PATH.

    Raises:
        EnvironmentBuildError: neither is there.
    """
    try:
        from uv import find_uv_bin
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


# --- interpreters -------------------------------------------------------------------------


def _version_of(python: str) -> str:
    """``"3.11.7"`` for an interpreter (runs it), or raises ConfigError."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"interpreter {python!r} cannot be run ({exc})") from exc
    if done.returncode != 0 or not _VERSION.match(done.stdout.strip()):
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(
            f"interpreter {python!r} does not work (exit code {done.returncode}: {detail[0]}); "
            "point python.interpreter_path at a working Python"
        )
    return done.stdout.strip()


def _matches(actual: str, wanted: str) -> bool:
    """``"3.11.7"`` matches ``"3.11"`` and ``"3.11.7"``, not ``"3.1"`` or ``"3.11.6"``."""
    want = _VERSION.match(wanted)
    have = _VERSION.match(actual)
    if not want or not have:
        return False
    return all(w is None or w == h for w, h in zip(want.groups(), have.groups()))


def _pyenv_candidates(major_minor: str) -> list[Path]:
    """``bin/pythonX.Y`` of pyenv's versions X.Y.*, newest first."""
    roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    roots += [root.expanduser() for root in PYENV_ROOTS]
    found: list[tuple[tuple[int, ...], Path]] = []
    seen: set[Path] = set()
    for root in roots:
        versions = root / "versions"
        if versions in seen or not versions.is_dir():
            continue
        seen.add(versions)
        for folder in versions.iterdir():
            match = _PYENV_DIR.match(folder.name)
            if not match or f"{match.group(1)}.{match.group(2)}" != major_minor:
                continue
            binary = folder / "bin" / f"python{major_minor}"
            if os.access(binary, os.X_OK):
                found.append((tuple(int(g) for g in match.groups()), binary))
    return [path for _, path in sorted(found, key=lambda item: item[0], reverse=True)]


def _path_candidates(major_minor: str) -> list[Path]:
    """``pythonX.Y`` on PATH, skipping pyenv shims (they fail for versions not selected)."""
    found: list[Path] = []
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not folder or "shims" in Path(folder).parts:
            continue
        binary = Path(folder) / f"python{major_minor}"
        if binary.is_file() and os.access(binary, os.X_OK) and binary not in found:
            found.append(binary)
    return found


def find_interpreter(version: str | None, interpreter_path: str | None = None) -> str:
    """The base interpreter of a new venv.

    With ``interpreter_path``: that interpreter (a name is looked up on PATH), checked to be
    ``version`` when one is given. Otherwise a Python ``version`` (``"3.11"`` or ``"3.11.7"``;
    None is :data:`~runner.conda_dependencies.PYTHON_DEFAULT_VERSION`), looked for in order:
    the Python running runner (no subprocess), pyenv's ``versions/X.Y.*`` (newest first),
    then ``pythonX.Y`` on PATH (pyenv shims skipped; each is run to check its version).

    Raises:
        ConfigError: the interpreter does not exist or work, or no such version is here.

    Example:
        >>> find_interpreter("3.11")  # doctest: +SKIP
        '/root/.pyenv/versions/3.11.7/bin/python'
    """
    if interpreter_path:
        path = interpreter_path
        if os.sep not in path:
            located = shutil.which(path)
            if located is None:
                raise ConfigError(
                    f"interpreter {path!r} is not on PATH; set python.interpreter_path to a "
                    "full path"
                )
            path = located
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ConfigError(
                f"interpreter {path!r} does not exist or is not executable; fix "
                "python.interpreter_path"
            )
        if version is not None:
            actual = _version_of(path)
            if not _matches(actual, version):
                raise ConfigError(
                    f"python.interpreter_path {path!r} is Python {actual}, but the conda "
                    f"dependencies ask for python={version}; call "
                    f"conda_dependencies.set_python_version({'.'.join(actual.split('.')[:2])!r})"
                    " or point interpreter_path at a Python "
                    f"{version}"
                )
        return path
    wanted = PYTHON_DEFAULT_VERSION if version is None else version
    match = _VERSION.match(wanted)
    if not match:
        raise ConfigError(f"python version {wanted!r} is not 'X.Y' or 'X.Y.Z', such as '3.11'")
    here = ".".join(str(part) for part in sys.version_info[:3])
    if _matches(here, wanted) and sys.executable:
        return sys.executable
    major_minor = f"{match.group(1)}.{match.group(2)}"
    for binary in _pyenv_candidates(major_minor):
        if _matches(binary.parent.parent.name, wanted):
            return str(binary)
    for binary in _path_candidates(major_minor):
        try:
            if _matches(_version_of(str(binary)), wanted):
                return str(binary)
        except ConfigError:
            continue
    raise ConfigError(
        f"Python {wanted} is not installed on this machine (looked at {sys.executable}, "
        f"pyenv's versions/{major_minor}.* and python{major_minor} on PATH); install it "
        "(e.g. `pyenv install " + (wanted if match.group(3) else major_minor) + "`), set the "
        "conda dependencies' python version to one that is here, or set "
        "python.interpreter_path"
    )


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
    import email.parser
    import json as _json

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
                    url = _json.loads(direct.read_text(encoding="utf-8")).get("url")
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
