"""What this machine gives another host so that it installs a conda lock made here: the
package archives the lock names, and py-rattler itself (with its worker script).

Why this way (and not the host's micromamba/conda, nor a prefix built here): the host then
installs with the same installer, version and code as a build here
(:mod:`environments.rattler_worker`'s ``install``, from the same ``conda-lock.yml``), so it
gets exactly the solved packages whatever it has installed, and it needs no channel access:
the archives come from here, by sha256, only those it lacks. A prefix built here at the
same absolute path would need the same user and home on both sides; a host's conda may be
missing or too old to read the lock. The price: py-rattler's compiled module must fit the
host (:func:`installer_fits`); where it does not, a py-rattler the host's ``python3`` already
imports is used.

Layout here (under :func:`~environments.cache.cache_root`):

- ``.conda-archives/<sha256>/<file name>``: archives of non-``file://`` channels, fetched
  once (a ``file://`` channel's archive is read where it is);
- ``.conda-remote/py-rattler-<version>-<sha256>.tar.gz``: the installer bundle (the
  installed py-rattler's files, as a wheel would unpack), made once per version.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import secrets
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from environments.cache import cache_root
from environments.conda_lock import read_lock
from runner.errors import EnvironmentBuildError

__all__ = ["Installer", "LockedArchive", "archive_file", "installer_bundle", "locked_archives"]

_CHUNK = 1 << 20
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True, slots=True)
class LockedArchive:
    """One conda package of a lock: where it comes from and its content's digests."""

    name: str
    version: str
    url: str
    sha256: str
    md5: str | None

    @property
    def file_name(self) -> str:
        """The archive's file name (``name-version-build.conda`` or ``.tar.bz2``)."""
        return urllib.parse.unquote(self.url.rsplit("/", 1)[-1])


@dataclass(frozen=True, slots=True)
class Installer:
    """py-rattler packed for another host: a tar.gz of its installed files."""

    path: Path
    digest: str  #: sha256 of the bundle
    version: str  #: py-rattler's version


def locked_archives(lock_file: Path, platform: str) -> list[LockedArchive]:
    """The conda packages ``lock_file`` locks for ``platform``, each with its sha256.

    Raises:
        EnvironmentBuildError: a package has no sha256 in the lock (its archive could not
            be sent by content).
    """
    found = []
    for package in read_lock(lock_file).package:
        if package.manager != "conda" or package.platform != platform:
            continue
        sha256 = package.hash.sha256
        if not sha256:
            raise EnvironmentBuildError(
                f"the lock {lock_file} names no sha256 for {package.name}={package.version}; "
                "another host's install needs one for every archive",
                hint="use a channel whose repodata has sha256 digests (every current one)",
            )
        found.append(
            LockedArchive(package.name, package.version, package.url, sha256, package.hash.md5)
        )
    return found


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archive_file(archive: LockedArchive) -> Path:
    """The archive on this machine, checked against the lock's sha256: a ``file://``
    channel's own file, else a copy fetched once into ``.conda-archives``.

    Raises:
        EnvironmentBuildError: it cannot be read or fetched, or its content is not the
            locked one.
    """
    parsed = urllib.parse.urlparse(archive.url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        try:
            actual = _sha256_of(path)
        except OSError as exc:
            raise EnvironmentBuildError(
                f"the archive of {archive.name}={archive.version} ({path}) cannot be read: {exc}",
                hint="the lock names a local channel that has changed or gone; submit again",
            ) from exc
    else:
        path = cache_root() / ".conda-archives" / archive.sha256 / archive.file_name
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        digest = hashlib.sha256()
        try:
            # the lock's own URL (https, or a mirror's scheme urllib knows)
            response_cm = urllib.request.urlopen(archive.url, timeout=60)  # noqa: S310
            with response_cm as response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise EnvironmentBuildError(
                f"the archive of {archive.name}={archive.version} cannot be fetched from "
                f"{archive.url}: {exc}",
                hint="this machine fetches the archives for the host: check its network or proxy",
            ) from exc
        actual = digest.hexdigest()
        if actual == archive.sha256:
            os.replace(tmp, path)
        else:
            tmp.unlink(missing_ok=True)
    if actual != archive.sha256:
        raise EnvironmentBuildError(
            f"the archive of {archive.name}={archive.version} from {archive.url} has sha256 "
            f"{actual}, not the locked {archive.sha256}",
            hint="the channel changed a published package; solve again (a new lock)",
        )
    return path


# --- the installer -------------------------------------------------------------------------


def _wheel_tags() -> list[str]:
    dist = metadata.distribution("py-rattler")
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _tag_fits(tag: str, host: Mapping[str, Any]) -> bool:
    """Whether a wheel tag (``cp310-abi3-manylinux_2_17_x86_64``) runs on ``host`` (what
    its agent's ``conda_host`` said: python, system, machine, glibc)."""
    try:
        interpreter, abi, platform_tag = tag.split("-")
    except ValueError:
        return False
    python = tuple(host.get("python") or ())
    if not interpreter.startswith("cp") or not python:
        return False
    wanted = (int(interpreter[2]), int(interpreter[3:] or 0))
    if abi == "abi3":
        if tuple(python[:2]) < wanted:
            return False
    elif tuple(python[:2]) != wanted:
        return False
    machine = str(host.get("machine") or "")
    if host.get("system") == "linux":
        glibc = tuple(int(x) for x in str(host.get("glibc") or "0.0").split(".")[:2])
        match = _MANYLINUX.match(platform_tag)
        if match:
            needed = (int(match.group(1)), int(match.group(2)))
            return match.group(3) == machine and glibc >= needed
        legacy, _, arch = platform_tag.partition("_")
        return (
            legacy in _LEGACY_MANYLINUX and arch == machine and glibc >= _LEGACY_MANYLINUX[legacy]
        )
    return False


def installer_fits(host: Mapping[str, Any]) -> bool:
    """Whether the py-rattler installed here runs on ``host`` (same OS and CPU, a glibc
    and Python at least as new as its wheel needs)."""
    try:
        return any(_tag_fits(tag, host) for tag in _wheel_tags())
    except metadata.PackageNotFoundError:
        return False


def installer_bundle(worker: Path) -> Installer:
    """py-rattler's installed files and ``worker`` as a tar.gz, made once per version.

    The bundle unpacks to ``site/`` (py-rattler's package and dist-info, put on the host's
    ``PYTHONPATH``) and ``rattler_worker.py``.

    Raises:
        EnvironmentBuildError: py-rattler is not installed here.
    """
    try:
        dist = metadata.distribution("py-rattler")
    except metadata.PackageNotFoundError as exc:
        raise EnvironmentBuildError(
            "py-rattler is not installed here; it solves conda environments and installs "
            "them on other hosts",
            hint="pip install py-rattler conda-lock",
        ) from exc
    files = sorted(
        (str(f), f.locate()) for f in dist.files or () if not str(f).startswith((".", "/"))
    )
    worker_digest = hashlib.sha256(worker.read_bytes()).hexdigest()[:12]
    folder = cache_root() / ".conda-remote"
    stem = f"py-rattler-{dist.version}-{worker_digest}"
    done = [p for p in folder.glob(f"{stem}-*.tar.gz") if p.is_file()]
    if done:
        path = done[0]
        return Installer(path, path.name[len(stem) + 1 : -len(".tar.gz")], dist.version)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, located in files:
            if "__pycache__" in name or not Path(located).is_file():
                continue
            tar.add(str(located), arcname=f"site/{name}", recursive=False, filter=_plain)
        tar.add(str(worker), arcname="rattler_worker.py", filter=_plain)
    # The same bytes from the same files (no timestamps, owners): a host that has this
    # bundle from another machine or an earlier cache is not sent it again.
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    digest = hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{digest}.tar.gz"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return Installer(path, digest, dist.version)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def describe_archives(archives: Sequence[LockedArchive]) -> list[list[str]]:
    """``[[sha256, file name], ...]``: what the host's agent is told of each archive."""
    return [[a.sha256, a.file_name] for a in archives]
