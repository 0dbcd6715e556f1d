"""Finding a Python on this machine: ``python.interpreter_path`` checked, or a version
looked for in the running Python, pyenv's versions and on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from runner.conda_dependencies import PYTHON_DEFAULT_VERSION
from runner.errors import ConfigError

__all__ = ["PYENV_ROOTS", "find_interpreter"]

#: Where pyenv keeps Pythons when ``PYENV_ROOT`` is not set (CI machines have 3.9-3.13 there).
PYENV_ROOTS = (Path("~/.pyenv"), Path("/root/.pyenv"))
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[ab]\d+)?$")
_PYENV_DIR = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


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
