"""``runner workspace check``: what in a workspace folder is damaged, missing or left over.

Host side only (the CLI imports it). The check reads the folder itself, not through
``Workspace``, so that it still reports on a workspace whose database is missing, empty
or damaged. What it looks at:

- the database: SQLite's ``PRAGMA integrity_check``;
- every blob: hashed and compared with its name;
- blobs that something names but that are not stored: run files (``files``), snapshots
  (``run_snapshots`` and every file of their manifests) and model files
  (``model_files``); registered environments name no blob (a run's environment lock
  file is one of its files);
- orphan blobs (named by nothing) and run folders under ``runs/`` without a run: only
  those older than ``grace_s``, since a submit in progress writes its blobs and folders
  before or while it records them;
- stuck runs: not ended, and their holder is gone, as ``runner.lifecycle`` sees it
  (an interactive run whose process died; a submitted run that no daemon supervises).

``repair=True`` removes damaged blobs (storing the same file again brings it back),
orphan blobs and stray run folders, and ends stuck runs through ``runner.lifecycle``
(interactive runs end Failed; for submitted runs a daemon is started, which re-adopts
what still runs and ends the rest). Nothing is deleted when what names the blobs could
not be read in full (a damaged database or snapshot manifest): then every blob may be
named by something the check could not see.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import daemon_client, lifecycle
from runner.artifacts import BlobStore
from runner.errors import NotFoundError, RunnerError
from runner.status import ACTIVE_VALUES, SUPERVISED_VALUES
from runner.workspace import Workspace

JSONDict = dict[str, Any]

#: Orphan blobs and run folders younger than this are left alone (a submit may be
#: writing them).
GRACE_S = 3600.0
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_REST = re.compile(r"^[0-9a-f]{62}$")
_CHUNK = 1 << 20
#: How many users of a missing or damaged blob a report names.
_USERS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class BlobProblem:
    """A blob that is damaged or missing, and what names it."""

    digest: str
    #: what the blob is (``file 'x' of run R``), at most a few
    used_by: tuple[str, ...]
    #: SHA-256 of what is stored, for a damaged blob
    hashes_to: str | None = None

    def to_dict(self) -> JSONDict:
        out: JSONDict = {"digest": self.digest, "usedBy": list(self.used_by)}
        if self.hashes_to is not None:
            out["hashesTo"] = self.hashes_to
        return out


@dataclass(frozen=True, slots=True)
class StuckRun:
    """A run that has not ended although nothing holds it any more."""

    run_id: str
    status: str
    why: str

    def to_dict(self) -> JSONDict:
        return {"runId": self.run_id, "status": self.status, "why": self.why}


@dataclass(slots=True)
class CheckReport:
    """What ``check_workspace`` found (and, with repair, did)."""

    workspace: str
    #: problems of runner.db: integrity_check lines, or why it could not be read
    database: list[str] = field(default_factory=list)
    blobs_checked: int = 0
    blob_bytes: int = 0
    damaged_blobs: list[BlobProblem] = field(default_factory=list)
    missing_blobs: list[BlobProblem] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    stray_run_folders: list[str] = field(default_factory=list)
    stuck_runs: list[StuckRun] = field(default_factory=list)
    #: unreferenced blobs and run folders younger than the grace period (not problems)
    recent_unreferenced: int = 0
    #: whether everything that names blobs could be read (else nothing is deleted)
    references_complete: bool = True
    repaired: list[str] | None = None
    not_repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is wrong."""
        return not (
            self.database
            or self.damaged_blobs
            or self.missing_blobs
            or self.orphan_blobs
            or self.stray_run_folders
            or self.stuck_runs
        )

    def to_dict(self) -> JSONDict:
        """The report as strict JSON values (camelCase keys, like the rest of the CLI)."""
        out: JSONDict = {
            "workspace": self.workspace,
            "ok": self.ok,
            "database": {"ok": not self.database, "problems": self.database},
            "blobs": {"checked": self.blobs_checked, "bytes": self.blob_bytes},
            "damagedBlobs": [b.to_dict() for b in self.damaged_blobs],
            "missingBlobs": [b.to_dict() for b in self.missing_blobs],
            "orphanBlobs": self.orphan_blobs,
            "strayRunFolders": self.stray_run_folders,
            "stuckRuns": [r.to_dict() for r in self.stuck_runs],
            "recentUnreferenced": self.recent_unreferenced,
            "referencesComplete": self.references_complete,
        }
        if self.repaired is not None:
            out["repaired"] = self.repaired
            out["notRepaired"] = self.not_repaired
        return out


def check_workspace(
    path: Path | str, *, repair: bool = False, grace_s: float = GRACE_S
) -> CheckReport:
    """Check a workspace folder; with ``repair``, also fix what can be fixed.

    After a repair the report still lists what was found; ``repaired`` says what was
    done and ``not_repaired`` what is left to the user.

    Raises:
        NotFoundError: ``path`` is not a workspace folder.

    Example:
        >>> check_workspace("~/.runner/workspace").ok  # doctest: +SKIP
        True
    """
    root = Path(path).expanduser().resolve()
    if not (root / "workspace.json").is_file():
        raise NotFoundError(f"no runner workspace at {root}; pass the workspace folder with -w")
    report = CheckReport(str(root))
    now = time.time()
    refs, runs, active = _read_database(root, report)
    store = BlobStore(root / "blobs")
    packed = store.packed()  # read once: every packed blob's pack, offset and size
    stored = _hash_blobs(root / "blobs", packed, report)

    if refs is not None:
        _read_manifests(store, refs, stored, report)
        for digest in sorted(refs.keys() - stored.keys()):
            report.missing_blobs.append(BlobProblem(digest, _users(refs[digest])))
        for digest, actual in sorted(stored.items()):
            if actual is not None and actual != digest:
                report.damaged_blobs.append(
                    BlobProblem(digest, _users(refs.get(digest, [])), actual)
                )
    else:
        for digest, actual in sorted(stored.items()):
            if actual is not None and actual != digest:
                report.damaged_blobs.append(BlobProblem(digest, (), actual))

    if refs is not None and report.references_complete:
        for digest in sorted(stored.keys() - refs.keys()):
            if _age_s(_blob_path(root / "blobs", digest, packed), now) >= grace_s:
                report.orphan_blobs.append(digest)
            else:
                report.recent_unreferenced += 1
    if runs is not None:
        for entry in sorted(_entries(root / "runs")):
            if entry in runs:
                continue
            if _age_s(root / "runs" / entry, now) >= grace_s:
                report.stray_run_folders.append(entry)
            else:
                report.recent_unreferenced += 1
    if active is not None:
        report.stuck_runs.extend(_stuck(root, active))

    if repair:
        _repair(root, report)
    return report


# -- the database --------------------------------------------------------------------------


def _read_database(
    root: Path, report: CheckReport
) -> tuple[dict[str, list[str]] | None, set[str] | None, list[tuple[Any, ...]] | None]:
    """(digest -> users, run ids, unfinished runs), each None when it could not be read."""
    db = root / "runner.db"
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        report.database.append(f"{db} is missing")
        report.references_complete = False
        return None, None, None
    if size == 0:
        report.database.append(f"{db} is empty (0 bytes)")
        report.references_complete = False
        return None, None, None
    refs: dict[str, list[str]] | None = None
    runs: set[str] | None = None
    active: list[tuple[Any, ...]] | None = None
    try:
        conn = sqlite3.connect(db, timeout=60.0)
    except sqlite3.Error as exc:
        report.database.append(f"cannot open {db}: {exc}")
        report.references_complete = False
        return None, None, None
    try:
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            if [r[0] for r in rows] != ["ok"]:
                report.database.extend(str(r[0]) for r in rows)
        except sqlite3.DatabaseError as exc:
            report.database.append(f"integrity_check failed: {exc}")
        try:
            refs = {}
            for run_id, name, digest in conn.execute("SELECT run_id, name, digest FROM files"):
                refs.setdefault(digest, []).append(f"file {name!r} of run {run_id}")
            for run_id, snap in conn.execute("SELECT run_id, snapshot_id FROM run_snapshots"):
                refs.setdefault(snap, []).append(f"snapshot {snap} of run {run_id}")
            for name, version, rel, digest in conn.execute(
                "SELECT name, version, path, digest FROM model_files"
            ):
                refs.setdefault(digest, []).append(f"file {rel!r} of model {name}:{version}")
            runs = {r[0] for r in conn.execute("SELECT id FROM runs")}
            marks = ",".join("?" * len(ACTIVE_VALUES))
            active = conn.execute(
                f"SELECT id, type, status, owner, supervisor FROM runs WHERE status IN ({marks})",  # noqa: S608
                ACTIVE_VALUES,
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            report.database.append(f"cannot read what the database names: {exc}")
            report.references_complete = False
            return None, None, None
    finally:
        conn.close()
    if report.database:
        report.references_complete = False  # rows on damaged pages may be unreadable
    return refs, runs, active


# -- blobs -----------------------------------------------------------------------------------


def _blob_path(blobs: Path, digest: str, packed: dict[str, tuple[str, int, int]]) -> Path:
    """The file holding a blob: its own, or its pack."""
    loose = blobs / digest[:2] / digest[2:]
    if loose.exists() or digest not in packed:
        return loose
    return Path(packed[digest][0])


def _hash_blobs(
    blobs: Path, packed: dict[str, tuple[str, int, int]], report: CheckReport
) -> dict[str, str | None]:
    """digest -> SHA-256 of what is stored (None: could not be read)."""
    found: dict[str, str | None] = {}
    for shard in sorted(_entries(blobs)):
        if not _SHARD.match(shard):
            continue
        for rest in sorted(_entries(blobs / shard)):
            if not _REST.match(rest):
                continue  # temporary files of writers
            digest = shard + rest
            h = hashlib.sha256()
            try:
                with open(blobs / shard / rest, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        report.blob_bytes += len(chunk)
            except FileNotFoundError:
                continue  # removed while we looked
            except OSError as exc:
                found[digest] = f"unreadable: {exc.strerror}"
                continue
            found[digest] = h.hexdigest()
            report.blobs_checked += 1
    packs: dict[str, list[tuple[str, int, int]]] = {}
    for digest, (pack, offset, size) in packed.items():
        packs.setdefault(pack, []).append((digest, offset, size))
    for pack, items in sorted(packs.items()):
        try:
            fd = os.open(pack, os.O_RDONLY)
        except OSError as exc:
            for digest, _, _ in items:
                found.setdefault(digest, f"unreadable: {exc.strerror}")
            continue
        try:
            for digest, offset, size in items:
                data = os.pread(fd, size, offset)
                report.blob_bytes += len(data)
                report.blobs_checked += digest not in found
                found.setdefault(digest, hashlib.sha256(data).hexdigest())  # loose ones first
        finally:
            os.close(fd)
    return found


def _read_manifests(
    blobs: BlobStore,
    refs: dict[str, list[str]],
    stored: dict[str, str | None],
    report: CheckReport,
) -> None:
    """Add the files of every referenced snapshot to ``refs``."""
    snapshots = sorted(
        d for d, users in refs.items() if any(u.startswith("snapshot ") for u in users)
    )
    for snap in snapshots:
        if stored.get(snap) != snap:
            report.references_complete = False  # missing or damaged: its files are unknown
            continue
        try:
            with blobs.open_blob(snap) as f:
                data = json.loads(f.read())
            files = data["files"]
            for path, digest, _size, _exe in files:
                refs.setdefault(str(digest), []).append(f"file {path!r} of snapshot {snap}")
        except (OSError, ValueError, TypeError, KeyError):
            report.references_complete = False


def _users(users: list[str]) -> tuple[str, ...]:
    shown = users[:_USERS_SHOWN]
    if len(users) > _USERS_SHOWN:
        shown.append(f"and {len(users) - _USERS_SHOWN} more")
    return tuple(shown)


# -- runs ------------------------------------------------------------------------------------


def _stuck(root: Path, active: list[tuple[Any, ...]]) -> list[StuckRun]:
    """Unfinished runs whose holder is gone, as runner.lifecycle judges holders."""

    stuck = []
    daemon_up: bool | None = None
    for run_id, run_type, status, owner, supervisor in active:
        if run_type == "azureml.scriptrun":
            if status not in SUPERVISED_VALUES:
                continue
            if daemon_up is None:
                daemon_up = daemon_client._lock_held(root)
            if daemon_up or lifecycle.token_alive(supervisor) is not False:
                continue
            stuck.append(StuckRun(run_id, status, "submitted, and no runner daemon supervises it"))
        elif owner is not None and lifecycle.token_alive(owner) is False:
            stuck.append(
                StuckRun(run_id, status, "interactive, and the process that ran it is gone")
            )
    return stuck


# -- repairs ---------------------------------------------------------------------------------


def _repair(root: Path, report: CheckReport) -> None:
    done: list[str] = []
    left: list[str] = []
    blobs = root / "blobs"
    removed_blobs = 0
    store = BlobStore(blobs)
    store.remove(problem.digest for problem in report.damaged_blobs)
    for problem in report.damaged_blobs:
        removed_blobs += 1
        done.append(
            f"removed damaged blob {problem.digest}; store the same file again to bring it back"
        )
    store.remove(report.orphan_blobs)
    removed_blobs += len(report.orphan_blobs)
    if report.orphan_blobs:
        done.append(f"removed {len(report.orphan_blobs)} orphan blob(s)")
    if removed_blobs or report.missing_blobs:
        # A snapshot stat cache vouches for blobs without looking: drop it, or the next
        # snapshot of an unchanged folder would name a blob that is gone (instead of
        # storing the file again, which repairs it).
        for cache in (
            root / "snapshot-cache.json",
            *sorted((root / "snapshot-cache").glob("*.json")),
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cache)
    for entry in report.stray_run_folders:
        shutil.rmtree(root / "runs" / entry, ignore_errors=True)
        done.append(f"removed run folder runs/{entry}, which belongs to no run")
    if report.stuck_runs:
        done.extend(_end_stuck(root, report.stuck_runs))
    for problem in report.missing_blobs:
        left.append(
            f"blob {problem.digest} is missing ({', '.join(problem.used_by)}); store the same "
            "file again, or the runs and models that name it stay incomplete"
        )
    if report.database:
        left.append(
            f"the database {root / 'runner.db'} is damaged, missing or empty; restore it from a "
            "backup ('sqlite3 runner.db .recover' may save what is left)"
        )
    if not report.references_complete and report.database == []:
        left.append("a snapshot manifest could not be read: orphan blobs were left in place")
    report.repaired = done
    report.not_repaired = left


def _end_stuck(root: Path, stuck: list[StuckRun]) -> list[str]:

    done = []
    try:
        ws = Workspace(root)
    except RunnerError as exc:
        return [f"could not end stuck runs: {exc}"]
    supervise = False
    for run in stuck:
        if run.why.startswith("submitted"):
            supervise = True
            continue
        owner = ws.store.query("SELECT owner FROM runs WHERE id = ?", (run.run_id,))
        if owner and lifecycle.end_if_owner_gone(ws.store, run.run_id, owner[0][0]):
            done.append(f"ended run {run.run_id} Failed: the process that ran it is gone")
    if supervise:
        lifecycle.ensure_supervised(ws)
        done.append("started the workspace daemon, which takes over or ends the submitted runs")
    return done


# -- helpers ---------------------------------------------------------------------------------


def _entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _age_s(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0
