"""The files part of the run history's Store: the (name, digest, size) files recorded for
each run (their bytes live in the blob store, ``runner.artifacts``), and the rule that
no name of a run is both a file and a folder (see ``runner.store``).

Part of the in-run client: standard library only.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from runner.artifacts import folders_of, name_clash
from runner.errors import ConflictError
from runner.store_connection import _StoreConnection


class _StoreFiles(_StoreConnection):
    """A Store's record of each run's files."""

    def add_files(self, run_id: str, entries: Sequence[tuple[str, str, int]]) -> None:
        """Record (name, digest, size) files of a run; a name already taken raises.

        So does a name that would make a file and a folder of one name (``a`` and
        ``a/b``), in the batch or with the run's recorded files: nothing is recorded then.
        """
        now = time.time()
        with self.write(f"record {len(entries)} file(s) of run {run_id}") as conn:
            for name, digest, _size in entries:
                row = conn.execute(
                    "SELECT digest FROM files WHERE run_id = ? AND name = ?", (run_id, name)
                ).fetchone()
                if row is not None and row[0] != digest:
                    raise ConflictError(
                        f"run {run_id} already has a file named {name!r}; upload under another name"
                    )
            _refuse_clash(conn, run_id, [n for n, _, _ in entries])
            conn.executemany(
                "INSERT OR IGNORE INTO files(run_id, name, digest, size, created_utc) "
                "VALUES (?,?,?,?,?)",
                [(run_id, n, d, s, now) for n, d, s in entries],
            )
            self._journal(
                {"e": "files", "id": run_id, "entries": [list(e) for e in entries]},
                blobs=[d for _, d, _ in entries],
            )

    def replace_files(self, run_id: str, entries: Sequence[tuple[str, str, int]]) -> None:
        """Record files of a run, replacing same-named ones (logs and outputs, stored last).

        A name that would make a file and a folder of one name raises ConflictError, and
        nothing is recorded.
        """
        now = time.time()
        with self.write(f"record {len(entries)} file(s) of run {run_id}") as conn:
            _refuse_clash(conn, run_id, [n for n, _, _ in entries])
            conn.executemany(
                "INSERT OR REPLACE INTO files(run_id, name, digest, size, created_utc) "
                "VALUES (?,?,?,?,?)",
                [(run_id, n, d, s, now) for n, d, s in entries],
            )
            self._journal(
                {
                    "e": "files",
                    "id": run_id,
                    "entries": [list(e) for e in entries],
                    "replace": True,
                },
                blobs=[d for _, d, _ in entries],
            )

    def file_clashes(self, run_id: str, names: Sequence[str]) -> list[tuple[str, str]]:
        """(recorded, new) pairs: each new name whose folder is a recorded file of the run,
        or which is a folder of recorded files (``a`` against ``a/b``)."""
        with self._lock:
            return _file_clashes(self.conn, run_id, names)

    def list_files(self, run_id: str, prefix: str | None = None) -> list[tuple[str, str, int]]:
        """(name, digest, size) of the run's files, by name."""
        rows = self.query(
            "SELECT name, digest, size FROM files WHERE run_id = ? ORDER BY name", (run_id,)
        )
        if prefix:
            rows = [r for r in rows if r[0] == prefix or r[0].startswith(prefix.rstrip("/") + "/")]
        return [(str(n), str(d), int(s)) for n, d, s in rows]


def _file_clashes(
    conn: sqlite3.Connection, run_id: str, names: Sequence[str], limit: int = 0
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in names:
        for folder in folders_of(name):
            if conn.execute(
                "SELECT 1 FROM files WHERE run_id = ? AND name = ?", (run_id, folder)
            ).fetchone():
                found.append((folder, name))
                break
        else:
            # Names in the folder ``name/`` sort between "name/" and "name0" ('0' follows '/').
            row = conn.execute(
                "SELECT name FROM files WHERE run_id = ? AND name > ? AND name < ? LIMIT 1",
                (run_id, name + "/", name + "0"),
            ).fetchone()
            if row is not None:
                found.append((str(row[0]), name))
        if limit and len(found) >= limit:
            break
    return found


def _refuse_clash(conn: sqlite3.Connection, run_id: str, names: Sequence[str]) -> None:
    """ConflictError when ``names`` hold a file and a folder of one name, or would with the
    run's recorded files."""
    clash = name_clash(names)
    if clash is not None:
        folder, inside = clash
        raise ConflictError(
            f"{folder!r} and {inside!r} cannot both be files of run {run_id}: {folder!r} would "
            "be a file and a folder at once; rename one of them"
        )
    recorded = _file_clashes(conn, run_id, names, limit=1)
    if recorded:
        old, new = recorded[0]
        raise ConflictError(
            f"run {run_id} already has a file {old!r}, so {new!r} cannot be a file too: one "
            "would be a file and a folder at once; upload under another name"
        )
