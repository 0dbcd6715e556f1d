"""The run history: one SQLite database per workspace, shared by many processes.

Why it looks like this:
- WAL mode with ``synchronous=NORMAL``: readers never block the writer and a commit does
  not wait for fsync; a process killed mid-write loses at most its open transaction,
  never what it committed, and the database always opens cleanly afterwards.
- One connection per process and database (``Store.open``), guarded by a lock, so the
  background metric writer and the caller's thread share it safely.
- No connection crosses a fork. SQLite keeps per-process lock state beside each open
  database file; a forked child inherits that state but not the locks, so even a *new*
  connection in the child would believe it holds locks it does not, and once every other
  process closed the database SQLite deleted the WAL under it (its writes were lost).
  Before ``os.fork()`` every store closes its connection (under its lock, so no
  transaction is in flight); parent and child each open a fresh one on next use.
- Metrics are written in chunks: ``Run.log`` appends to an in-memory queue, and a
  background thread encodes each run's new values of a metric as one packed row
  (``array`` bytes for numbers, JSON otherwise). That keeps ``log`` free of database
  round trips and makes reading a million points a few ``frombytes`` calls.
- The schema is versioned with ``PRAGMA user_version``; ``_MIGRATIONS[i]`` upgrades a
  database from version i to i + 1 inside one transaction.
- Faults (a full disk, a read-only or failing one, any SQLite error) leave ``write``,
  ``query`` and ``flush`` as a StoreError that says what could not be done (made by
  ``runner.errors.store_fault``), never as a raw sqlite3 error; the failed transaction
  is rolled back, so what was committed before stays intact. Metric values whose write
  failed go back into the buffers: the next flush (the caller's, or the writer's) tries
  again and raises if it fails too.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
import weakref
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.artifacts import folders_of, name_clash
from runner.errors import ConflictError, RunnerError, StoreError, store_fault

JSONDict = dict[str, Any]
Scalar = Any  # int | float | bool | str, checked by runner.metrics

#: How often the background writer makes buffered metrics durable and visible.
FLUSH_INTERVAL_S = 0.2
#: Set in a remote run's processes (by runner.remote_agent): every change to the store is
#: also appended to this file as one JSON line, which the supervisor on the submitting
#: machine replays into its own store (runner.journal).
JOURNAL_ENV = "RUNNER_JOURNAL"

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


# Metric value encodings: one packed chunk per (run, metric, flush).
_ENC_F64 = "f8"
_ENC_I64 = "i8"
_ENC_BOOL = "b1"
_ENC_JSON = "json"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _encode_values(values: list[Any]) -> tuple[str, bytes]:
    kinds = set(map(type, values))
    if kinds == {float}:
        return _ENC_F64, array("d", values).tobytes()
    if kinds == {int} and min(values) >= _I64_MIN and max(values) <= _I64_MAX:
        return _ENC_I64, array("q", values).tobytes()
    if kinds == {bool}:
        return _ENC_BOOL, bytes(values)
    return _ENC_JSON, json.dumps(values, separators=(",", ":")).encode()


def _decode_values(enc: str, data: bytes) -> list[Any]:
    if enc == _ENC_F64:
        a = array("d")
        a.frombytes(data)
        return a.tolist()
    if enc == _ENC_I64:
        ints = array("q")
        ints.frombytes(data)
        return ints.tolist()
    if enc == _ENC_BOOL:
        return [b != 0 for b in data]
    result: list[Any] = json.loads(data)
    return result


class MetricSeries:
    """The stored values of one metric of one run, in logging order."""

    __slots__ = ("description", "kind", "steps", "values")

    def __init__(self, kind: str, description: str) -> None:
        self.kind = kind
        self.description = description
        self.values: list[Any] = []
        self.steps: list[int] | None = None


_STORES: dict[tuple[str, int], Store] = {}
_STORES_LOCK = threading.Lock()
#: Every Store of the process, so that a forked child can reset them (see _after_fork).
_ALL_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


class Store:
    """The SQLite run history of one workspace (or an in-memory one for offline runs)."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = self._connect()
        # Buffered metric writes. Scalars: one (values, steps) pair of lists per (run,
        # metric), appended to by Run.log without locks; the writer takes a prefix with
        # ``lst[:n]`` and ``del lst[:n]`` (each atomic under the GIL, and appends only
        # touch the end). Other kinds: one queue of (run_id, name, value).
        self.scalar_buffers: dict[tuple[str, str], tuple[list[Any], list[int] | None]] = {}
        self.other_queue: deque[tuple[str, str, Any]] = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closed = False
        _ALL_STORES.add(self)
        self.last_rowid: int | None = None
        self.journal = os.environ.get(JOURNAL_ENV) if db_path != ":memory:" else None
        #: (device, inode) of the file this store opened: a file deleted and made again
        #: at the same path is another database (see ``open``).
        self.file_id = _file_id(db_path) if db_path != ":memory:" else None

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: Path | str) -> Store:
        """The process's one Store for this database file (created with its schema)."""
        key = (str(Path(db_path).resolve()), os.getpid())
        stale: Store | None = None
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is not None and not store._closed and store.file_id != _file_id(key[0]):
                # The file was deleted (the workspace folder removed and made again, or
                # the database restored from a backup): writing on would go into the
                # unlinked file and be lost. Close it, so that its users hear of it.
                stale, store = store, None
            if store is None or store._closed:
                store = cls(key[0])
                _STORES[key] = store
        if stale is not None:
            with contextlib.suppress(sqlite3.Error, RunnerError, OSError):
                stale.close()
        return store

    @classmethod
    def memory(cls) -> Store:
        """A private in-memory store (offline runs)."""
        return cls(":memory:")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            if self.db_path != ":memory:":
                mode = _enable_wal(conn)
                if str(mode).lower() != "wal":
                    raise StoreError(
                        f"workspace database {self.db_path} cannot use WAL mode ({mode}); "
                        "put the workspace on a local file system"
                    )
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the workspace database {self.db_path}: {exc}",
                hint="check the path and its permissions; a corrupt file can be moved aside",
            ) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"workspace database {self.db_path} has schema {version}, newer than this "
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

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, opened on first use after a fork (see the module docstring)."""
        if self._pid != os.getpid():
            # A fork that ran no fork handlers (a C extension calling fork()): the
            # parent's connection is not ours to use or close.
            self._pid = os.getpid()
            self._conn = None
        conn = self._conn
        if conn is None:
            if self._closed:
                raise StoreError(f"the workspace database {self.db_path} was closed")
            conn = self._conn = self._connect()
        return conn

    def _close_for_fork(self) -> None:
        """Before a fork (lock held): close the connection; it is reopened on next use."""
        conn = self._conn
        if conn is None or conn.in_transaction:  # forking inside our own transaction: keep it
            return
        self._conn = None
        try:
            conn.close()
        except sqlite3.Error as exc:  # never stop a fork; the child opens its own
            sys.stderr.write(f"runner: closing the database before fork: {exc}\n")

    def _forget_parent_state(self) -> None:
        """In a forked child: drop what the parent had buffered (the parent writes it).

        The buffer lists are emptied in place, not replaced: Run objects made before the
        fork keep references to them, and what the child logs through those must reach
        the database. Locks and the writer thread do not survive a fork.
        """
        self._lock = threading.RLock()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer = None
        for vals, steps in list(self.scalar_buffers.values()):
            del vals[:]
            if steps is not None:
                del steps[:]
        self.other_queue.clear()

    @property
    def where(self) -> str:
        """The workspace folder, as errors name it."""
        if self.db_path == ":memory:":
            return "(in memory)"
        return str(Path(self.db_path).parent)

    @contextmanager
    def write(self, doing: str = "update the run history") -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: takes the write lock up front).

        ``doing`` says what the transaction is for, in the StoreError raised when it
        fails (``"record metrics for run R"``).
        """
        with self._lock:
            try:
                conn = self.conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back already
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error as exc:
                            sys.stderr.write(f"runner: rolling back failed: {exc}\n")
                    raise
            except (sqlite3.Error, OSError) as exc:
                if isinstance(exc, sqlite3.DatabaseError) and _is_damage(exc):
                    raise self.damaged(exc) from exc
                error = store_fault(exc, self.where, doing)
                if error is None:
                    raise
                raise error from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a read query and return all rows."""
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                if isinstance(exc, sqlite3.DatabaseError) and _is_damage(exc):
                    raise self.damaged(exc) from exc
                error = store_fault(exc, self.where, "read the run history")
                if error is None:
                    raise
                raise error from exc

    def damaged(self, exc: sqlite3.DatabaseError) -> StoreError:
        """The error for a database whose pages SQLite found damaged."""
        return StoreError(
            f"the workspace database {self.db_path} is damaged: {exc}",
            hint="restore runner.db from a backup; 'runner workspace check' shows what is "
            "damaged (and 'sqlite3 runner.db .recover' may save what is left)",
        )

    def _journal(self, event: JSONDict) -> None:
        """Append one change to the journal, if this process keeps one.

        Called inside the write transaction, so the journal's order is the commit order
        of every process sharing the database (the write lock serializes them). One
        ``write`` of one line on an O_APPEND file: lines of several processes never mix.
        """
        if self.journal is None:
            return
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Flush buffered metrics and close the connection; idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._wake.set()
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

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
    ) -> list[str]:
        """Create runs in one transaction; returns their ids in order.

        Runs without an id get ``{id_prefix}{n}``-style ids: children are named
        ``{parent}_{k}`` with k counting the parent's children, top-level runs
        ``{experiment}_{unix time}_{random}``.
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
                try:
                    conn.execute(
                        f"INSERT INTO runs({RUN_COLUMNS}) VALUES "
                        "(?,?,?,?,?,?,?,NULL,?,NULL,?,?,?,NULL,?,?,?,NULL,0)",
                        (
                            run_id,
                            experiment_id,
                            number,
                            parent_id,
                            root_id or run_id,
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
                        "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) "
                        "VALUES (?,?,?)",
                        (run_id, spec.snapshot_id, now),
                    )
                if spec.tags:
                    conn.executemany(
                        "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES (?,?,?)",
                        [(run_id, k, v) for k, v in spec.tags.items()],
                    )
                ids.append(run_id)
                number += 1
                if self.journal is not None:
                    self._journal(
                        {
                            "e": "run",
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
                        }
                    )
                    if spec.properties:
                        self._journal({"e": "props", "id": run_id, "props": spec.properties})
            conn.execute(
                "UPDATE experiments SET next_number = ? WHERE id = ?", (number, experiment_id)
            )
            if parent_id is not None:
                conn.execute(
                    "UPDATE runs SET child_count = ? WHERE id = ?", (child_index, parent_id)
                )
        return ids

    def get_run(self, run_id: str) -> RunRow | None:
        """The run's row, or None."""
        rows = self.query(
            f"SELECT {_prefixed('r')}, e.name FROM runs r JOIN experiments e "
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
        if experiment_id is not None:
            where.append(f"{p}r.experiment_id = ?")
            params.append(experiment_id)
        if parent_id is not None:
            where.append(f"{p}r.parent_id = ?")
            params.append(parent_id)
        if top_level_only:
            where.append(f"{p}r.parent_id IS NULL")
        if descendants_of is not None:
            where.append(
                "r.id IN (WITH RECURSIVE d(id) AS (SELECT id FROM runs WHERE parent_id = ? "
                "UNION ALL SELECT runs.id FROM runs JOIN d ON runs.parent_id = d.id) "
                "SELECT id FROM d)"
            )
            params.append(descendants_of)
        if run_type is not None:
            where.append(f"{p}r.type = ?")
            params.append(run_type)
        if status is not None:
            where.append(f"{p}r.status = ?")
            params.append(status)
        if target is not None:
            where.append(f"{p}r.target = ?")
            params.append(target)
        for table, pairs, keys in (
            ("tags", tags or {}, tag_keys),
            ("properties", properties or {}, property_keys),
        ):
            for key, value in pairs.items():
                if value is None:
                    where.append(
                        f"r.id IN (SELECT run_id FROM {table} WHERE key = ? AND value IS NULL)"
                    )
                    params.append(key)
                else:
                    where.append(
                        f"r.id IN (SELECT run_id FROM {table} WHERE key = ? AND value = ?)"
                    )
                    params.extend((key, value))
            for key in keys:
                where.append(f"r.id IN (SELECT run_id FROM {table} WHERE key = ?)")
                params.append(key)
        if before_rowid is not None:
            where.append("r.rowid < ?")
            params.append(before_rowid)
        sql = (
            f"SELECT {_prefixed('r')}, e.name, r.rowid FROM runs r JOIN experiments e "
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

    def metric_meta(
        self, run_id: str, name: str, kind: str, has_step: bool | None, description: str
    ) -> tuple[str, bool | None]:
        """Register a metric's kind and step mode on first use; returns the stored ones.

        The first process to register a metric decides its kind and whether it has steps;
        everyone else is checked against that.
        """
        with self.write(f"register metric {name!r} of run {run_id}") as conn:
            before = conn.total_changes
            conn.execute(
                "INSERT OR IGNORE INTO metric_meta(run_id, name, kind, has_step, description) "
                "VALUES (?,?,?,?,?)",
                (run_id, name, kind, None if has_step is None else int(has_step), description),
            )
            row = conn.execute(
                "SELECT kind, has_step FROM metric_meta WHERE run_id = ? AND name = ?",
                (run_id, name),
            ).fetchone()
            if conn.total_changes != before:
                self._journal(
                    {
                        "e": "meta",
                        "id": run_id,
                        "name": name,
                        "kind": kind,
                        "has_step": has_step,
                        "description": description,
                    }
                )
        return str(row[0]), None if row[1] is None else bool(row[1])

    def ensure_writer(self) -> None:
        """Start the background metric writer of this process, once."""
        if self._writer is not None and self._writer.is_alive():
            return
        with _STORES_LOCK:
            if self._writer is not None and self._writer.is_alive():
                return
            thread = threading.Thread(
                target=_writer_loop, args=(weakref.ref(self),), name="runner-metrics", daemon=True
            )
            self._writer = thread
            thread.start()

    def scalar_buffer(
        self, run_id: str, name: str, has_step: bool
    ) -> tuple[list[Any], list[int] | None]:
        """The process's (values, steps) buffer for one metric of one run."""
        key = (run_id, name)
        buf = self.scalar_buffers.get(key)
        if buf is None:
            with self._lock:
                buf = self.scalar_buffers.setdefault(key, ([], [] if has_step else None))
        return buf

    def has_pending(self) -> bool:
        """Whether any logged value is not yet in the database."""
        if self.other_queue:
            return True
        return any(vals for vals, _ in list(self.scalar_buffers.values()))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Make every metric logged before this call durable; False if it timed out.

        It first waits for a drain the background writer has in flight (values it took
        out of the buffers are stored only once it commits), then drains what is left,
        once: values other threads log meanwhile are the writer's, so a thread that
        keeps logging cannot keep flush() (or get_metrics()) going.
        """
        wait = -1.0 if timeout_s is None else max(0.0, timeout_s)
        if not self._drain_lock.acquire(timeout=wait):
            return False
        try:
            self._drain()
        finally:
            self._drain_lock.release()
        return True

    def _drain(self) -> None:
        """Move what the buffers hold now into the database, one chunk per (run, metric)."""
        now = time.time()
        rows = []
        taken: list[tuple[list[Any], list[int] | None, list[Any], list[int] | None]] = []
        for (run_id, name), (vals, steps) in list(self.scalar_buffers.items()):
            n = len(vals) if steps is None else min(len(vals), len(steps))
            if not n:
                continue
            chunk = vals[:n]
            del vals[:n]
            schunk: list[int] | None = None
            if steps is not None:
                schunk = steps[:n]
                del steps[:n]
            taken.append((vals, steps, chunk, schunk))
            enc, data = _encode_values(chunk)
            sdata = None if schunk is None else array("q", schunk).tobytes()
            rows.append((run_id, name, enc, data, sdata, n, now))
        oq = self.other_queue
        others: dict[tuple[str, str], list[Any]] = {}
        popped = []
        for _ in range(len(oq)):
            item = oq.popleft()
            popped.append(item)
            others.setdefault((item[0], item[1]), []).append(item[2])
        for (run_id, name), values in others.items():
            data = json.dumps(values, separators=(",", ":")).encode()
            rows.append((run_id, name, _ENC_JSON, data, None, len(values), now))
        if not rows:
            return
        runs = sorted({r[0] for r in rows})
        doing = f"record metrics for run {', '.join(runs[:3])}" + (" and more" if runs[3:] else "")
        try:
            with self.write(doing) as conn:
                conn.executemany(
                    "INSERT INTO metrics(run_id, name, enc, data, steps, count, time_utc) "
                    "VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
                if self.journal is not None:
                    self._journal({"e": "metrics", "rows": [_b64_row(r) for r in rows]})
        except BaseException:
            # Never lose values to a passing error: put them back in front for the next
            # try (the caller's flush raises; the writer says so once and tries again).
            for vals, steps, chunk, schunk in taken:
                vals[0:0] = chunk
                if steps is not None and schunk is not None:
                    steps[0:0] = schunk
            oq.extendleft(reversed(popped))
            raise

    def read_metrics(self, run_id: str, name: str | None = None) -> dict[str, MetricSeries]:
        """Every metric of a run (or one), with values in logging order."""
        meta_sql = "SELECT name, kind, description FROM metric_meta WHERE run_id = ?"
        data_sql = "SELECT name, enc, data, steps FROM metrics WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if name is not None:
            meta_sql += " AND name = ?"
            data_sql += " AND name = ?"
            params = (run_id, name)
        with self._lock:
            meta = self.query(meta_sql, params)
            chunks = self.query(data_sql + " ORDER BY name, id", params)
        series = {m_name: MetricSeries(kind, desc or "") for m_name, kind, desc in meta}
        for m_name, enc, data, steps in chunks:
            s = series.get(m_name)
            if s is None:  # chunk written before its meta row became visible
                s = series[m_name] = MetricSeries("scalar", "")
            s.values.extend(_decode_values(enc, data))
            if steps is not None:
                a = array("q")
                a.frombytes(steps)
                if s.steps is None:
                    s.steps = []
                s.steps.extend(a.tolist())
        return {k: v for k, v in series.items() if v.values or v.kind != "scalar"}

    def metric_times(self, run_id: str) -> dict[str, list[float]]:
        """When each value of each metric of a run was stored: name -> one UTC time per value.

        Values are stored in chunks (one per flush), so values of one chunk share a time.
        """
        with self._lock:
            rows = self.query(
                "SELECT name, count, time_utc FROM metrics WHERE run_id = ? ORDER BY name, id",
                (run_id,),
            )
        times: dict[str, list[float]] = {}
        for name, count, time_utc in rows:
            times.setdefault(name, []).extend([time_utc] * count)
        return times

    # -- files -----------------------------------------------------------------------

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
            self._journal({"e": "files", "id": run_id, "entries": [list(e) for e in entries]})

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
                {"e": "files", "id": run_id, "entries": [list(e) for e in entries], "replace": True}
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


def _file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of a file, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite reported damaged pages or a file that is not a database.

    Those are the plain DatabaseError (SQLITE_CORRUPT, SQLITE_NOTADB); locks, full disks
    and I/O errors are OperationalError, constraints IntegrityError.
    """
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return str(name).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError


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


def _enable_wal(conn: sqlite3.Connection, timeout_s: float = 60.0) -> str:
    """Switch the database to WAL and return the journal mode it is in.

    While another process is switching a new database to WAL (or migrating it), SQLite
    answers "database is locked" at once, without waiting on its busy handler, so
    processes that open a fresh workspace together retry here.
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.05)


def _b64_row(row: tuple[Any, ...]) -> list[Any]:
    """A metrics row as JSON: the packed value and step bytes in base64."""
    run_id, name, enc, data, steps, count, when = row
    return [
        run_id,
        name,
        enc,
        base64.b64encode(data).decode(),
        None if steps is None else base64.b64encode(steps).decode(),
        count,
        when,
    ]


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in RUN_COLUMNS.split(","))


def _writer_loop(ref: weakref.ReferenceType[Store]) -> None:
    """Drain a store's metric queues every FLUSH_INTERVAL_S until it closes."""
    said: str | None = None
    while True:
        store = ref()
        if store is None or store._closed:
            return
        wake = store._wake
        if store.has_pending():
            try:
                store.flush()
                said = None
            except Exception as exc:  # keep the writer alive; the values were re-queued
                # Said once per kind of failure: the values wait in memory, and a flush()
                # or complete() of the caller raises while it lasts.
                if str(exc) != said:
                    said = str(exc)
                    sys.stderr.write(f"runner: metrics wait in memory, writing failed: {exc}\n")
        del store
        wake.wait(FLUSH_INTERVAL_S)
        wake.clear()


def _flush_all_at_exit(main: bool = False) -> None:
    """Make every buffered metric durable when the interpreter exits normally.

    In the main process of a submitted run (``main``), metrics that cannot be stored
    make the process exit with code 1, after saying why on stderr: the run then ends
    Failed with that reason in its log tail instead of Completed without its metrics.
    """
    lost = False
    for store in list(_ALL_STORES):  # in a forked child these hold the child's values only
        if not store._closed:
            try:
                store.flush()
            except Exception as exc:
                lost = True
                sys.stderr.write(f"runner: metrics logged by this process were not stored: {exc}\n")
    if lost and main and os.environ.get("RUNNER_RUN_ID"):
        sys.stderr.flush()
        os._exit(1)


atexit.register(_flush_all_at_exit, True)


#: The stores whose locks the forking thread holds between the fork handlers.
_FORK_HELD: list[Store] = []


class _MultiprocessingHook:
    """What multiprocessing calls in each of its forked workers (register_after_fork)."""


_MP_HOOK = _MultiprocessingHook()
_mp_hooked = False


def _hook_multiprocessing() -> None:
    """Have every multiprocessing worker flush what it logged when it ends.

    Its forked workers leave with os._exit (atexit never runs), after multiprocessing's
    own exit function, which runs its finalizers. A finalizer registered in a fork
    handler would be dropped (each worker clears the registry at its start), so it is
    registered by multiprocessing's after-fork hook instead.
    """
    global _mp_hooked
    util = sys.modules.get("multiprocessing.util")
    if _mp_hooked or util is None:
        return
    util.register_after_fork(_MP_HOOK, _in_multiprocessing_worker)
    _mp_hooked = True


def _in_multiprocessing_worker(_hook: object) -> None:
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _flush_all_at_exit, exitpriority=-100)


def _before_fork() -> None:
    """Close every store's connection (each under its lock, so no transaction is open)."""
    _hook_multiprocessing()
    stores = sorted((s for s in list(_ALL_STORES) if s.db_path != ":memory:"), key=id)
    for store in stores:
        store._lock.acquire()
        _FORK_HELD.append(store)
        if store._pid == os.getpid():
            store._close_for_fork()


def _after_fork_in_parent() -> None:
    while _FORK_HELD:
        _FORK_HELD.pop()._lock.release()


def _after_fork() -> None:
    """Reset every store in a forked child, before the child can log anything."""
    global _STORES_LOCK
    _STORES_LOCK = threading.Lock()  # another thread may have held it at the fork
    _FORK_HELD.clear()
    for store in list(_ALL_STORES):
        had_writer = store._writer is not None
        store._forget_parent_state()
        store._pid = os.getpid()
        if had_writer and not store._closed:
            # What the child logs is written while it lives, as in the parent (and when
            # it ends: at exit, or by _hook_multiprocessing in multiprocessing's workers).
            store.ensure_writer()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork
    )


def loads_or_none(text: str | None) -> Any:
    """JSON text to a value; None stays None."""
    return None if text is None else json.loads(text)
