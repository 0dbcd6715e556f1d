"""Storing a snapshot's files: the stat cache that skips unchanged ones, and hashing and
storing the rest in the BlobStore (small files in batches, big ones on a thread pool).

Imported by the in-run client: standard library only, and it must import on Python 3.9.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.artifacts import BlobStore
from runner.errors import ConfigError, RunnerWarning
from runner.snapshot_walk import _Found

_CACHE_MAGIC = b"runner-snapshot-cache/1 "
_SMALL_BYTES = 1 << 20  # read whole and store with put_bytes below this; stream above
_CHUNK = 1 << 20
#: Small files are read and stored in batches of about this many bytes.
_BATCH_BYTES = 64 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a fifo swapped in after the walk must not hang us
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


# --------------------------------------------------------------------------- stat cache

# relative path -> [size, mtime_ns, inode, digest]
_CacheFiles = dict[str, list[object]]
# One cache file may serve several source folders (a workspace keeps one for all its
# runs); it keeps the most recently snapshotted ones.
_CACHE_SOURCES = 8


@dataclass
class _Cache:
    """What one source folder's last snapshot saw."""

    store: str
    snapshot: str
    files: _CacheFiles


def _load_cache(path: Path | None) -> dict[str, object]:
    """The sources of the stat cache at ``path`` ({} if missing, torn or corrupt)."""
    if path is None:
        return {}
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    head, _, body = raw.partition(b"\n")
    if not head.startswith(_CACHE_MAGIC):
        return {}
    if head[len(_CACHE_MAGIC) :].decode("ascii", "replace") != hashlib.sha256(body).hexdigest():
        return {}  # torn or tampered: rebuild it
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _cache_for(sources: dict[str, object], source: str) -> _Cache | None:
    """The cache of one source folder, if it is well formed."""
    data = sources.get(source)
    if not isinstance(data, dict):
        return None
    files, snap, store = data.get("files"), data.get("snapshot"), data.get("store")
    if not (isinstance(files, dict) and isinstance(snap, str) and isinstance(store, str)):
        return None
    return _Cache(store, snap, files)


def _save_cache(path: Path, sources: dict[str, object], source: str, cache: _Cache) -> None:
    """Write the stat cache atomically (tmp + os.replace); failures are only a lost speedup."""
    sources.pop(source, None)  # most recent last
    sources[source] = {"store": cache.store, "snapshot": cache.snapshot, "files": cache.files}
    for old in list(sources)[:-_CACHE_SOURCES]:
        del sources[old]
    body = json.dumps(sources, separators=(",", ":")).encode("ascii")
    data = _CACHE_MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
        if path.parent.stat().st_mode & stat.S_ISGID:  # a shared workspace's (runner.access)
            os.fchmod(fd, 0o660)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            _unlink_quiet(tmp)
        warnings.warn(
            f"could not write the snapshot cache {str(path)!r}: {exc}; the next snapshot will "
            "re-hash every file",
            RunnerWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- storing


def _ingest(blobs: BlobStore, path: str, size: int, probe: bool = False) -> tuple[str, int]:
    """Hash and store one file; return (digest, size) of what was stored.

    ``probe``: hash a big file before copying it, as its content may be stored already.
    """
    if size < _SMALL_BYTES:
        data = _read_small(path, size)
        return blobs.put_bytes(data), len(data)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        # Big content is stored with put_fd, which hashes the copy it made, not the
        # source: a file rewritten while it is read is never stored under the digest of
        # other content. When it may be stored already (a touched file), one read-only
        # pass first avoids copying it again.
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as stream:
            if probe:
                digest, total = _hash_stream(stream)
                if blobs.has(digest):
                    return digest, total
                stream.seek(0)
        return blobs.put_fd(fd)
    finally:
        os.close(fd)


def _read_small(path: str, size: int) -> bytes:
    """The whole content of a small file (all of it, if it grew since the walk)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        data = os.read(fd, size + 1)
        if len(data) > size:
            parts = [data]
            while chunk := os.read(fd, _CHUNK):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def _hash_stream(stream: io.FileIO) -> tuple[str, int]:
    """SHA-256 and size of what ``stream`` reads, in 1 MiB chunks into one buffer."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    total = 0
    while n := stream.readinto(buf):
        h.update(view[:n])
        total += n
    return h.hexdigest(), total


def _ingest_all(
    blobs: BlobStore, todo: list[tuple[str, int, bool]], source: str
) -> list[tuple[str, int] | None]:
    """Store many files; None for a file that vanished since the walk.

    Big files go to a thread pool (hashing and I/O release the GIL) while this thread
    stores the small ones: threads on small files only contend for the GIL and for the
    store's folder (measured: two threads on the small files were 1.3-4x slower).
    """

    def readable(path: str, exc: OSError) -> ConfigError:
        return ConfigError(
            f"cannot read {path!r} in source folder {source!r}: {exc.strerror}; make it "
            "readable or list it in .amlignore"
        )

    def one(item: tuple[str, int, bool]) -> tuple[str, int] | None:
        try:
            return _ingest(blobs, *item)
        except FileNotFoundError:
            return None
        except (PermissionError, IsADirectoryError) as exc:
            raise readable(item[0], exc) from exc

    def small_ones(at: list[int]) -> None:
        """Read the small files, then store them together (packed: see BlobStore)."""
        contents: list[bytes] = []
        read: list[int] = []
        size = 0
        for i in at:
            try:
                data = _read_small(todo[i][0], todo[i][1])
            except FileNotFoundError:
                continue
            except (PermissionError, IsADirectoryError) as exc:
                raise readable(todo[i][0], exc) from exc
            contents.append(data)
            read.append(i)
            size += len(data)
            if size >= _BATCH_BYTES:
                store(read, contents)
                contents, read, size = [], [], 0
        store(read, contents)

    def store(read: list[int], contents: list[bytes]) -> None:
        for i, digest, data in zip(read, blobs.put_many(contents), contents):
            results[i] = (digest, len(data))

    results: list[tuple[str, int] | None] = [None] * len(todo)
    big = [i for i, item in enumerate(todo) if item[1] >= _SMALL_BYTES]
    small = [i for i, item in enumerate(todo) if item[1] < _SMALL_BYTES]
    if not big:
        small_ones(small)
        return results
    # Keep a CPU for this thread when it has small files to store (measured: more big-file
    # threads than CPUs - 1 slowed the whole down on 2 CPUs).
    cpus = os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(big), cpus - (1 if small else 0), 8)))
    try:
        futures = [(i, pool.submit(one, todo[i])) for i in big]
        small_ones(small)
        for i, future in futures:
            results[i] = future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


@dataclass
class _Hashed:
    """The digests of the walk's files, in its order (None: the file vanished)."""

    digests: list[str | None]
    #: the sizes of what was stored (a file may have grown since the walk)
    sizes: list[int]
    #: whether the content stored is the one the walk's stat describes (cacheable)
    exact: list[bool]
    #: how many files were read (not cache hits)
    read: int


def _hash_files(
    found: list[_Found], cache: _Cache | None, trust: bool, blobs: BlobStore, src: str
) -> _Hashed:
    """The digest of every file: from the stat cache when its stat is unchanged, else stored.

    ``trust``: the cache's digests are known to be in ``blobs`` (no check per hit).
    """
    digests: list[str | None] = []
    todo: list[tuple[str, int, bool]] = []  # (path, size, may be stored already)
    todo_at: list[int] = []
    sizes: list[int] = []
    cached = cache.files if cache is not None else {}
    hex64 = _HEX64.match
    for i, (rel, path, fst) in enumerate(found):
        hit = cached.get(rel)
        digest = None
        if (
            type(hit) is list
            and len(hit) == 5
            and hit[0] == fst.st_size
            and hit[1] == fst.st_mtime_ns
            and hit[2] == fst.st_ino
            and hit[4] == fst.st_ctime_ns
            and isinstance(hit[3], str)
            and hex64(hit[3])
            and (trust or blobs.has(hit[3]))
        ):
            digest = hit[3]
        digests.append(digest)
        sizes.append(fst.st_size)
        if digest is None:
            # Same size, new stat (touched, checked out again): probably stored already.
            probe = type(hit) is list and len(hit) == 5 and hit[0] == fst.st_size
            todo.append((path, fst.st_size, probe))
            todo_at.append(i)
    stored = _ingest_all(blobs, todo, src) if todo else []
    exact = [True] * len(found)  # the content is the one the stat describes
    for i, result in zip(todo_at, stored):
        if result is not None:
            digests[i], sizes[i] = result
            exact[i] = result[1] == found[i][2].st_size
    return _Hashed(digests, sizes, exact, len(todo))


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
