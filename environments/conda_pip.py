"""The pip section of a conda environment: installed with uv into the prefix, and what uv
installed found again (wheel URL and sha256) so that the lock rebuilds it; and installing
exactly the pip packages of a lock."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from environments.cache import log_line
from environments.conda_definition import CondaDefinition
from environments.conda_lock import _PipPackage
from environments.uv_tools import _run_logged, find_uv, uv_environment
from runner.errors import EnvironmentBuildError

JSONDict = dict[str, Any]

# uv options that say where pip packages come from (kept for `uv pip compile`).
_INDEX_OPTIONS = {
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--no-index",
    "--allow-insecure-host",
    "--prerelease",
}


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
        found.append(_locked_file(name, version, dist_info, entries, pylock.parent))
    return found


def _locked_file(
    name: str, version: str, dist_info: Path, entries: Mapping[str, Any], base: Path
) -> _PipPackage:
    """The file ``uv pip compile`` lists for one pin (``entries``: its packages by normalised
    name; ``base``: what their paths are relative to) that was installed: the wheel with
    the installed tags, else the sdist, else the first wheel."""
    entry = entries.get(_normalise(name))
    if entry is None:
        raise EnvironmentBuildError(
            f"uv pip compile did not report where pip package {name}=={version} comes from"
        )
    tags = _installed_tags(dist_info)
    wheels = [w for w in entry.get("wheels") or [] if isinstance(w, dict)]
    chosen: Mapping[str, Any] | None = None
    for wheel in wheels:
        url = _artifact_url(wheel, base) or ""
        if tags & _wheel_file_tags(str(wheel.get("name") or url)):
            chosen = wheel
            break
    if chosen is None:
        sdist = entry.get("sdist")
        chosen = sdist if isinstance(sdist, dict) else (wheels[0] if wheels else None)
    source = _artifact_url(chosen, base) if chosen is not None else None
    if source is None:
        raise EnvironmentBuildError(
            f"uv pip compile lists no file for pip package {name}=={version}"
        )
    hashes = (chosen or {}).get("hashes") or {}
    return _PipPackage(name, version, source, hashes.get("sha256"))


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
    _uv_pip_install(uv, prefix, [*definition.uv_options, *definition.pip_requirements], log, uv_env)
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


def _uv_pip_install(
    uv: str, prefix: Path, args: Sequence[str], log: Path, uv_env: Mapping[str, str]
) -> None:
    """``uv pip install ARGS`` into the environment at ``prefix``, logged to ``log``."""
    python = prefix / "bin" / "python"
    # --prefix: the prefix even when bin/python reports another sys.prefix
    argv = [uv, "pip", "install", "--python", str(python), "--prefix", str(prefix), *args]
    _run_logged(argv, log, uv_env, "pip install", prefix.parent)


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
        _uv_pip_install(uv, prefix, ["--no-deps", "-r", str(requirements)], log, uv_environment())
