"""What every part of ``Run`` shares: the run types, the attributes a Run object keeps,
and the few reads the status, metrics, files and tags parts all use.

``Run`` (runner.run) is put together from mixins, one module per responsibility:
run_status (status, details, waiting, the end), run_metrics (``log*``, ``get_metrics``),
run_files (uploads, downloads, snapshots, ``clean``) and run_tags (tags, properties).
Each derives from ``_RunBase`` here, so mypy knows the attributes they use.
Standard library only, like the in-run client it belongs to.
"""

from __future__ import annotations

import datetime as _dt
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import NotFoundError
from runner.status import ACTIVE_VALUES, TERMINAL_VALUES

if TYPE_CHECKING:
    from runner.experiment import Experiment
    from runner.store import RunRow, Store
    from runner.workspace import Workspace

#: Run types (``run.type``), as azureml names them.
RUN_TYPE_SCRIPT = "azureml.scriptrun"
RUN_TYPE_INTERACTIVE = "azureml.interactive"
RUN_TYPE_CHILD = "azureml.childrun"

_TERMINAL_VALUES = frozenset(TERMINAL_VALUES)
_ACTIVE_VALUES = frozenset(ACTIVE_VALUES)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_name() -> str:
    """Who submits or starts a run here (``submittedBy``): the login name, or 'unknown'."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without /etc/passwd entry
        return "unknown"


class _RunBase:
    """The state a Run object keeps (set by ``Run.__init__``) and reads its parts share."""

    _experiment: Experiment
    _workspace: Workspace
    _store: Store
    _row: RunRow
    _id: str
    _outputs: str | None

    if TYPE_CHECKING:
        # Defined by other parts of Run (run_status, run_tags) and used across them.
        def get_status(self) -> str: ...

        def get_properties(self) -> dict[str, str | None]: ...

    def _refresh(self) -> RunRow:
        row = self._store.get_run(self._id)
        if row is None:
            raise NotFoundError(f"run {self._id} was removed from the workspace")
        self._row = row
        return row

    def _run_dir(self) -> Path:
        return self._workspace.run_dir(self._id)

    def _log_files(self) -> dict[str, str]:
        """Log name -> local path: live files of a running run, stored ones afterwards."""
        found: dict[str, str] = {}
        for name, digest, _ in self._store.list_files(self._id):
            if name.startswith(("logs/", "azureml-logs/")):
                found[name] = str(self._workspace.blobs.path_of(digest))
        live = self._run_dir() / "logs"
        if live.is_dir():
            for p in sorted(live.rglob("*")):
                if p.is_file():
                    found.setdefault("azureml-logs/" + p.relative_to(live).as_posix(), str(p))
        return found
