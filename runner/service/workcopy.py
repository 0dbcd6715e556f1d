"""A run's working folder: its snapshot's files, made by a rename when it can.

Copying a big source folder into every run's working folder and deleting it afterwards
costs seconds, and on a disk with discard the deletions make the next runs slower and
slower. So a working folder is *kept* when its run ends: put back in line with its
snapshot (what the run added is deleted, what it changed or removed is written again
from the blobs) and moved under ``WS/work/``. The next run of that snapshot gets it with
one rename and a stat walk; a run of another snapshot (the same project, edited) gets
the most recent one with only the differences written. Only when nothing is kept are
the files copied from the blobs.

Not hard links into the blob store: a script may open a file of its working folder for
writing, and as root nothing stops it, so a linked blob (shared by every snapshot that
holds that content) would change. A kept folder belongs to one run at a time, and its
files are plain copies: the script may write, truncate, chmod or replace them, and
nothing outside its own folder changes.

Whether a kept file is still what the snapshot says is decided from its stat: inode,
size, mtime, ctime (which no process can set back: any write, chmod, rename or new link
moves it), mode, and a link count of one (a file linked from elsewhere could be written
through that link at any time: it is copied again). Host side (the daemon) only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runner import access
from runner.snapshot import write_entry

if TYPE_CHECKING:
    from runner.artifacts import BlobStore
    from runner.snapshot import Snapshot
    from runner.workspace import Workspace

#: The folder of a workspace holding the kept working folders.
KEPT_DIR = "work"
#: How many working folders a workspace keeps (the oldest is deleted past it): each is a
#: full copy of a project folder.
MAX_KEPT = 3
#: Beside a run's working folder (``runs/RUN_ID/``): the stat of each file as written.
RECORD = "work.json"

#: rel path -> [inode, size, mtime_ns, ctime_ns, st_mode, digest of the content written]
_Record = dict[str, list[object]]


def make(ws: Workspace, snapshot: Snapshot, dest: Path) -> str:
    """Make ``dest`` (absent or empty) the run's working folder holding ``snapshot``.

    Returns how: ``kept`` (a kept folder of this snapshot), ``adapted`` (one of another
    snapshot, the differences written) or ``copied`` (every file from the blobs).

    Raises:
        StoreError: a blob is missing or damaged.
    """
    ws_root, blobs, policy = ws.path, ws.blobs, ws._access
    if dest.exists():
        dest.rmdir()  # empty, or the caller made a mistake (OSError)
    access.make_dirs(dest.parent, policy)
    how = "copied"
    record: _Record = {}
    for name in _candidates(ws_root / KEPT_DIR, snapshot.id):
        kept = ws_root / KEPT_DIR / name
        try:
            os.rename(kept, dest)
        except OSError:
            continue  # taken by another run meanwhile
        record_path = kept.with_name(name + ".json")
        record = _read_record(record_path)
        record_path.unlink(missing_ok=True)
        how = "kept" if name.startswith(snapshot.id) else "adapted"
        break
    else:
        os.mkdir(dest)
    try:
        record = _reconcile(dest, blobs, snapshot, record)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    _write_record(dest.parent / RECORD, snapshot.id, record, policy)
    return how


def keep(ws: Workspace, snapshot: Snapshot, workdir: Path) -> bool:
    """After the run (its outputs stored): put ``workdir`` back in line with its snapshot
    and keep it for the next run; True if kept. Anything that fails deletes it instead,
    as a run's working folder always was."""
    record_path = workdir.parent / RECORD
    try:
        record = _read_record(record_path, snapshot.id)
        if not record or not workdir.is_dir():
            return False
        record = _reconcile(workdir, ws.blobs, snapshot, record)
        folder = ws.path / KEPT_DIR
        access.make_dirs(folder, ws._access)
        name = f"{snapshot.id}.{secrets.token_hex(4)}"
        # The record first: a folder without one is never taken (see _candidates).
        _write_record(folder / f"{name}.json", snapshot.id, record, ws._access)
        os.rename(workdir, folder / name)
    except Exception:
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        record_path.unlink(missing_ok=True)
    _evict(folder)
    return True


def forget(workdir: Path) -> None:
    """Delete a run's working folder without keeping it."""
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir.parent / RECORD).unlink(missing_ok=True)


# -- inside ----------------------------------------------------------------------------


def _candidates(folder: Path, snapshot_id: str) -> list[str]:
    """Kept folders to try, best first: this snapshot's, then the newest others."""
    try:
        names = [e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    dated = []
    for name in names:
        try:
            dated.append((os.stat(folder / f"{name}.json").st_mtime_ns, name))
        except FileNotFoundError:
            continue  # being kept or deleted right now
    dated.sort(reverse=True)
    return [n for _, n in dated if n.startswith(snapshot_id)] + [
        n for _, n in dated if not n.startswith(snapshot_id)
    ]


def _evict(folder: Path) -> None:
    """Delete the oldest kept folders past MAX_KEPT (renamed away first, so that no run
    takes one half deleted)."""
    try:
        dated = sorted(
            (e.stat().st_mtime_ns, e.name[: -len(".json")])
            for e in os.scandir(folder)
            if e.name.endswith(".json")
        )
    except OSError:
        return
    for _, name in dated[:-MAX_KEPT] if len(dated) > MAX_KEPT else []:
        trash = folder / f".trash-{name}"
        with contextlib.suppress(OSError):
            os.rename(folder / name, trash)
        (folder / f"{name}.json").unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)


def _key(st: os.stat_result, digest: str) -> list[object]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, digest]


def _reconcile(root: Path, blobs: BlobStore, snapshot: Snapshot, record: _Record) -> _Record:
    """Make the folder ``root`` hold exactly the snapshot's files; the new record.

    A file whose stat is the recorded one is left alone; everything else that is not a
    file of the snapshot is deleted, and missing or changed files are written again.
    """
    want = {e.path: e for e in snapshot.entries}
    dirs = {""}
    for rel in want:
        parent = rel.rpartition("/")[0]
        while parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    good: _Record = {}
    stack = [("", str(root))]
    while stack:
        rel_dir, path = stack.pop()
        st = os.stat(path, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:  # the run made it unwritable
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
        with os.scandir(path) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if rel in dirs:
                        stack.append((rel, entry.path))
                    else:
                        shutil.rmtree(entry.path)
                    continue
                est = entry.stat(follow_symlinks=False)
                file = want.get(rel)
                if (
                    file is not None
                    and stat.S_ISREG(est.st_mode)
                    and est.st_nlink == 1
                    and bool(est.st_mode & 0o100) == file.executable
                    and record.get(rel) == _key(est, file.digest)
                ):
                    good[rel] = record[rel]
                else:
                    os.unlink(entry.path)
    unchecked = set(dirs) - {""}  # folders not known to exist yet
    for rel, file in want.items():
        if rel in good:
            continue
        parent = rel.rpartition("/")[0]
        if parent in unchecked:
            os.makedirs(root / parent, exist_ok=True)
            unchecked.discard(parent)
        target = root / rel
        write_entry(blobs, snapshot, file, target)
        good[rel] = _key(os.stat(target), file.digest)
    return good


def _read_record(path: Path, snapshot_id: str | None = None) -> _Record:
    """The stat record at ``path`` ({} if missing or not for ``snapshot_id``)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return {}
    if snapshot_id is not None and data.get("snapshot") != snapshot_id:
        return {}
    files: _Record = data["files"]
    return files


def _write_record(path: Path, snapshot_id: str, record: _Record, policy: access.Access) -> None:
    text = json.dumps(
        {"snapshot": snapshot_id, "written": time.time(), "files": record},
        separators=(",", ":"),
    )
    access.write_private(path, text, policy)
