"""The runs part of the run history's Store: experiments, runs (create, read, find),
supervision claims, statuses, tags and properties (see ``runner.store``).

Every change is also journaled (``_StoreConnection._journal``) in a remote run's
processes. Part of the in-run client: standard library only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from runner.errors import ConflictError, StoreError
from runner.store_connection import _StoreConnection
from runner.store_schema import RUN_COLUMNS, JSONDict, NewRun, RunRow, prefixed


class _StoreRuns(_StoreConnection):
    """Experiments, runs, claims, statuses, tags and properties of a Store."""

    #: rowid of the last run ``find_runs`` returned (where the next page starts), or None
    last_rowid: int | None

    # -- experiments -----------------------------------------------------------------

    def ensure_experiment(self, name: str) -> int:
        """The id of the experiment ``name``, created if new."""
        rows = self.query("SELECT id FROM experiments WHERE name = ?", (name,))
        if rows:
            return int(rows[0][0])
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO experiments(name, created_utc) VALUES (?, ?)",
                (name, time.time()),
            )
            return int(
                conn.execute("SELECT id FROM experiments WHERE name = ?", (name,)).fetchone()[0]
            )

    def experiment_names(self) -> list[str]:
        """All experiment names, oldest first."""
        return [r[0] for r in self.query("SELECT name FROM experiments ORDER BY id")]

    def experiment_name(self, experiment_id: int) -> str:
        """The name of an experiment by id."""
        return str(self.query("SELECT name FROM experiments WHERE id = ?", (experiment_id,))[0][0])

    # -- runs ------------------------------------------------------------------------

    def create_runs(
        self,
        experiment_id: int,
        specs: Sequence[NewRun],
        *,
        parent_id: str | None = None,
        id_prefix: str = "",
        submitted_by: str | None = None,
        handed_over: Sequence[str] | None = None,
    ) -> list[str]:
        """Create runs in one transaction; returns their ids in order.

        Runs without an id get ``{id_prefix}{n}``-style ids: children are named
        ``{parent}_{k}`` with k counting the parent's children, top-level runs
        ``{experiment}_{unix time}_{random}``.

        ``handed_over`` (a submit in a remote run's process): the runs are for the
        workspace that follows this journal to launch, not for this store's (nobody
        launches them here); they are journaled as ``submit`` events that name these
        blobs (their snapshot's manifest and contents).
        """
        now = time.time()
        ids: list[str] = []
        with self.write(f"record {len(specs)} new run(s)") as conn:
            number = conn.execute(
                "SELECT next_number FROM experiments WHERE id = ?", (experiment_id,)
            ).fetchone()[0]
            root_id: str | None = None
            child_index = 0
            if parent_id is not None:
                prow = conn.execute(
                    "SELECT root_id, child_count FROM runs WHERE id = ?", (parent_id,)
                ).fetchone()
                if prow is None:
                    raise StoreError(f"parent run {parent_id!r} vanished")
                root_id, child_index = prow
            experiment = self.experiment_name(experiment_id) if self.journal is not None else ""
            for spec in specs:
                run_id = spec.id
                if run_id is None:
                    if parent_id is not None:
                        run_id = f"{parent_id}_{child_index}"
                    else:
                        # 8 random bytes: a batch of a million ids still never collides.
                        run_id = f"{id_prefix}{int(now)}_{os.urandom(8).hex()}"
                if parent_id is not None:
                    child_index += 1
                row = (run_id, experiment_id, number, parent_id, root_id or run_id)
                _insert_run(conn, spec, row, now, submitted_by)
                ids.append(run_id)
                number += 1
                if self.journal is not None:
                    self._journal_new_run(
                        spec, run_id, experiment, parent_id, now, submitted_by, handed_over
                    )
            conn.execute(
                "UPDATE experiments SET next_number = ? WHERE id = ?", (number, experiment_id)
            )
            if parent_id is not None:
                conn.execute(
                    "UPDATE runs SET child_count = ? WHERE id = ?", (child_index, parent_id)
                )
        return ids

    def _journal_new_run(
        self,
        spec: NewRun,
        run_id: str,
        experiment: str,
        parent_id: str | None,
        now: float,
        submitted_by: str | None,
        handed_over: Sequence[str] | None = None,
    ) -> None:
        """Journal a run ``create_runs`` recorded (and its properties): a ``run`` event, or
        with ``handed_over`` a ``submit`` event (its properties inside: the other side
        launches it the moment the line is applied)."""
        event: JSONDict = {
            "e": "run" if handed_over is None else "submit",
            "id": run_id,
            "experiment": experiment,
            "parent": parent_id,
            "type": spec.type,
            "status": spec.status,
            "display_name": spec.display_name,
            "target": spec.target,
            "created": now,
            "submitted_by": submitted_by,
            "definition": spec.definition,
            "tags": spec.tags or {},
            "snapshot": spec.snapshot_id,
        }
        if handed_over is not None:
            event["props"] = spec.properties or {}
            self._journal(event, handed_over)
            return
        self._journal(event)
        if spec.properties:
            self._journal({"e": "props", "id": run_id, "props": spec.properties})

    def get_run(self, run_id: str) -> RunRow | None:
        """The run's row, or None."""
        rows = self.query(
            f"SELECT {prefixed('r')}, e.name FROM runs r JOIN experiments e "
            "ON e.id = r.experiment_id WHERE r.id = ?",
            (run_id,),
        )
        if not rows:
            return None
        return RunRow(rows[0][:-1], rows[0][-1])

    def iter_runs(self, page: int = 200, **conditions: Any) -> Iterator[RunRow]:
        """find_runs in pages of ``page`` rows, newest first: the first run comes at once."""
        before: int | None = None
        while True:
            with self._lock:
                rows = self.find_runs(limit=page, before_rowid=before, **conditions)
                before = self.last_rowid
            yield from rows
            if len(rows) < page or before is None:
                return

    def find_runs(
        self,
        *,
        experiment_id: int | None = None,
        parent_id: str | None = None,
        top_level_only: bool = False,
        descendants_of: str | None = None,
        run_type: str | None = None,
        status: str | None = None,
        target: str | None = None,
        tags: dict[str, str | None] | None = None,
        tag_keys: Sequence[str] = (),
        properties: dict[str, str | None] | None = None,
        property_keys: Sequence[str] = (),
        limit: int | None = None,
        before_rowid: int | None = None,
    ) -> list[RunRow]:
        """Runs matching every condition, newest first.

        Tag and property conditions drive the query through their (key, value) indexes,
        so a selective tag finds its runs among 100,000 without scanning them.
        """
        where: list[str] = []
        params: list[Any] = []
        # With a tag or property condition, its (key, value) index must drive the query:
        # a unary '+' keeps SQLite (which has no statistics) from preferring the
        # experiment index and then scanning every run of the experiment.
        indexed = bool(tags or tag_keys or properties or property_keys)
        p = "+" if indexed else ""
        for column, value in (("experiment_id", experiment_id), ("parent_id", parent_id)):
            if value is not None:
                where.append(f"{p}r.{column} = ?")
                params.append(value)
        if top_level_only:
            where.append(f"{p}r.parent_id IS NULL")
        if descendants_of is not None:
            where.append(
                "r.id IN (WITH RECURSIVE d(id) AS (SELECT id FROM runs WHERE parent_id = ? "
                "UNION ALL SELECT runs.id FROM runs JOIN d ON runs.parent_id = d.id) "
                "SELECT id FROM d)"
            )
            params.append(descendants_of)
        for column, value in (("type", run_type), ("status", status), ("target", target)):
            if value is not None:
                where.append(f"{p}r.{column} = ?")
                params.append(value)
        for condition, values in _kv_conditions(tags, tag_keys, properties, property_keys):
            where.append(condition)
            params.extend(values)
        if before_rowid is not None:
            where.append("r.rowid < ?")
            params.append(before_rowid)
        sql = (
            f"SELECT {prefixed('r')}, e.name, r.rowid FROM runs r JOIN experiments e "
            "ON e.id = r.experiment_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.query(sql, params)
        self.last_rowid = int(rows[-1][-1]) if rows else None
        return [RunRow(row[:-2], row[-2]) for row in rows]

    # -- supervision (runner.lifecycle) ---------------------------------------------------

    def claim_run(self, run_id: str, me: str, expected: str | None) -> bool:
        """Make ``me`` the run's supervisor if it is still ``expected``; True if so."""
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE runs SET supervisor = ? WHERE id = ? AND supervisor IS ?",
                (me, run_id, expected),
            )
            return cur.rowcount == 1

    def begin_launch(self, run_id: str, me: str, launching: str, statuses: Iterable[str]) -> bool:
        """Record that ``me`` is launching the run, before any process of it starts.

        True only for the run's supervisor, once, while the run has no handle and is in
        one of ``statuses``: whatever else happens, a run is launched at most once.
        """
        wanted = sorted(set(statuses))
        marks = ",".join("?" * len(wanted))
        with self.write() as conn:
            cur = conn.execute(
                f"UPDATE runs SET handle = ? WHERE id = ? AND supervisor = ? "
                f"AND handle IS NULL AND status IN ({marks})",
                (launching, run_id, me, *wanted),
            )
            return cur.rowcount == 1

    def release_claims(self, me: str) -> None:
        """Give up every claim of ``me`` (a daemon that stops)."""
        with self.write() as conn:
            conn.execute("UPDATE runs SET supervisor = NULL WHERE supervisor = ?", (me,))

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run (names are checked against the schema)."""
        cols = [c.strip() for c in RUN_COLUMNS.split(",")] + ["handle"]
        for name in fields:
            if name not in cols:
                raise KeyError(name)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.write(f"update run {run_id}") as conn:
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))
            self._journal({"e": "update", "id": run_id, "fields": fields})

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        allowed_from: Iterable[str] | None = None,
        details: str | None = None,
        error: JSONDict | None = None,
        start: bool = False,
        end: bool = False,
    ) -> str | None:
        """Move a run to ``status`` if its current status is in ``allowed_from``.

        Returns the status it had before, or None when the change was not allowed
        (so two processes racing to finish a run cannot both win).
        """
        now = time.time()
        with self.write(f"record status {status} of run {run_id}") as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            old = str(row[0])
            if allowed_from is not None and old not in set(allowed_from):
                return None
            sets = ["status = ?", "status_details = ?"]
            params: list[Any] = [status, details]
            if start:
                sets.append("start_utc = COALESCE(start_utc, ?)")
                params.append(now)
                sets.append("heartbeat_utc = ?")
                params.append(now)
            if end:
                sets.append("end_utc = ?")
                params.append(now)
            if error is not None:
                sets.append("error = ?")
                params.append(json.dumps(error))
            conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))
            self._journal(
                {
                    "e": "status",
                    "id": run_id,
                    "status": status,
                    "from": None if allowed_from is None else sorted(set(allowed_from)),
                    "details": details,
                    "error": error,
                    "start": start,
                    "end": end,
                    "time": now,
                }
            )
            return old

    # -- tags and properties ---------------------------------------------------------

    def set_tags(self, run_id: str, tags: dict[str, str | None]) -> None:
        """Add or replace tags."""
        with self.write(f"set tags of run {run_id}") as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES (?,?,?)",
                [(run_id, k, v) for k, v in tags.items()],
            )
            self._journal({"e": "tags", "id": run_id, "tags": tags})

    def remove_tags(self, run_id: str, keys: Sequence[str]) -> None:
        """Delete tags (missing keys are fine)."""
        with self.write(f"remove tags of run {run_id}") as conn:
            conn.executemany(
                "DELETE FROM tags WHERE run_id = ? AND key = ?", [(run_id, k) for k in keys]
            )
            self._journal({"e": "untag", "id": run_id, "keys": list(keys)})

    def get_tags(self, run_id: str) -> dict[str, str | None]:
        """The run's tags."""
        return dict(
            self.query("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", (run_id,))
        )

    def add_properties(self, run_id: str, props: dict[str, str | None]) -> None:
        """Add properties atomically; an existing key with another value raises ConflictError.

        The check and the insert share one write transaction, so of two processes adding
        different values for one key at once exactly one wins.
        """
        with self.write(f"add properties to run {run_id}") as conn:
            for key, value in props.items():
                row = conn.execute(
                    "SELECT value FROM properties WHERE run_id = ? AND key = ?", (run_id, key)
                ).fetchone()
                if row is not None and row[0] != value:
                    raise ConflictError(
                        f"property {key!r} of run {run_id} is already {row[0]!r}; properties "
                        f"are immutable, so it cannot become {value!r}; use a tag for values "
                        "that change"
                    )
            conn.executemany(
                "INSERT OR IGNORE INTO properties(run_id, key, value) VALUES (?,?,?)",
                [(run_id, k, v) for k, v in props.items()],
            )
            self._journal({"e": "props", "id": run_id, "props": props})

    def get_properties(self, run_id: str) -> dict[str, str | None]:
        """The run's properties."""
        return dict(
            self.query("SELECT key, value FROM properties WHERE run_id = ? ORDER BY key", (run_id,))
        )

    # -- metrics ---------------------------------------------------------------------


def _insert_run(
    conn: sqlite3.Connection,
    spec: NewRun,
    row: tuple[str, int, int, str | None, str],
    now: float,
    submitted_by: str | None,
) -> None:
    """Insert one run of ``create_runs`` with its owner, properties, snapshot and tags.

    ``row`` is (id, experiment id, number, parent id, root id); an id taken raises
    ConflictError.
    """
    run_id, experiment_id, number, parent_id, root_id = row
    try:
        conn.execute(
            f"INSERT INTO runs({RUN_COLUMNS}) VALUES "
            "(?,?,?,?,?,?,?,NULL,?,NULL,?,?,?,NULL,?,?,?,NULL,0)",
            (
                run_id,
                experiment_id,
                number,
                parent_id,
                root_id,
                spec.type,
                spec.status,
                spec.display_name,
                spec.target,
                now,
                now if spec.status == "Running" else None,
                now if spec.status == "Running" else None,
                submitted_by,
                json.dumps(spec.definition) if spec.definition is not None else None,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(
            f"a run with id {run_id!r} already exists; pass another run_id or none"
        ) from exc
    if spec.owner is not None:
        conn.execute("UPDATE runs SET owner = ? WHERE id = ?", (spec.owner, run_id))
    if spec.properties:
        conn.executemany(
            "INSERT OR IGNORE INTO properties(run_id, key, value) VALUES (?,?,?)",
            [(run_id, k, v) for k, v in spec.properties.items()],
        )
    if spec.snapshot_id is not None:
        conn.execute(
            "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) VALUES (?,?,?)",
            (run_id, spec.snapshot_id, now),
        )
    if spec.tags:
        conn.executemany(
            "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES (?,?,?)",
            [(run_id, k, v) for k, v in spec.tags.items()],
        )


def _kv_conditions(
    tags: dict[str, str | None] | None,
    tag_keys: Sequence[str],
    properties: dict[str, str | None] | None,
    property_keys: Sequence[str],
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``find_runs``' tag and property conditions: (SQL, its parameters) each, in order."""
    for table, pairs, keys in (
        ("tags", tags or {}, tag_keys),
        ("properties", properties or {}, property_keys),
    ):
        for key, value in pairs.items():
            if value is None:
                yield (
                    f"r.id IN (SELECT run_id FROM {table} WHERE key = ? AND value IS NULL)",
                    (key,),
                )
            else:
                yield (
                    f"r.id IN (SELECT run_id FROM {table} WHERE key = ? AND value = ?)",
                    (key, value),
                )
        for key in keys:
            yield f"r.id IN (SELECT run_id FROM {table} WHERE key = ?)", (key,)
