"""The lock of a conda environment: ``conda-lock.yml``, written with conda-lock's own
lockfile model and writer and read back with its parser (conda-lock is imported lazily: an
optional dependency, with py-rattler)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from environments.conda_worker import _INSTALL_HELP
from runner.errors import ConfigError, EnvironmentBuildError

__all__ = ["read_lock"]


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
    import yaml  # lazy, like conda-lock: only a build or a rebuild from a lock reads one

    lockfile, _, _ = _conda_lock_modules()
    try:
        return lockfile.parse_conda_lock_file(Path(lock_file))
    except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{str(lock_file)!r} is not a conda-lock lock file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); pass the conda-lock.yml of a "
            "conda environment"
        ) from exc
