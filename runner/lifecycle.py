"""How runs live on when the processes around them come and go.

Who holds what:

- A **submitted** run is recorded (status Starting) by the submitting process, which may
  exit at once. The workspace daemon *claims* it (``runs.supervisor``: the daemon's
  process identity, set by compare-and-set, so two daemons can never both own a run),
  then, before starting any process, records that it is launching it (``runs.handle``);
  the run's keeper records that it started the script (``runs/RUN_ID/started``). A
  daemon that finds a run claimed by a process that is gone takes it over: it re-adopts
  what runs, finishes what had ended, and never starts a run a second time.
- An **interactive** run (``start_logging``) belongs to the process that started it
  (``runs.owner``: host, pid and the process's start time, which pid reuse cannot fake).
  When that process is gone and the run was not completed, failed or canceled, the
  next process on the same host that looks at the run records it Failed, with the
  reason. A live but quiet process keeps its run Running.
- Any process that looks at runs (status, details, waits, listings, CLI commands)
  starts a daemon when runs wait for one and none holds the workspace.

Standard library only: ``Run`` (the in-run client) uses it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.failure import error_details
from runner.keeper import start_ticks
from runner.status import ACTIVE_VALUES as ACTIVE
from runner.status import SUPERVISED_VALUES as SUPERVISED

if TYPE_CHECKING:
    from runner.store import RunRow, Store
    from runner.workspace import Workspace

#: Set in the daemon's own process: it never starts a daemon for itself.
IN_DAEMON = False
#: A workspace-wide look happens at most this often per process (a single run's status
#: is always checked).
SWEEP_INTERVAL_S = 2.0
_SCRIPT = "azureml.scriptrun"

_sweeps: dict[str, float] = {}
_sweeps_lock = threading.Lock()


# -- process identity -----------------------------------------------------------------


def _start_ticks(pid: int) -> str | None:
    """The kernel's start time of a live process (/proc/PID/stat field 22), else None.

    ``""`` where there is no /proc (then only the pid is checked).
    """
    if not sys.platform.startswith("linux"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    ticks = start_ticks(pid, live=True)
    return None if ticks is None else str(ticks)


def process_token(pid: int | None = None) -> str:
    """This process (or ``pid``) as ``[host, pid, start ticks]`` in JSON."""
    pid = os.getpid() if pid is None else pid
    return json.dumps([socket.gethostname(), pid, _start_ticks(pid) or ""])


def parse_token(token: str) -> tuple[str, int, str] | None:
    """(host, pid, start ticks) of a token, or None if it is not one."""
    try:
        host, pid, ticks = json.loads(token)
        return str(host), int(pid), str(ticks)
    except (ValueError, TypeError):
        return None


def token_alive(token: str | None) -> bool | None:
    """Whether the process a token names still runs; None when it is on another host."""
    parsed = parse_token(token) if token else None
    if parsed is None:
        return False
    host, pid, ticks = parsed
    if host != socket.gethostname():
        return None
    now = _start_ticks(pid)
    if now is None:
        return False
    return not ticks or not now or now == ticks


# -- noticing what was left behind ------------------------------------------------------


def service_error(message: str, kind: str = "lost") -> dict[str, Any]:
    """A run's error details for a failure of runner's, not of the script."""
    return error_details("ServiceError", message, kind=kind)


def end_if_owner_gone(store: Store, run_id: str, owner: str | None) -> bool:
    """Record Failed for an unfinished interactive run whose process is gone; True if so."""
    if owner is None or token_alive(owner) is not False:
        return False
    parsed = parse_token(owner)
    where = f"pid {parsed[1]} on {parsed[0]}" if parsed else "its process"
    message = (
        f"the process that ran this interactive run ({where}) ended without complete(), "
        "fail() or cancel(): it was killed, it crashed, or its kernel was restarted"
    )
    old = store.set_status(
        run_id,
        "Failed",
        allowed_from=ACTIVE,
        details=message,
        error=service_error(message),
        end=True,
    )
    return old is not None


def ensure_supervised(ws: Workspace) -> bool:
    """Start the workspace's daemon if a submitted run waits for one and none runs.

    If no daemon can be started, submitted runs that no daemon ever claimed end Failed
    with the reason instead of waiting for ever (then True is returned).
    """
    if IN_DAEMON or os.environ.get("RUNNER_JOURNAL"):
        return False  # the daemon itself, or a remote host's private store: not ours
    from runner import daemon_client

    if daemon_client._lock_held(ws.path):
        return False
    try:
        daemon_client.ensure_daemon(ws.path)
    except (RunnerError, OSError) as exc:
        message = f"no runner daemon could be started for this workspace: {exc}"
        marks = ",".join("?" * len(SUPERVISED))
        rows = ws.store.query(
            f"SELECT id FROM runs WHERE status IN ({marks}) AND type = ? "  # noqa: S608
            "AND supervisor IS NULL",
            (*SUPERVISED, _SCRIPT),
        )
        for (run_id,) in rows:
            ws.store.set_status(
                run_id,
                "Failed",
                allowed_from={"Starting"},
                details=message,
                error=service_error(message),
                end=True,
            )
        return bool(rows)
    return False


def check_run(ws: Workspace, row: RunRow) -> bool:
    """Notice what one run's holders left; True if its row may have changed."""
    if row.status not in ACTIVE:
        return False
    if row.type == _SCRIPT:
        return row.status in SUPERVISED and ensure_supervised(ws)
    owner = ws.store.query("SELECT owner FROM runs WHERE id = ?", (row.id,))
    return bool(owner) and end_if_owner_gone(ws.store, row.id, owner[0][0])


def sweep(ws: Workspace, force: bool = False) -> None:
    """Look at every unfinished run of a workspace (at most every SWEEP_INTERVAL_S)."""
    key = str(ws.path)
    now = time.monotonic()
    with _sweeps_lock:
        if not force and now - _sweeps.get(key, -SWEEP_INTERVAL_S) < SWEEP_INTERVAL_S:
            return
        _sweeps[key] = now
    store = ws.store
    marks = ",".join("?" * len(ACTIVE))
    rows = store.query(
        f"SELECT id, type, status, owner FROM runs WHERE status IN ({marks})",  # noqa: S608
        ACTIVE,
    )
    waiting = False
    for run_id, run_type, status, owner in rows:
        if run_type == _SCRIPT:
            waiting = waiting or status in SUPERVISED
        elif owner is not None:
            end_if_owner_gone(store, run_id, owner)
    if waiting:
        ensure_supervised(ws)
