"""``Run.get_context()``: the live run inside a submitted script, else an offline run.

A submitted run's process gets its identity in these environment variables (all of
runner's run-time variables are named here):

- ``RUNNER_RUN_ID``: the run's id.
- ``RUNNER_WORKSPACE``: the workspace folder (also what ``Workspace.from_config()``
  falls back to inside the run).
- ``RUNNER_EXPERIMENT``: the experiment's name (informational).

Outside a run, the offline run keeps what is logged in an in-memory store (so
``get_metrics()``, ``get_tags()`` and ``get_children()`` answer within the process) and
prints each call, so a training script can be tried with plain ``python train.py``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.artifacts import BlobStore
from runner.errors import NotFoundError, RunnerError
from runner.experiment import Experiment
from runner.run import Run
from runner.store import Store
from runner.workspace import Workspace

RUN_ID_ENV = "RUNNER_RUN_ID"
WORKSPACE_ENV = "RUNNER_WORKSPACE"
EXPERIMENT_ENV = "RUNNER_EXPERIMENT"

_lock = threading.Lock()
_context: dict[str, Run] = {}


def get_context(allow_offline: bool = True) -> Run:
    """The current run; see the module docstring."""
    with _lock:
        run_id = os.environ.get(RUN_ID_ENV)
        key = run_id or "<offline>"
        cached = _context.get(key)
        if cached is not None and (run_id or allow_offline):
            return cached
        if run_id:
            ws_path = os.environ.get(WORKSPACE_ENV)
            if not ws_path:
                raise RunnerError(
                    f"{RUN_ID_ENV} is set but {WORKSPACE_ENV} is not; runner sets both when it "
                    "launches a run"
                )
            # A plain Run, as azureml's submitted-run context is not a ScriptRun.
            run: Run = Run.get(Workspace(Path(ws_path)), run_id, _rehydrate_runs=False)  # a path
            _install_sigterm_flush(run)
        elif allow_offline:
            run = _start_offline()
        else:
            raise RunnerError(
                "Run.get_context(allow_offline=False) outside a submitted run; submit the "
                "script with exp.submit(ScriptRunConfig(...)) or allow the offline run"
            )
        _context[key] = run
        return run


def _install_sigterm_flush(run: Run) -> None:
    """On SIGTERM (cancel), make what the script logged durable, then die as asked."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return  # the script handles SIGTERM itself; the atexit flush still runs

    def on_term(signum: int, frame: Any) -> None:
        try:
            run.flush(timeout_seconds=5)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)


class OfflineRun(Run):
    """A run that lives in this process only; every recording call is also printed."""

    def get_secret(self, name: str) -> str:
        """Offline, secrets come from environment variables of the same name (as in v1)."""
        value = os.environ.get(name)
        if value is None:
            raise NotFoundError(
                f"offline run: no environment variable {name!r} to serve get_secret({name!r}); "
                "set it, or submit the script so the workspace keyvault is used"
            )
        return value

    def get_secrets(self, secrets: list[str]) -> dict[str, str | None]:
        """Offline, secrets come from environment variables."""
        return {name: os.environ.get(name) for name in secrets}


def _echoing(name: str) -> Callable[..., Any]:
    base = getattr(Run, name)

    def method(self: Run, *args: Any, **kwargs: Any) -> Any:
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        if len(shown) > 300:
            shown = shown[:297] + "..."
        result = base(self, *args, **kwargs)  # a refused call records nothing: print nothing
        print(f"[runner offline run {self.id}] {name}({shown})", file=sys.stdout, flush=True)
        return result

    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in (
    "log",
    "log_list",
    "log_row",
    "log_table",
    "log_image",
    "log_confusion_matrix",
    "log_accuracy_table",
    "log_predictions",
    "log_residuals",
    "tag",
    "set_tags",
    "remove_tags",
    "add_properties",
    "upload_file",
    "upload_files",
    "upload_folder",
    "child_run",
    "create_children",
    "complete",
    "fail",
    "cancel",
    "register_model",
    "take_snapshot",
):
    setattr(OfflineRun, _name, _echoing(_name))


def _start_offline() -> Run:
    tmp = Path(tempfile.mkdtemp(prefix="runner-offline-"))
    atexit.register(shutil.rmtree, tmp, True)
    ws = Workspace.__new__(Workspace)
    ws.path = tmp
    ws.name = "offline"
    ws._store = Store.memory()
    ws._blobs = BlobStore(tmp / "blobs")
    exp = Experiment(ws, "offline")
    run = exp.start_logging(outputs=False)  # a plain `python train.py` gets no ./outputs made
    offline = OfflineRun(exp, run.id)
    print(f"[runner] no submitted run here: using offline run {run.id} (kept in memory)")
    return offline
