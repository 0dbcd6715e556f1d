"""The run history's schema: its tables, their migrations, and the rows of ``runs``.

The schema is versioned with ``PRAGMA user_version``; ``_MIGRATIONS[i]`` upgrades a
database from version i to i + 1, and :func:`migrate` applies the missing ones inside one
transaction. :class:`RunRow` is what reading a run gives, :class:`NewRun` what creating
one takes. Part of the in-run client: standard library only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from runner.errors import StoreError

JSONDict = dict[str, Any]

_MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE experiments(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_utc REAL NOT NULL,
        next_number INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE runs(
        id TEXT PRIMARY KEY,
        experiment_id INTEGER NOT NULL,
        number INTEGER NOT NULL,
        parent_id TEXT,
        root_id TEXT NOT NULL,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        status_details TEXT,
        display_name TEXT,
        description TEXT,
        target TEXT NOT NULL,
        created_utc REAL NOT NULL,
        start_utc REAL,
        end_utc REAL,
        heartbeat_utc REAL,
        submitted_by TEXT,
        definition TEXT,
        error TEXT,
        child_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_experiment ON runs(experiment_id, parent_id);
    CREATE INDEX runs_by_parent ON runs(parent_id);
    CREATE INDEX runs_by_root ON runs(root_id);
    CREATE INDEX runs_by_status ON runs(status);
    CREATE INDEX runs_by_target ON runs(target);
    CREATE TABLE tags(
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY(run_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX tags_by_kv ON tags(key, value);
    CREATE TABLE properties(
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
        PRIMARY KEY(run_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX properties_by_kv ON properties(key, value);
    CREATE TABLE metric_meta(
        run_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
        has_step INTEGER, description TEXT,
        PRIMARY KEY(run_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE metrics(
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        enc TEXT NOT NULL,
        data BLOB NOT NULL,
        steps BLOB,
        count INTEGER NOT NULL,
        time_utc REAL NOT NULL
    );
    CREATE INDEX metrics_by_run ON metrics(run_id, name, id);
    CREATE TABLE files(
        run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
        size INTEGER NOT NULL, created_utc REAL NOT NULL,
        PRIMARY KEY(run_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE models(
        name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT,
        experiment_name TEXT, model_path TEXT, tags TEXT NOT NULL, properties TEXT NOT NULL,
        framework TEXT, framework_version TEXT, description TEXT, created_utc REAL NOT NULL,
        PRIMARY KEY(name, version)
    ) WITHOUT ROWID;
    CREATE TABLE model_files(
        name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,
        digest TEXT NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY(name, version, path)
    ) WITHOUT ROWID;
    CREATE TABLE environments(
        name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL,
        spec_hash TEXT NOT NULL, created_utc REAL NOT NULL,
        PRIMARY KEY(name, version)
    ) WITHOUT ROWID;
    CREATE TABLE run_snapshots(
        run_id TEXT NOT NULL, snapshot_id TEXT NOT NULL, created_utc REAL NOT NULL,
        PRIMARY KEY(run_id, snapshot_id)
    ) WITHOUT ROWID;
    CREATE TABLE compute_targets(
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL,
        created_utc REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 1 -> 2: where a supervisor finds a launched run again (targets' describe()).
    """
    ALTER TABLE runs ADD COLUMN handle TEXT;
    """,
    # 2 -> 3: how far a remote run's journal has been replayed (runner.journal).
    """
    CREATE TABLE sync_offsets(
        run_id TEXT NOT NULL, stream TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY(run_id, stream)
    ) WITHOUT ROWID;
    """,
    # 3 -> 4: who supervises a submitted run (runner.lifecycle claims), and which process
    # owns an interactive run (so that its end without complete() is noticed).
    """
    ALTER TABLE runs ADD COLUMN supervisor TEXT;
    ALTER TABLE runs ADD COLUMN owner TEXT;
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: sqlite3.Connection, db_path: str) -> None:
    """Bring the database on ``conn`` to SCHEMA_VERSION (one transaction); StoreError if
    it is newer than this runner understands."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"workspace database {db_path} has schema {version}, newer than this "
            f"runner understands ({SCHEMA_VERSION}); upgrade runner"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


#: Columns of ``runs`` in the order ``RunRow`` takes them.
RUN_COLUMNS = (
    "id, experiment_id, number, parent_id, root_id, type, status, status_details, "
    "display_name, description, target, created_utc, start_utc, end_utc, heartbeat_utc, "
    "submitted_by, definition, error, child_count"
)


class RunRow:
    """One row of ``runs`` plus the experiment's name; a plain value, read-only by habit."""

    __slots__ = (
        "child_count",
        "created_utc",
        "definition",
        "description",
        "display_name",
        "end_utc",
        "error",
        "experiment_id",
        "experiment_name",
        "heartbeat_utc",
        "id",
        "number",
        "parent_id",
        "root_id",
        "start_utc",
        "status",
        "status_details",
        "submitted_by",
        "target",
        "type",
    )

    def __init__(self, row: Sequence[Any], experiment_name: str) -> None:
        (
            self.id,
            self.experiment_id,
            self.number,
            self.parent_id,
            self.root_id,
            self.type,
            self.status,
            self.status_details,
            self.display_name,
            self.description,
            self.target,
            self.created_utc,
            self.start_utc,
            self.end_utc,
            self.heartbeat_utc,
            self.submitted_by,
            self.definition,
            self.error,
            self.child_count,
        ) = row
        self.experiment_name = experiment_name

    @property
    def run_id(self) -> str:
        """The run's id (azureml's RunDto spelling, for ``Run.add_type_provider`` factories)."""
        return str(self.id)


class NewRun:
    """What ``Store.create_runs`` needs to create one run."""

    __slots__ = (
        "definition",
        "display_name",
        "id",
        "owner",
        "properties",
        "snapshot_id",
        "status",
        "tags",
        "target",
        "type",
    )

    def __init__(
        self,
        *,
        id: str | None = None,
        type: str,
        status: str,
        target: str,
        display_name: str | None = None,
        definition: JSONDict | None = None,
        tags: dict[str, str | None] | None = None,
        owner: str | None = None,
        properties: dict[str, str | None] | None = None,
        snapshot_id: str | None = None,
    ) -> None:
        self.id = id
        self.owner = owner  #: the process that owns an interactive run (runner.lifecycle)
        #: recorded in the same transaction as the run: a submitted run is whole or absent
        self.properties = properties or {}
        self.snapshot_id = snapshot_id
        self.type = type
        self.status = status
        self.target = target
        self.display_name = display_name
        self.definition = definition
        self.tags = tags or {}


def prefixed(alias: str) -> str:
    """RUN_COLUMNS with each column prefixed by the table alias (``r.id, r.experiment_id, ...``)."""
    return ", ".join(f"{alias}.{c.strip()}" for c in RUN_COLUMNS.split(","))
