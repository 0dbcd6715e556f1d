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

Store is put together from parts, each in its own module:

- ``store_schema``: the tables, their migrations, RunRow and NewRun;
- ``store_connection``: the connection, transactions, faults, the journal;
- ``store_runs``: experiments, runs, claims, statuses, tags, properties;
- ``store_metrics``: metric kinds, the buffers, draining and reading series;
- ``store_files``: a run's recorded files;
- ``store_process``: one Store per file and process, the writer thread, exit and fork hooks.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

from runner.store_files import _StoreFiles
from runner.store_metrics import MetricSeries, _StoreMetrics
from runner.store_process import _STORES as _STORES
from runner.store_process import FLUSH_INTERVAL_S, file_identity, one_store, track
from runner.store_runs import _StoreRuns
from runner.store_schema import _MIGRATIONS as _MIGRATIONS
from runner.store_schema import RUN_COLUMNS, SCHEMA_VERSION, JSONDict, NewRun, RunRow

__all__ = [
    "FLUSH_INTERVAL_S",
    "JOURNAL_ENV",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "JSONDict",
    "MetricSeries",
    "NewRun",
    "RunRow",
    "Scalar",
    "Store",
    "loads_or_none",
]

Scalar = Any  # int | float | bool | str, checked by runner.metrics

#: Set in a remote run's processes (by runner.remote_agent): every change to the store is
#: also appended to this file as one JSON line, which the supervisor on the submitting
#: machine replays into its own store (runner.journal).
JOURNAL_ENV = "RUNNER_JOURNAL"


class Store(_StoreRuns, _StoreMetrics, _StoreFiles):
    """The SQLite run history of one workspace (or an in-memory one for offline runs)."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._conn = self._connect()
        self.scalar_buffers = {}
        self.other_queue = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer = None
        self._closed = False
        track(self)
        self.last_rowid = None
        self.journal = os.environ.get(JOURNAL_ENV) if db_path != ":memory:" else None
        #: (device, inode) of the file this store opened: a file deleted and made again
        #: at the same path is another database (see ``open``).
        self.file_id = file_identity(db_path) if db_path != ":memory:" else None

    @classmethod
    def open(cls, db_path: Path | str) -> Store:
        """The process's one Store for this database file (created with its schema)."""
        return one_store(str(Path(db_path).resolve()), cls)

    @classmethod
    def memory(cls) -> Store:
        """A private in-memory store (offline runs)."""
        return cls(":memory:")

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


def loads_or_none(text: str | None) -> Any:
    """JSON text to a value; None stays None."""
    return None if text is None else json.loads(text)
