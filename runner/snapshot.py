"""Source snapshots: a folder's files, content-addressed in the BlobStore, deduplicated.

A snapshot is a sorted manifest of ``(path, digest, size, executable)`` entries. The
manifest itself is stored as a blob, and its SHA-256 is the snapshot id, so the same
folder taken twice gives the same id and stores nothing new.

What is left out:

- ``.git`` (folder or file) at every level;
- whatever the ignore files say, with gitignore semantics. In each folder the ignore
  file is ``.amlignore`` if present, else ``.gitignore``; it applies to that folder's
  subtree, and a deeper file overrides a shallower one. Below a folder whose
  ``.amlignore`` was used, ``.gitignore`` files are not read (an ``.amlignore`` is how
  a user uploads files that git ignores);
- symlinks that lead outside the source folder, nowhere, or into a cycle (one
  RunnerWarning names them), and special files (fifos, sockets, devices).

Empty folders are not recorded. The runner's own files (the blob store, the stat cache)
are left out when they sit inside the source.

This module holds the public API; the steps live beside it: :mod:`runner.snapshot_ignore`
(the gitignore matcher), :mod:`runner.snapshot_walk` (which files), :mod:`runner.snapshot_ingest`
(the stat cache, hashing and storing), :mod:`runner.snapshot_git` (git properties).

These modules are imported by the in-run client: standard library only, and they must
import on Python 3.9.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runner.artifacts import BlobStore
from runner.errors import ConfigError, NotFoundError, RunnerWarning, StoreError
from runner.snapshot_git import git_properties
from runner.snapshot_ingest import (
    _CHUNK,
    _HEX64,
    _Cache,
    _cache_for,
    _CacheFiles,
    _hash_files,
    _Hashed,
    _load_cache,
    _save_cache,
    _unlink_quiet,
)
from runner.snapshot_walk import _Found, _Walk

__all__ = [
    "FILE_WARN_COUNT",
    "SIZE_WARN_BYTES",
    "Snapshot",
    "SnapshotEntry",
    "git_properties",
    "load_snapshot",
    "materialize",
    "take_snapshot",
    "to_zip",
]

#: Above this many bytes a snapshot warns (read at call time, so tests can lower it).
SIZE_WARN_BYTES = 300 * 1024 * 1024
#: Above this many files a snapshot warns.
FILE_WARN_COUNT = 2000

_MANIFEST_FORMAT = "runner-snapshot/1"
# A file whose mtime is this close to (or after) the start of the walk may change again
# within the same timestamp tick without its stat changing ("racy git"): never cache it.
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class SnapshotEntry:
    """One file of a snapshot."""

    #: relative POSIX path inside the source
    path: str
    #: SHA-256 hex digest: the blob in the BlobStore
    digest: str
    #: bytes
    size: int
    #: whether any execute bit was set
    executable: bool


@dataclass(frozen=True)
class Snapshot:
    """A stored snapshot: its id and its files, sorted by path."""

    #: SHA-256 of the canonical manifest, which is stored as a blob under this digest
    id: str
    #: the files, sorted by path
    entries: tuple[SnapshotEntry, ...]

    @property
    def file_count(self) -> int:
        """How many files the snapshot holds."""
        return len(self.entries)

    @property
    def total_bytes(self) -> int:
        """The sum of the file sizes."""
        return sum(e.size for e in self.entries)


def _manifest_bytes(entries: tuple[SnapshotEntry, ...]) -> bytes:
    """The canonical manifest: its SHA-256 is the snapshot id."""
    files = [[e.path, e.digest, e.size, 1 if e.executable else 0] for e in entries]
    return json.dumps(
        {"format": _MANIFEST_FORMAT, "files": files},
        separators=(",", ":"),
        ensure_ascii=True,  # file names that are not UTF-8 survive as escaped surrogates
    ).encode("ascii")


# --------------------------------------------------------------------------- public API


def cache_file(ws_root: Path, source: Path | str) -> Path:
    """The stat cache a workspace keeps for one source folder (every snapshot of that
    folder uses it: submits, child runs, ``run.take_snapshot``)."""
    real = os.path.realpath(os.fspath(source))
    return ws_root / "snapshot-cache" / f"{hashlib.sha256(real.encode()).hexdigest()[:16]}.json"


def take_snapshot(
    source: Path | str, blobs: BlobStore, *, cache_path: Path | None = None
) -> Snapshot:
    """Snapshot a folder (or a single file) into ``blobs``.

    Args:
        source: the folder to snapshot, or a single file (stored under its base name).
        blobs: where the contents and the manifest are stored.
        cache_path: a stat cache file; with it, files whose size, mtime, inode and ctime
            are unchanged since the last snapshot are neither re-read nor re-hashed (no
            process can set a ctime back: a file written in place and given its old mtime
            again is still seen).

    Returns:
        The Snapshot; equal folders give equal ids.

    Raises:
        ConfigError: the source does not exist, or a file in it cannot be read.

    Example:
        >>> snap = take_snapshot("project", BlobStore(ws / "blobs"))  # doctest: +SKIP
        >>> snap.id, snap.file_count  # doctest: +SKIP
    """
    src = os.path.abspath(os.fspath(source))
    real, found, walk_start_ns = _find(src, blobs, cache_path)

    store_key = os.path.realpath(blobs.root)
    sources = _load_cache(cache_path)
    cache = _cache_for(sources, real)
    # Every digest in a cache was stored before its snapshot's manifest was: if that
    # manifest is in this store, so are they, and hits need no check against the store.
    trust = cache is not None and cache.store == store_key and blobs.has(cache.snapshot)
    hashed = _hash_files(found, cache, trust, blobs, src)

    entries = tuple(
        SnapshotEntry(rel, digest, size, bool(fst.st_mode & 0o111))
        for (rel, _, fst), digest, size in zip(found, hashed.digests, hashed.sizes)
        if digest is not None
    )
    snapshot_id = blobs.put_bytes(_manifest_bytes(entries))

    # Every file a cache hit and none gone, same store and id: the cache is unchanged.
    unchanged = (
        cache is not None
        and trust
        and not hashed.read
        and len(found) == len(cache.files)
        and cache.snapshot == snapshot_id
    )
    if cache_path is not None and not unchanged:
        new = _Cache(store_key, snapshot_id, _cache_files(found, hashed, walk_start_ns))
        if new != cache:
            _save_cache(cache_path, sources, real, new)
    return Snapshot(snapshot_id, entries)


def _find(src: str, blobs: BlobStore, cache_path: Path | None) -> tuple[str, list[_Found], int]:
    """The files of ``src`` (a folder or one file), sorted: (its real path, the files, and
    when the walk started, in ns); warns of what was left out and of a big snapshot."""
    try:
        st = os.stat(src)
    except FileNotFoundError:
        raise ConfigError(
            f"source {src!r} does not exist; pass an existing folder or file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read source {src!r}: {exc}; pass a readable folder") from exc
    real = os.path.realpath(src)
    walk_start_ns = time.time_ns()
    if stat.S_ISDIR(st.st_mode):
        own = [os.path.realpath(blobs.root)]
        if cache_path is not None:
            own.append(os.path.realpath(cache_path))
        walk = _Walk(real, tuple(own))
        walk.run()
        found = walk.found
        _warn_skipped(src, walk.bad_links, walk.special)
    elif stat.S_ISREG(st.st_mode):
        found = [(os.path.basename(src), real, st)]
    else:
        raise ConfigError(f"source {src!r} is not a folder or a regular file; pass a folder")
    found.sort(key=lambda f: f[0])
    _warn_size(src, len(found), sum(f[2].st_size for f in found))
    return real, found, walk_start_ns


def _cache_files(found: list[_Found], hashed: _Hashed, walk_start_ns: int) -> _CacheFiles:
    """The stat cache's entries: every file stored exactly as its stat says, and not racy."""
    racy_after = walk_start_ns - _RACY_NS
    return {
        rel: [fst.st_size, fst.st_mtime_ns, fst.st_ino, digest, fst.st_ctime_ns]
        for (rel, _, fst), digest, ok in zip(found, hashed.digests, hashed.exact)
        if digest is not None and ok and fst.st_mtime_ns < racy_after
    }


def load_snapshot(blobs: BlobStore, snapshot_id: str) -> Snapshot:
    """The snapshot stored under ``snapshot_id``.

    Raises:
        NotFoundError: no such snapshot in this store.
        StoreError: the stored manifest is not a snapshot manifest.

    Example:
        >>> load_snapshot(blobs, run.get_snapshot_id()).file_count  # doctest: +SKIP
    """
    if (
        not isinstance(snapshot_id, str)
        or not _HEX64.match(snapshot_id)
        or not blobs.has(snapshot_id)
    ):
        raise NotFoundError(
            f"snapshot {snapshot_id!r} not found in {str(blobs.root)!r}; pass the id that "
            "take_snapshot or run.get_snapshot_id() returned"
        )
    raw = blobs.read_bytes(snapshot_id, f"the file list (manifest) of snapshot {snapshot_id}")
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
            raise ValueError("not a snapshot manifest")
        entries = []
        for path, digest, size, executable in data["files"]:
            if not _safe_rel(path):
                raise ValueError(f"bad path {path!r}")
            if not (isinstance(digest, str) and _HEX64.match(digest)) or type(size) is not int:
                raise ValueError(f"bad entry for {path!r}")
            entries.append(SnapshotEntry(path, digest, size, bool(executable)))
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(
            f"snapshot {snapshot_id!r} in {str(blobs.root)!r} is not a valid manifest ({exc}); "
            "the workspace may be corrupt, take the snapshot again"
        ) from exc
    return Snapshot(snapshot_id, tuple(entries))


def materialize(snapshot: Snapshot, blobs: BlobStore, dest: Path | str) -> None:
    """Write a fresh, writable copy of the snapshot's files into ``dest``.

    ``dest`` may exist if it is empty. Executable files stay executable.

    Raises:
        ConfigError: ``dest`` exists and is not an empty folder.
        StoreError: a file's blob is missing from the store or damaged.

    Example:
        >>> materialize(snap, blobs, run_dir / "src")  # doctest: +SKIP
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or _has_entries(dest)):
        raise ConfigError(
            f"cannot materialize snapshot {snapshot.id[:12]} into {str(dest)!r}: it is not an "
            "empty folder; pass a new or empty folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    made = {""}
    for entry in snapshot.entries:
        rel = entry.path
        if not _safe_rel(rel):
            raise ConfigError(
                f"snapshot {snapshot.id[:12]} names {rel!r}, which is not a relative path "
                "inside the snapshot; take the snapshot with take_snapshot"
            )
        parent = rel.rpartition("/")[0]
        if parent not in made:
            (dest / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)
        write_entry(blobs, snapshot, entry, dest / rel)


def write_entry(blobs: BlobStore, snapshot: Snapshot, entry: SnapshotEntry, target: Path) -> None:
    """Write one file of a snapshot at ``target`` (a new file), executable if it was."""
    blobs.write_new(entry.digest, target, f"file {entry.path!r} of snapshot {snapshot.id}")
    if entry.executable:
        mode = os.stat(target).st_mode
        os.chmod(target, mode | ((mode & 0o444) >> 2))


def to_zip(snapshot: Snapshot, blobs: BlobStore, zip_path: Path | str) -> Path:
    """Write the snapshot as a zip file (deterministic: fixed timestamps, sorted names).

    Executable bits are kept in the entries' Unix attributes.

    Example:
        >>> to_zip(snap, blobs, "snapshot.zip")  # doctest: +SKIP
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in snapshot.entries:
                try:
                    entry.path.encode("utf-8")
                except UnicodeEncodeError:
                    raise ConfigError(
                        f"file name {entry.path!r} is not valid UTF-8, which a zip file cannot "
                        "hold; rename it in the source folder and take the snapshot again"
                    ) from None
                info = zipfile.ZipInfo(entry.path, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3  # Unix, so that external_attr holds the mode
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = ((0o755 if entry.executable else 0o644) | stat.S_IFREG) << 16
                info.file_size = entry.size
                what = f"file {entry.path!r} of snapshot {snapshot.id}"
                src = blobs.open_blob(entry.digest, what)
                h = hashlib.sha256()
                with src, zf.open(info, "w", force_zip64=entry.size > 0x7FFFFFFF) as dst:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        dst.write(chunk)
                if h.hexdigest() != entry.digest:
                    raise blobs.damaged(entry.digest, what, h.hexdigest())
        os.replace(tmp, zip_path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return zip_path


# --------------------------------------------------------------------------- helpers


def _warn_skipped(src: str, bad_links: list[str], special: list[str]) -> None:
    if bad_links:
        warnings.warn(
            f"snapshot of {src!r} left out {len(bad_links)} symlink(s) that lead outside the "
            f"source folder, nowhere, or into a cycle: {_some(bad_links)}; copy what they point "
            "to into the source folder, or list the links in .amlignore to silence this",
            RunnerWarning,
            stacklevel=4,
        )
    if special:
        warnings.warn(
            f"snapshot of {src!r} left out {len(special)} special file(s) (fifo, socket or "
            f"device): {_some([repr(s) for s in special])}; list them in .amlignore to silence "
            "this",
            RunnerWarning,
            stacklevel=4,
        )


def _warn_size(src: str, count: int, total: int) -> None:
    if total > SIZE_WARN_BYTES or count > FILE_WARN_COUNT:
        warnings.warn(
            f"snapshot of {src!r} holds {count:,} files, {total / 1e6:,.1f} MB (a snapshot "
            f"should stay under {FILE_WARN_COUNT:,} files and {SIZE_WARN_BYTES / 1e6:,.0f} MB); "
            "list data, outputs and virtual environments in an .amlignore file (gitignore "
            "syntax) in the source folder, or move them out of it",
            RunnerWarning,
            stacklevel=4,
        )


def _some(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _safe_rel(path: object) -> bool:
    """Whether ``path`` is a relative POSIX path that stays inside its folder.

    Not artifacts.check_artifact_name: file names may hold a backslash, a colon or only
    spaces on POSIX, and snapshots keep them as they are.
    """
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(True for _ in it)
