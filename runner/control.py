"""Control of runs from any process: cancel requests.

An interactive run (one without a supervisor) is canceled at once. A supervised run
(submitted with ``exp.submit``) gets CancelRequested in the store plus a ``cancel`` file
in its run folder; its supervisor notices either, stops the process tree and records
Canceled.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from runner import access
from runner.status import ACTIVE_VALUES, RunStatus

if TYPE_CHECKING:
    from runner.workspace import Workspace

_ACTIVE = frozenset(ACTIVE_VALUES)


def request_cancel(ws: Workspace, run_id: str, reason: str = "canceled by user") -> None:
    """Cancel a run and its unfinished descendants (children first, then the run)."""
    store = ws.store
    rows = store.find_runs(descendants_of=run_id)
    me = store.get_run(run_id)
    if me is not None:
        rows.append(me)
    for row in rows:
        if row.status not in _ACTIVE:
            continue
        definition = json.loads(row.definition) if row.definition else {}
        if definition.get("supervised"):
            store.set_status(
                row.id,
                RunStatus.CANCEL_REQUESTED.value,
                allowed_from=_ACTIVE - {RunStatus.CANCEL_REQUESTED.value},
                details=reason,
            )
            if ws.store.journal is not None:
                # A run a script on a host submitted: the request reaches the workspace
                # that launched it through the journal; the host has no daemon to tell.
                continue
            marker = ws.run_dir(row.id) / "cancel"
            access.make_dirs(marker.parent, ws._access)
            access.write_private(marker, reason, ws._access)
            from runner import daemon_client

            daemon_client.notify(ws.path, {"op": "cancel", "run_id": row.id, "reason": reason})
        else:
            store.set_status(
                row.id, RunStatus.CANCELED.value, allowed_from=_ACTIVE, details=reason, end=True
            )
