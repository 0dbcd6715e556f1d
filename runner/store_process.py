"""What one process shares among its Stores: the one Store per database file, the
background metric writer, and the hooks that run at exit and around ``os.fork()``.

- ``Store.open`` gives each process one Store per database file (``one_store``); a file
  deleted and made again at the same path is another database, and gets a new Store.
- One daemon thread per Store drains its metric buffers every FLUSH_INTERVAL_S.
- At interpreter exit every buffered metric is made durable; in a submitted run's main
  process metrics that cannot be stored make the process exit with code 1.
- No connection crosses a fork: before ``os.fork()`` every store closes its connection
  (under its lock, so no transaction is in flight); a forked child drops what the parent
  had buffered and restarts its writer. multiprocessing's forked workers, which leave
  with ``os._exit``, flush through its after-fork hook.

Part of the in-run client: standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.store import Store
    from runner.store_metrics import _StoreMetrics

#: How often the background writer makes buffered metrics durable and visible.
FLUSH_INTERVAL_S = 0.2

#: (resolved database path, pid) -> the process's Store of that file (``one_store``).
_STORES: dict[tuple[str, int], Store] = {}
#: Guards _STORES and starting writers; made anew in a forked child (see _after_fork).
_STORES_LOCK = threading.Lock()
#: Every Store of the process, so that a forked child can reset them (see _after_fork).
_ALL_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a file, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def one_store(path: str, make: Callable[[str], Store]) -> Store:
    """The process's one Store for the database file at the resolved ``path``; ``make``
    creates it when there is none yet (or the one there was closed or is stale)."""
    key = (path, os.getpid())
    stale: Store | None = None
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is not None and not store._closed and store.file_id != file_identity(path):
            # The file was deleted (the workspace folder removed and made again, or
            # the database restored from a backup): writing on would go into the
            # unlinked file and be lost. Close it, so that its users hear of it.
            stale, store = store, None
        if store is None or store._closed:
            store = make(path)
            _STORES[key] = store
    if stale is not None:
        with contextlib.suppress(sqlite3.Error, RunnerError, OSError):
            stale.close()
    return store


def track(store: Store) -> None:
    """Count ``store`` among the process's stores (flushed at exit, reset after a fork)."""
    _ALL_STORES.add(store)


def start_writer(store: _StoreMetrics) -> None:
    """Start the background metric writer of ``store``, unless one is alive."""
    with _STORES_LOCK:
        if store._writer is not None and store._writer.is_alive():
            return
        thread = threading.Thread(
            target=_writer_loop, args=(weakref.ref(store),), name="runner-metrics", daemon=True
        )
        store._writer = thread
        thread.start()


def _writer_loop(ref: weakref.ReferenceType[_StoreMetrics]) -> None:
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
