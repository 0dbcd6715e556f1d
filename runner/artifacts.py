"""A content-addressed file store: blobs named by their SHA-256, written atomically.

Every file a run keeps (uploads, outputs, logs, snapshot contents, images) lives here
once, whatever how many runs or snapshots name it. Writers copy into a temporary file
in the same folder and ``os.replace`` it into place, so a reader never sees half a blob
and two processes storing the same content at once both succeed. A write that fails
(a full disk) removes its temporary file and raises StoreError (``store_fault``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import threading
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NoReturn

from runner.errors import ConfigError, store_fault

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
    """Blobs under ``root/ab/cdef...`` keyed by SHA-256 hex digest.

    The write path is lean on purpose (string paths, shard folders created once per
    process, the temporary file in the shard itself, one stat): a snapshot of thousands
    of small files spends most of its time here.
    """

    def __init__(self, root: Path, mode: int = 0o400) -> None:
        self.root = root
        #: mode of stored blobs: read-only, the owner's (runner.access: or the group's)
        self.mode = mode
        # A shared workspace's blobs and folders must reach the group whatever the umask:
        # only then is each one chmod-ed (a private one's umask can only take bits away).
        self._shared = bool(mode & 0o070)
        self._root = str(root)
        self._shards: set[str] = set()
        self._seq = itertools.count()

    def path_of(self, digest: str) -> Path:
        """Where the blob with this digest lives (it may not exist)."""
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return os.path.exists(f"{self._root}/{digest[:2]}/{digest[2:]}")

    def _shard(self, digest: str) -> str:
        shard = f"{self._root}/{digest[:2]}"
        if shard not in self._shards:
            os.makedirs(shard, 0o770 if self._shared else 0o700, exist_ok=True)
            if self._shared:
                with contextlib.suppress(OSError):  # (another member's folder)
                    os.chmod(shard, 0o2770)  # noqa: S103 - the shared group's, on purpose
            self._shards.add(shard)
        return shard

    def _tmp_name(self, folder: str) -> str:
        return f"{folder}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(self._seq)}"

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""
        try:
            return self._put_bytes(data)
        except OSError as exc:
            self._fault(exc, len(data))

    def _fault(self, exc: OSError, size: int | None) -> NoReturn:
        """Raise the StoreError for a failed write of a blob (or ``exc`` itself)."""
        what = "store a file" if size is None else f"store a file of {size} bytes"
        error = store_fault(exc, str(self.root.parent), what)
        if error is None:
            raise exc
        raise error from exc

    def _put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        shard = self._shard(digest)
        dest = f"{shard}/{digest[2:]}"
        if os.path.exists(dest):
            return digest
        tmp = self._tmp_name(shard)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        try:
            if self._shared:
                os.fchmod(fd, self.mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp)
            raise
        os.close(fd)
        os.replace(tmp, dest)  # a racing writer of the same content is harmless
        return digest

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Store what ``stream`` yields; return (digest, size)."""
        tmp = self._tmp_name(self._root)
        h = hashlib.sha256()
        size = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            dest = f"{self._shard(digest)}/{digest[2:]}"
            if os.path.exists(dest):
                os.unlink(tmp)
            else:
                os.chmod(tmp, self.mode)
                os.replace(tmp, dest)
        except BaseException as exc:
            _unlink_quiet(tmp)
            if isinstance(exc, OSError):
                self._fault(exc, None)
            raise
        return digest, size

    def put_file(self, path: Path | str) -> tuple[str, int]:
        """Store the file at ``path``; return (digest, size)."""
        with open(path, "rb") as f:
            return self.put_stream(f)

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


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
