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

The matcher follows the gitignore documentation and agrees with ``git ls-files
--exclude-standard`` (the tests compare them on random patterns). One known difference:
a ``**`` glued to other characters (``b**``) is a plain ``*`` here, as documented,
while git lets it cross ``/`` in anchored patterns. Empty folders are not recorded.
The runner's own files (the blob store, the stat cache) are left out when they sit
inside the source.

This module is imported by the in-run client: standard library only, and it must
import on Python 3.9.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.artifacts import BlobStore
from runner.errors import ConfigError, NotFoundError, RunnerWarning, StoreError

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
_CACHE_MAGIC = b"runner-snapshot-cache/1 "
_SMALL_BYTES = 1 << 20  # read whole and store with put_bytes below this; stream above
_CHUNK = 1 << 20
#: Small files are read and stored in batches of about this many bytes.
_BATCH_BYTES = 64 << 20
# A file whose mtime is this close to (or after) the start of the walk may change again
# within the same timestamp tick without its stat changing ("racy git"): never cache it.
_RACY_NS = 2_000_000_000
_GIT_TIMEOUT_S = 10.0
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a fifo swapped in after the walk must not hang us
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


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


# --------------------------------------------------------------------------- ignore rules


@dataclass(frozen=True)
class _Rule:
    """One gitignore pattern, compiled."""

    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


@dataclass(frozen=True)
class _IgnoreFile:
    """The rules of one ignore file; ``base`` is its folder as ``'a/b/'`` ('' at the root)."""

    base: str
    rules: tuple[_Rule, ...]

    def decide(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by '!', None: no rule of this file matches."""
        sub = rel[len(self.base) :]
        for rule in reversed(self.rules):  # the last matching pattern wins
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.fullmatch(sub):
                return not rule.negate
        return None


_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}

_Token = tuple[str, bool]  # (character, escaped by a backslash)


def _tokenize(line: str) -> list[_Token] | None:
    """Split a pattern into characters, marking backslash-escaped ones; None if invalid."""
    tokens: list[_Token] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if i + 1 == len(line):
                return None  # a trailing backslash: git never matches such a pattern
            tokens.append((line[i + 1], True))
            i += 2
        else:
            tokens.append((ch, False))
            i += 1
    return tokens


def _bracket(tokens: list[_Token], start: int) -> tuple[str, int] | None:
    """Translate the bracket expression at ``tokens[start]`` ('['): (regex, next index).

    None when the '[' is never closed (it is then a literal '['). An unknown class such
    as '[[:foo:]]' matches nothing, as in git.
    """
    i = start + 1
    negate = False
    valid = True
    if i < len(tokens) and tokens[i] in (("!", False), ("^", False)):
        negate = True
        i += 1
    parts: list[str] = []
    first = True
    while i < len(tokens):
        ch, esc = tokens[i]
        if ch == "]" and not esc and not first:
            body = "".join(parts)
            if not valid:
                return "(?!)", i + 1
            if negate:
                return f"[^/{body}]", i + 1
            return f"(?!/)[{body}]", i + 1  # as in git, a class never matches the separator
        first = False
        if ch == "[" and not esc and i + 1 < len(tokens) and tokens[i + 1] == (":", False):
            end = _posix_class_end(tokens, i + 2)
            if end is None:
                parts.append(re.escape(ch))
                i += 1
                continue
            name = "".join(c for c, _ in tokens[i + 2 : end])
            valid = valid and name in _POSIX_CLASSES
            parts.append(_POSIX_CLASSES.get(name, ""))
            i = end + 2
            continue
        if i + 2 < len(tokens) and tokens[i + 1] == ("-", False) and tokens[i + 2] != ("]", False):
            hi = tokens[i + 2][0]
            # git matches the first character even when the range is reversed ('[z-a]': 'z')
            parts.append(f"{re.escape(ch)}-{re.escape(hi)}" if ch <= hi else re.escape(ch))
            i += 3
            continue
        parts.append(re.escape(ch))
        i += 1
    return None


def _posix_class_end(tokens: list[_Token], i: int) -> int | None:
    """Index of the ':' of the ':]' closing a '[:name:]' class, or None."""
    while i + 1 < len(tokens):
        if tokens[i] == (":", False) and tokens[i + 1] == ("]", False):
            return i
        if not tokens[i][0].isalpha():
            return None
        i += 1
    return None


def _translate(tokens: list[_Token]) -> str:
    """The regex body for a pattern (without anchoring)."""
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        ch, esc = tokens[i]
        if esc:
            out.append(re.escape(ch))
            i += 1
        elif ch == "*":
            j = i
            while j < n and tokens[j] == ("*", False):
                j += 1
            at_start = i == 0 or tokens[i - 1] == ("/", False)
            at_end = j == n or tokens[j] == ("/", False)
            if j - i >= 2 and at_start and at_end:
                if j < n:  # '**/': zero or more folders
                    out.append("(?:.*/)?")
                    j += 1
                else:  # trailing '**': everything inside
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            translated = _bracket(tokens, i)
            if translated is None:
                out.append(re.escape(ch))
                i += 1
            else:
                out.append(translated[0])
                i = translated[1]
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


def _parse_rule(line: str) -> _Rule | None:
    """Compile one line of an ignore file; None for blanks, comments and invalid lines."""
    if not line or line.startswith("#"):
        return None
    tokens = _tokenize(line)
    if tokens is None:
        return None
    while tokens and tokens[-1] == (" ", False):  # trailing spaces, unless escaped
        tokens.pop()
    negate = False
    if tokens and tokens[0] == ("!", False):
        negate = True
        tokens = tokens[1:]
    dir_only = False
    if tokens and tokens[-1] == ("/", False):
        dir_only = True
        tokens = tokens[:-1]
    if not tokens:
        return None
    anchored = ("/", False) in tokens
    if tokens[0] == ("/", False):
        tokens = tokens[1:]
        if not tokens:
            return None
    body = _translate(tokens)
    if not anchored:
        body = "(?:.*/)?" + body
    return _Rule(re.compile(body, re.DOTALL), negate, dir_only)


def _parse_ignore(text: str) -> tuple[_Rule, ...]:
    """Compile the text of an ignore file."""
    if text.startswith("\ufeff"):
        text = text[1:]
    rules = []
    for raw in text.split("\n"):
        rule = _parse_rule(raw[:-1] if raw.endswith("\r") else raw)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _is_ignored(ignores: tuple[_IgnoreFile, ...], rel: str, is_dir: bool) -> bool:
    for ignore in reversed(ignores):  # a deeper ignore file overrides a shallower one
        decided = ignore.decide(rel, is_dir)
        if decided is not None:
            return decided
    return False


# --------------------------------------------------------------------------- the walk

# (relative path, path to read, stat of what will be read)
_Found = tuple[str, str, os.stat_result]


def _is_workspace(path: str) -> bool:
    """Whether a folder is a runner workspace (it holds workspace.json and runner.db)."""
    return os.path.exists(os.path.join(path, "runner.db")) and os.path.exists(
        os.path.join(path, "workspace.json")
    )


class _Walk:
    """Collect the files of a source folder, applying ignore files and symlink rules."""

    def __init__(self, root_real: str, own: tuple[str, ...] = ()) -> None:
        self.root_real = root_real
        self.root_prefix = root_real.rstrip(os.sep) + os.sep
        # The runner's own files (the blob store, the stat cache) when they sit inside
        # the source: snapshotting them would change the snapshot with every snapshot.
        self.own = frozenset(p for p in own if self._inside(p))
        self.found: list[_Found] = []
        self.bad_links: list[str] = []
        self.special: list[str] = []
        self.skipped_workspaces: list[str] = []

    def _inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_prefix)

    def run(self) -> None:
        # (folder to list, its relative prefix, real paths from the root down, ignore
        # files in force, whether .gitignore files are still read)
        stack: list[tuple[str, str, tuple[str, ...], tuple[_IgnoreFile, ...], bool]] = [
            (self.root_real, "", (self.root_real,), (), True)
        ]
        own = self.own
        while stack:
            folder, prefix, chain, ignores, read_git = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except PermissionError as exc:
                raise ConfigError(
                    f"cannot list folder {prefix or '.'!r} in source folder "
                    f"{self.root_real!r}: {exc.strerror}; make it readable or list it in "
                    ".amlignore"
                ) from exc
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            ignores, read_git = self._ignore_file(entries, prefix, ignores, read_git)
            for entry in entries:
                name = entry.name
                if name == ".git":
                    continue
                rel = prefix + name
                if entry.is_symlink():
                    self._link(entry, rel, chain, ignores, read_git, stack)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        real = chain[-1].rstrip(os.sep) + os.sep + name
                        if _is_workspace(entry.path):
                            # A runner workspace inside the source (its live SQLite files
                            # must never be read: closing a file SQLite has open drops
                            # that process's locks on it) is never part of a snapshot.
                            self.skipped_workspaces.append(rel)
                            continue
                        if not (ignores and _is_ignored(ignores, rel, True)) and real not in own:
                            stack.append((entry.path, rel + "/", (*chain, real), ignores, read_git))
                        continue
                    if ignores and _is_ignored(ignores, rel, False):
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        self.special.append(rel)
                        continue
                    if own and chain[-1].rstrip(os.sep) + os.sep + name in own:
                        continue
                    self.found.append((rel, entry.path, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed while we walked

    @staticmethod
    def _ignore_file(
        entries: list[os.DirEntry[str]],
        prefix: str,
        ignores: tuple[_IgnoreFile, ...],
        read_git: bool,
    ) -> tuple[tuple[_IgnoreFile, ...], bool]:
        """Add this folder's ignore file (if any) to those in force."""
        aml = git = None
        for entry in entries:
            if entry.name == ".amlignore":
                aml = entry
            elif entry.name == ".gitignore":
                git = entry
        chosen = aml if aml is not None else (git if read_git else None)
        if chosen is None:
            return ignores, read_git
        try:
            with open(chosen.path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except (FileNotFoundError, IsADirectoryError):
            return ignores, read_git
        except PermissionError as exc:
            raise ConfigError(
                f"cannot read ignore file {prefix + chosen.name!r}: {exc.strerror}; make it "
                "readable or remove it"
            ) from exc
        rules = _parse_ignore(text)
        still_git = read_git and aml is None
        if not rules:
            return ignores, still_git
        return (*ignores, _IgnoreFile(prefix, rules)), still_git

    def _link(
        self,
        entry: os.DirEntry[str],
        rel: str,
        chain: tuple[str, ...],
        ignores: tuple[_IgnoreFile, ...],
        read_git: bool,
        stack: list[tuple[str, str, tuple[str, ...], tuple[_IgnoreFile, ...], bool]],
    ) -> None:
        """A symlink: keep what it points to if that is inside the source folder."""
        real = os.path.realpath(entry.path)
        try:
            st = os.stat(real)
        except OSError:
            if not (ignores and _is_ignored(ignores, rel, False)):
                self.bad_links.append(f"{rel!r} (dangling)")
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if ignores and _is_ignored(ignores, rel, is_dir):
            return
        if real in self.own:
            return
        if not self._inside(real):
            self.bad_links.append(f"{rel!r} -> {real!r} (outside the source folder)")
        elif is_dir:
            if _is_workspace(real):
                self.skipped_workspaces.append(rel)
            elif real in chain:
                self.bad_links.append(f"{rel!r} -> {real!r} (a cycle)")
            else:
                stack.append((real, rel + "/", (*chain, real), ignores, read_git))
        elif stat.S_ISREG(st.st_mode):
            self.found.append((rel, real, st))
        else:
            self.special.append(rel)


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

    store_key = os.path.realpath(blobs.root)
    sources = _load_cache(cache_path)
    cache = _cache_for(sources, real)
    # Every digest in a cache was stored before its snapshot's manifest was: if that
    # manifest is in this store, so are they, and hits need no check against the store.
    trust = cache is not None and cache.store == store_key and blobs.has(cache.snapshot)

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

    entries = tuple(
        SnapshotEntry(rel, digest, size, bool(fst.st_mode & 0o111))
        for (rel, _, fst), digest, size in zip(found, digests, sizes)
        if digest is not None
    )
    snapshot_id = blobs.put_bytes(_manifest_bytes(entries))

    # Every file a cache hit and none gone, same store and id: the cache is unchanged.
    unchanged = (
        cache is not None
        and trust
        and not todo
        and len(found) == len(cached)
        and cache.snapshot == snapshot_id
    )
    if cache_path is not None and not unchanged:
        racy_after = walk_start_ns - _RACY_NS
        files: _CacheFiles = {
            rel: [fst.st_size, fst.st_mtime_ns, fst.st_ino, digest, fst.st_ctime_ns]
            for (rel, _, fst), digest, ok in zip(found, digests, exact)
            if digest is not None and ok and fst.st_mtime_ns < racy_after
        }
        new = _Cache(store_key, snapshot_id, files)
        if new != cache:
            _save_cache(cache_path, sources, real, new)
    return Snapshot(snapshot_id, entries)


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


def git_properties(source: Path | str) -> dict[str, str]:
    """The azureml.git.* and mlflow.source.git.* properties of the repo holding ``source``.

    Returns {} when ``source`` is not inside a git work tree or git is not installed.

    Example:
        >>> git_properties(".")["azureml.git.commit"]  # doctest: +SKIP
        '3f1c...'
    """
    path = os.path.abspath(os.fspath(source))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if shutil.which("git") is None or not os.path.isdir(folder):
        return {}
    top = _git(folder, "rev-parse", "--show-toplevel")
    if not top:
        return {}
    props: dict[str, str] = {}
    uri = _git(folder, "config", "--get", "remote.origin.url") or top
    props["azureml.git.repository_uri"] = uri
    props["mlflow.source.git.repoURL"] = uri
    branch = _git(folder, "symbolic-ref", "--short", "-q", "HEAD") or "HEAD"  # HEAD: detached
    props["azureml.git.branch"] = branch
    props["mlflow.source.git.branch"] = branch
    commit = _git(folder, "rev-parse", "--verify", "-q", "HEAD")
    if commit:  # a repo with no commit yet has none
        props["azureml.git.commit"] = commit
        props["mlflow.source.git.commit"] = commit
    status = _git(folder, "--no-optional-locks", "status", "--porcelain", strip=False)
    if status is not None:
        props["azureml.git.dirty"] = str(bool(status.strip()))
    return props


# --------------------------------------------------------------------------- helpers


def _git(folder: str, *args: str, strip: bool = True) -> str | None:
    """stdout of ``git -C folder args`` or None if it fails or times out."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        proc = subprocess.run(
            ["git", "-C", folder, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out = proc.stdout.decode("utf-8", "surrogateescape")
    return out.strip() if strip else out


def _warn_skipped(src: str, bad_links: list[str], special: list[str]) -> None:
    if bad_links:
        warnings.warn(
            f"snapshot of {src!r} left out {len(bad_links)} symlink(s) that lead outside the "
            f"source folder, nowhere, or into a cycle: {_some(bad_links)}; copy what they point "
            "to into the source folder, or list the links in .amlignore to silence this",
            RunnerWarning,
            stacklevel=3,
        )
    if special:
        warnings.warn(
            f"snapshot of {src!r} left out {len(special)} special file(s) (fifo, socket or "
            f"device): {_some([repr(s) for s in special])}; list them in .amlignore to silence "
            "this",
            RunnerWarning,
            stacklevel=3,
        )


def _warn_size(src: str, count: int, total: int) -> None:
    if total > SIZE_WARN_BYTES or count > FILE_WARN_COUNT:
        warnings.warn(
            f"snapshot of {src!r} holds {count:,} files, {total / 1e6:,.1f} MB (a snapshot "
            f"should stay under {FILE_WARN_COUNT:,} files and {SIZE_WARN_BYTES / 1e6:,.0f} MB); "
            "list data, outputs and virtual environments in an .amlignore file (gitignore "
            "syntax) in the source folder, or move them out of it",
            RunnerWarning,
            stacklevel=3,
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


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
