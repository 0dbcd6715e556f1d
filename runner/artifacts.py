"""A content-addressed file store: blobs named by their SHA-256, written atomically.

Every file a run keeps (uploads, outputs, logs, snapshot contents, images) lives here
once, whatever how many runs or snapshots name it. Writers copy into a temporary file
in the same folder and ``os.replace`` it into place, so a reader never sees half a blob
and two processes storing the same content at once both succeed. A write that fails
(a full disk) removes its temporary file and raises StoreError (``store_fault``).

Integrity: a blob that is read to leave the store (a download, a materialized or zipped
snapshot, a model download, a snapshot manifest) is hashed while it is copied, and a
content that does not match its name is a StoreError naming the blob and the file it
was meant to be; nothing half-written is left at the destination. Storing the same
content again repairs a damaged blob: ``put_bytes`` compares the stored bytes before it
skips a write, and ``put_stream`` (which has already copied and hashed the content)
always puts its copy in place.

Packs: many small blobs stored at once (a cold snapshot of thousands of source files)
go into one pack file, ``packs/NAME.pack``, with its index ``packs/NAME.idx`` (digest,
offset, size of each), instead of one file each: creating thousands of files is most of
the time of such a snapshot. The index is written after the pack, so a pack is only ever
read whole-and-indexed. Readers look for a loose blob first, then in the packs; storing
a packed content again loose repairs a damaged packed copy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import json
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NoReturn

from runner.errors import ConfigError, StoreError, store_fault

_CHUNK = 1 << 20
_PACKS = "packs"
_PACK_FORMAT = "runner-pack/1"
#: Fewer new contents than this in a batch are stored loose (a pack is not worth it).
_MIN_PACK = 16
#: A pack holds at most about this many bytes (a batch beyond it makes several).
_PACK_BYTES = 64 << 20
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
        #: digest -> (pack file, offset, size) of every packed blob seen so far
        self._packed: dict[str, tuple[str, int, int]] = {}
        self._pack_names: set[str] = set()
        self._pack_lock = threading.Lock()

    def path_of(self, digest: str) -> Path:
        """Where the blob with this digest lives (it may not exist)."""
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        """Whether the blob is stored (loose or packed)."""
        return os.path.exists(f"{self._root}/{digest[:2]}/{digest[2:]}") or self._in_pack(digest)

    # -- packs -----------------------------------------------------------------------------

    def _in_pack(self, digest: str) -> bool:
        return digest in self._packed or (self._load_packs() and digest in self._packed)

    def _load_packs(self) -> bool:
        """Read the indexes of packs not seen yet; True if there were any."""
        try:
            names = [n[:-4] for n in os.listdir(f"{self._root}/{_PACKS}") if n.endswith(".idx")]
        except OSError:
            return False
        new = [n for n in names if n not in self._pack_names]
        if not new:
            return False
        with self._pack_lock:
            for name in new:
                try:
                    with open(f"{self._root}/{_PACKS}/{name}.idx", "rb") as f:
                        index = json.loads(f.read())
                    entries = index["entries"] if index.get("format") == _PACK_FORMAT else []
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    continue  # unreadable: its blobs are missing (workspace check says so)
                pack = f"{self._root}/{_PACKS}/{name}.pack"
                for digest, offset, size in entries:
                    self._packed.setdefault(str(digest), (pack, int(offset), int(size)))
                self._pack_names.add(name)
        return True

    def _read_packed(self, digest: str) -> bytes | None:
        """A packed blob's bytes as stored (unchecked), or None if no pack holds it."""
        if not self._in_pack(digest):
            return None
        pack, offset, size = self._packed[digest]
        try:
            fd = os.open(pack, os.O_RDONLY)
        except FileNotFoundError:
            return None  # the pack was rewritten (workspace check --repair): look again
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def put_many(self, contents: Sequence[bytes]) -> list[str]:
        """Store many small contents at once; their digests, in order.

        Those not stored yet go into new pack files rather than a file each.
        """
        try:
            return self._put_many(contents)
        except OSError as exc:
            self._fault(exc, sum(len(c) for c in contents))

    def _put_many(self, contents: Sequence[bytes]) -> list[str]:
        digests = [hashlib.sha256(c).hexdigest() for c in contents]
        self._load_packs()
        new: dict[str, bytes] = {}
        for digest, data in zip(digests, contents):
            if digest in new:
                continue
            if os.path.exists(f"{self._root}/{digest[:2]}/{digest[2:]}"):
                self._put_bytes(data)  # compares, and repairs a damaged copy (as put_bytes)
            elif digest in self._packed:  # (loaded above: no listdir per file)
                if self._read_packed(digest) != data:
                    self._put_bytes(data)  # a loose copy wins over the damaged packed one
            else:
                new[digest] = data
        if len(new) < _MIN_PACK:
            for data in new.values():
                self._put_bytes(data)
            return digests
        batch: list[tuple[str, bytes]] = []
        size = 0
        for item in new.items():
            batch.append(item)
            size += len(item[1])
            if size >= _PACK_BYTES:
                self._write_pack(batch)
                batch, size = [], 0
        if batch:
            self._write_pack(batch)
        return digests

    def _write_pack(self, batch: list[tuple[str, bytes]]) -> None:
        folder = f"{self._root}/{_PACKS}"
        if folder not in self._shards:
            os.makedirs(folder, 0o770 if self._shared else 0o700, exist_ok=True)
            if self._shared:
                with contextlib.suppress(OSError):
                    os.chmod(folder, 0o2770)  # noqa: S103 - the shared group's, on purpose
            self._shards.add(folder)
        entries = []
        offset = 0
        for digest, data in batch:
            entries.append([digest, offset, len(data)])
            offset += len(data)
        index = json.dumps({"format": _PACK_FORMAT, "entries": entries}).encode("ascii")
        name = hashlib.sha256(index).hexdigest()
        self._write_file(folder, f"{name}.pack", [data for _, data in batch])
        self._write_file(folder, f"{name}.idx", [index])  # after the pack: see the docstring
        self._load_packs()

    def _write_file(self, folder: str, name: str, parts: list[bytes]) -> None:
        """Write ``folder/name`` atomically (a temporary file beside it, then replace)."""
        tmp = self._tmp_name(folder)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        try:
            if self._shared:
                os.fchmod(fd, self.mode)
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp)
            raise
        os.close(fd)
        os.replace(tmp, f"{folder}/{name}")

    def packed(self) -> dict[str, tuple[str, int, int]]:
        """Every packed blob: digest -> (pack file, offset, size)."""
        self._load_packs()
        return dict(self._packed)

    def remove(self, digests: Iterable[str]) -> None:
        """Delete blobs, loose or packed (a pack holding any is written again without
        them). For ``runner workspace check --repair``."""
        gone = set(digests)
        for digest in gone:
            _unlink_quiet(str(self.path_of(digest)))
        packs = {self._packed[d][0] for d in gone if self._in_pack(d)}
        for pack in sorted(packs):
            keep = []
            for digest, (where, _, _) in list(self._packed.items()):
                if where == pack and digest not in gone:
                    data = self._read_packed(digest)
                    if data is not None:
                        keep.append((digest, data))
            if keep:
                self._write_pack(keep)
            _unlink_quiet(pack[: -len(".pack")] + ".idx")
            _unlink_quiet(pack)
            with self._pack_lock:
                for digest, (where, _, _) in list(self._packed.items()):
                    if where == pack:
                        del self._packed[digest]
                self._pack_names.discard(Path(pack).stem)
            self._load_packs()

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
        if _holds(dest, data) or (
            not os.path.exists(dest) and self._packed and self._read_packed(digest) == data
        ):
            return digest  # stored already, intact (a damaged copy is written over below)
        self._write_file(shard, digest[2:], [data])  # a racing writer of the same content
        return digest  # is harmless

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
            # Always put the copy in place, even over a stored blob: it was hashed as it
            # was written, and the stored one may be damaged (this repairs it for free).
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
            return self.put_fd(f.fileno())

    def _stream_fd(self, fd: int) -> tuple[str, int]:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as stream:
            return self.put_stream(stream)

    def put_fd(self, fd: int) -> tuple[str, int]:
        """Store what the file open at ``fd`` holds from its offset on; (digest, size).

        The copy is made in the kernel (``copy_file_range``: no pass through this process,
        measured 3-10x faster for big files here), then the copy itself is hashed, so the
        digest is always that of what is stored. Where the kernel cannot copy (another
        file system on an old kernel, a pipe), it is streamed as ``put_stream`` does.
        """
        try:
            start = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:  # not a file (a pipe): streamed
            start = -1
        if start < 0 or not hasattr(os, "copy_file_range"):
            return self._stream_fd(fd)
        tmp = self._tmp_name(self._root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                while os.copy_file_range(fd, out, 1 << 30):
                    pass
            finally:
                os.close(out)
            h = hashlib.sha256()
            size = 0
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            with open(tmp, "rb", buffering=0) as copy:
                while n := copy.readinto(buf):
                    h.update(view[:n])
                    size += n
            digest = h.hexdigest()
            os.chmod(tmp, self.mode)
            os.replace(tmp, f"{self._shard(digest)}/{digest[2:]}")
        except OSError as exc:
            _unlink_quiet(tmp)
            if exc.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                os.lseek(fd, start, os.SEEK_SET)  # the kernel cannot: stream it
                return self._stream_fd(fd)
            self._fault(exc, None)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return digest, size

    def read_bytes(self, digest: str, what: str | None = None) -> bytes:
        """The content of a blob, checked against its digest.

        Raises:
            StoreError: the blob is missing or damaged (``what`` names the file it is).
        """
        f = self.open_blob(digest, what)
        with f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise self.damaged(digest, what, actual)
        return data

    def open_blob(self, digest: str, what: str | None = None) -> BinaryIO:
        """The blob opened for reading (unchecked: hash what you read, see ``damaged``).

        Raises:
            StoreError: the blob is missing.
        """
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            data = self._read_packed(digest)
            if data is None:
                raise self.missing(digest, what) from None
            return io.BytesIO(data)

    def copy_to(self, digest: str, dest: Path | str, what: str | None = None) -> None:
        """Write a blob to ``dest`` (a new, writable file), creating parent folders.

        The copy is hashed as it is written into a temporary file beside ``dest``, which
        replaces ``dest`` only when the content matches the digest.

        Raises:
            StoreError: the blob is missing or damaged; ``dest`` is left as it was.
        """
        dest = Path(dest)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(dest.stat().st_mode) and not dest.is_dir():
                # Replacing it would swap a device (/dev/null, for root) for a file.
                raise ConfigError(
                    f"cannot write {str(dest)!r}: it is not a regular file; choose a file "
                    "or folder path"
                )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(dest.with_name(f".{dest.name}.tmp-{os.getpid()}"))
        try:
            self.write_new(digest, tmp, what)
            os.replace(tmp, dest)
        except BaseException:
            _unlink_quiet(tmp)
            raise

    def write_new(self, digest: str, dest: str | Path, what: str | None = None) -> None:
        """Copy a blob into the file ``dest`` (created or truncated), hashing as it goes.

        On a mismatch (or any failure) ``dest`` is removed, so no damaged copy remains.

        Raises:
            StoreError: the blob is missing or damaged.
        """
        src = self.open_blob(digest, what)
        h = hashlib.sha256()
        try:
            with src:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    if isinstance(src, io.BytesIO):  # a packed blob
                        size = len(src.getbuffer())
                    else:
                        size = os.fstat(src.fileno()).st_size
                    want = size + 1 if size < _CHUNK else _CHUNK
                    while chunk := src.read(want):
                        h.update(chunk)
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view) :]
                        want = _CHUNK
                finally:
                    os.close(fd)
            actual = h.hexdigest()
            if actual != digest:
                raise self.damaged(digest, what, actual)
        except BaseException:
            _unlink_quiet(str(dest))
            raise

    def digest_of_stored(self, digest: str) -> str | None:
        """The SHA-256 of what is stored under ``digest`` now (None if it is missing)."""
        h = hashlib.sha256()
        try:
            with open(self.path_of(digest), "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            data = self._read_packed(digest)
            return None if data is None else hashlib.sha256(data).hexdigest()
        return h.hexdigest()

    def missing(self, digest: str, what: str | None) -> StoreError:
        """The error for a blob that is not stored."""
        return StoreError(
            f"{what or 'a stored file'} is missing from the workspace: blob {digest} is not in "
            f"{self._root}",
            hint="run 'runner workspace check --repair', then store the same file again "
            "(upload it again, submit or snapshot its folder again, or re-run what produced it)",
        )

    def damaged(self, digest: str, what: str | None, actual: str) -> StoreError:
        """The error for a blob whose content does not match its digest."""
        return StoreError(
            f"{what or 'a stored file'} is damaged in the workspace: blob {digest} in "
            f"{self._root} does not match its content hash (it hashes to {actual[:16]}...)",
            hint="run 'runner workspace check --repair' (it removes damaged blobs), then store "
            "the same file again to repair it (upload it again, submit or snapshot its folder "
            "again, or re-run what produced it)",
        )


def _holds(path: str, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data`` (False if it is missing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size != len(data):
            return False
        view = memoryview(data)
        at = 0
        while at < len(data):
            chunk = os.read(fd, min(len(data) - at, _CHUNK))
            if not chunk or view[at : at + len(chunk)] != chunk:
                return False
            at += len(chunk)
        return True
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
