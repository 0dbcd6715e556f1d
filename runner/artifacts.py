"""A content-addressed file store: blobs named by their SHA-256, written atomically.

Every file a run keeps (uploads, outputs, logs, snapshot contents, images) lives here
once, whatever how many runs or snapshots name it. Writers copy into a temporary file
in the same folder and ``os.replace`` it into place, so a reader never sees half a blob
and two processes storing the same content at once both succeed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from runner.errors import ConfigError

_CHUNK = 1 << 20
#: The longest artifact name (characters, after normalising), as in azureml.
MAX_NAME_CHARS = 1024


def check_artifact_name(name: object, what: str = "name") -> str:
    """Return ``name`` as a normalised relative POSIX path, or raise ConfigError.

    Absolute names and names that climb out with ``..`` are refused: artifact names
    become paths on download, and must never point outside the destination. So are
    control characters (NUL, newline, carriage return, ...), which no file system or
    listing takes well, and names over ``MAX_NAME_CHARS`` characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{what} {name!r} is not a file name; pass a relative path such as 'outputs/model.pkl'"
        )
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(
            f"{what} {_short(name)!r} holds the control character {bad!r}; artifact names "
            "are printable text, so remove it"
        )
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise ConfigError(
            f"{what} {_short(name)!r} is not valid UTF-8 text; rename the file with a UTF-8 name"
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
    norm = "/".join(parts)
    if len(norm) > MAX_NAME_CHARS:
        raise ConfigError(
            f"{what} {_short(name)!r} is {len(norm)} characters long; artifact names may have "
            f"at most {MAX_NAME_CHARS}, so use a shorter name"
        )
    return norm


def folders_of(name: str) -> list[str]:
    """The folders a normalised name lies in: ``a/b/c`` -> ``['a', 'a/b']``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def name_clash(names: Sequence[str]) -> tuple[str, str] | None:
    """Two of ``names`` that cannot both be files (one is the other's folder), or None.

    On download ``a`` would be a file and a folder at once, so a run's files must never
    hold both ``a`` and ``a/b``.
    """
    given = set(names)
    for name in names:
        for folder in folders_of(name):
            if folder in given:
                return folder, name
    return None


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else f"{name[:limit]}..."


class BlobStore:
    """Blobs under ``root/ab/cdef...`` keyed by SHA-256 hex digest.

    The write path is lean on purpose (string paths, shard folders created once per
    process, the temporary file in the shard itself, one stat): a snapshot of thousands
    of small files spends most of its time here.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
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
            os.makedirs(shard, exist_ok=True)
            self._shards.add(shard)
        return shard

    def _tmp_name(self, folder: str) -> str:
        return f"{folder}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(self._seq)}"

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        shard = self._shard(digest)
        dest = f"{shard}/{digest[2:]}"
        if os.path.exists(dest):
            return digest
        tmp = self._tmp_name(shard)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_name(self._root)
        h = hashlib.sha256()
        size = 0
        try:
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
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
        except BaseException:
            _unlink_quiet(tmp)
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
