"""The connection part of the run history's Store: one connection per process, opened
in WAL mode, that never crosses a fork; write transactions and reads whose faults become
StoreErrors; and the journal a remote run keeps of its changes (see ``runner.store``).

``_StoreConnection`` is the base of Store's other parts (runs, metrics, files): they
reach the database only through ``write``, ``query`` and ``conn`` under ``_lock``.
Part of the in-run client: standard library only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.errors import StoreError, store_fault
from runner.store_schema import JSONDict, migrate


class _StoreConnection:
    """A Store's database connection and transactions (set up by ``Store.__init__``)."""

    db_path: str
    #: the process that opened ``_conn`` (a fork without fork handlers changes it)
    _pid: int
    #: guards the connection: the background metric writer and callers' threads share it
    _lock: threading.RLock
    _conn: sqlite3.Connection | None
    _closed: bool
    #: the journal file of a remote run's processes (JOURNAL_ENV), else None
    journal: str | None

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
            migrate(conn, self.db_path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the workspace database {self.db_path}: {exc}",
                hint="check the path and its permissions; a corrupt file can be moved aside",
            ) from exc
        return conn

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

    def _journal(self, event: JSONDict, blobs: Iterable[str] = ()) -> None:
        """Append one change to the journal, if this process keeps one.

        Called inside the write transaction, so the journal's order is the commit order
        of every process sharing the database (the write lock serializes them). One
        ``write`` of one line on an O_APPEND file: lines of several processes never mix.

        ``blobs``: the contents the change names (SHA-256 digests in this workspace's blob
        store), listed in the event's ``"blobs"``: whoever follows the journal sends them
        to the other side before the line (``remote_agent``), whatever the event's kind.
        """
        if self.journal is None:
            return
        named = sorted(set(blobs))
        if named:
            event = {**event, "blobs": named}
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def journal_change(self, event: JSONDict, blobs: Iterable[str] = ()) -> None:
        """Journal a change that a module outside the store made in its own tables (models,
        snapshots, submitted runs): call it inside that ``write`` transaction. See
        ``_journal``; ``runner.journal`` applies the event on the other side."""
        self._journal(event, blobs)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite reported damaged pages or a file that is not a database.

    Those are the plain DatabaseError (SQLITE_CORRUPT, SQLITE_NOTADB); locks, full disks
    and I/O errors are OperationalError, constraints IntegrityError.
    """
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return str(name).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError


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
