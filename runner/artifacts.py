"""A content-addressed file store: blobs named by their SHA-256, written atomically.

Every file a run keeps (uploads, outputs, logs, snapshot contents, images) lives here
once, whatever how many runs or snapshots name it. Writers copy into a temporary file
in the same folder and ``os.replace`` it into place, so a reader never sees half a blob
and two processes storing the same content at once both succeed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from runner.errors import ConfigError

_CHUNK = 1 << 20


def check_artifact_name(name: object, what: str = "name") -> str:
    """Return ``name`` as a normalised relative POSIX path, or raise ConfigError.

    Absolute names and names that climb out with ``..`` are refused: artifact names
    become paths on download, and must never point outside the destination.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{what} {name!r} is not a file name; pass a relative path such as 'outputs/model.pkl'"
        )
    posix = name.replace("\\", "/")
    pure = PurePosixPath(posix)
    if pure.is_absolute() or posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ConfigError(
            f"{what} {name!r} is absolute; artifact names are relative paths such as 'outputs/x.txt'"
        )
    parts = [p for p in pure.parts if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"{what} {name!r} climbs out with '..'; use a path inside the run")
    if not parts:
        raise ConfigError(f"{what} {name!r} names no file; pass a relative path")
    return "/".join(parts)


class BlobStore:
    """Blobs under ``root/ab/cdef...`` keyed by SHA-256 hex digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, digest: str) -> Path:
        """Where the blob with this digest lives (it may not exist)."""
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.path_of(digest).exists()

    def _tmp(self) -> tuple[int, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=self.root, prefix=".tmp-")

    def _commit(self, tmp: str, digest: str) -> None:
        dest = self.path_of(digest)
        if dest.exists():  # same content already stored: keep the old one
            os.unlink(tmp)
            return
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return digest
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self._commit(tmp, digest)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return digest

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Store what ``stream`` yields; return (digest, size)."""
        fd, tmp = self._tmp()
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            self._commit(tmp, digest)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return digest, size

    def put_file(self, path: Path | str) -> tuple[str, int]:
        """Store the file at ``path``; return (digest, size)."""
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_file_known(self, path: Path | str, digest: str) -> None:
        """Store a file whose digest the caller already computed (skips re-hashing)."""
        if self.has(digest):
            return
        fd, tmp = self._tmp()
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            self._commit(tmp, digest)
        except BaseException:
            _unlink_quiet(tmp)
            raise

    def read_bytes(self, digest: str) -> bytes:
        """The content of a blob."""
        return self.path_of(digest).read_bytes()

    def copy_to(self, digest: str, dest: Path | str) -> None:
        """Write a blob to ``dest`` (a new, writable file), creating parent folders."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(self.path_of(digest), tmp)
        os.replace(tmp, dest)


def file_digest(path: Path | str) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
