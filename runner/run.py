"""Run: one trial of an experiment, with its status, metrics, tags, properties and files.

This module is the in-run client too (``Run.get_context()``), so it imports only the
standard library and runner's own standard-library modules, and it stays importable on
Python 3.9.

The public API mirrors azureml.core.Run: camelCase keys in details dicts, v1 names and
defaults. Everything is read from and written to the workspace's store; the only state
a Run object keeps is its identity and the per-metric checks that keep ``log`` fast.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
)

from runner import failure as _failure
from runner import metrics as _m
from runner.artifacts import check_artifact_name, name_clash
from runner.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    RunFailedError,
    RunnerWarning,
    StoreError,
)
from runner.status import ACTIVE_VALUES, TERMINAL_VALUES, RunStatus
from runner.store import MetricSeries, NewRun, RunRow, loads_or_none

if TYPE_CHECKING:
    from runner.experiment import Experiment, TagFilter
    from runner.models import Model
    from runner.workspace import Workspace

#: Run types (``run.type``), as azureml names them.
RUN_TYPE_SCRIPT = "azureml.scriptrun"
RUN_TYPE_INTERACTIVE = "azureml.interactive"
RUN_TYPE_CHILD = "azureml.childrun"

#: Run type -> the factory that makes Run objects of that type when runs are listed
#: or looked up (``Run.add_type_provider``); script runs become ScriptRun without one.
_TYPE_PROVIDERS: dict[str, Callable[[Experiment, RunRow], Run]] = {}

_TERMINAL_VALUES = frozenset(TERMINAL_VALUES)
_ACTIVE_VALUES = frozenset(ACTIVE_VALUES)
_SCALARS = _m.SCALAR_TYPES

# Metric kinds as stored in metric_meta.kind.
_KIND_SCALAR = "scalar"
_KIND_LIST = "list"
_KIND_ROW = "row"
_KIND_TABLE = "table"
_KIND_IMAGE = "image"
_STRUCTURED = {
    "confusion_matrix": _m.check_confusion_matrix,
    "accuracy_table": _m.check_accuracy_table,
    "predictions": _m.check_predictions,
    "residuals": _m.check_residuals,
}
_LOGGER_OF_KIND = {
    _KIND_SCALAR: "log()",
    _KIND_LIST: "log_list()",
    _KIND_ROW: "log_row()",
    _KIND_TABLE: "log_table()",
    _KIND_IMAGE: "log_image()",
    **{k: f"log_{k}()" for k in _STRUCTURED},
}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_tag_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"tag key {key!r} must be a non-empty str; e.g. run.tag('best', 'yes')")
    _check_text(key, "tag key")
    return key


def _check_tag_value(key: str, value: object, what: str = "tag") -> str | None:
    if value is None:
        return value
    if isinstance(value, str):
        return _check_text(value, f"{what} {key!r}: value")
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise ConfigError(
        f"{what} {key!r}: value {value!r} is a {type(value).__name__}; values are str "
        "(numbers are stringified), or None for a value-less tag"
    )


def _check_text(text: str, what: str) -> str:
    """``text`` unless it holds NUL or is not UTF-8 (lone surrogates): ConfigError."""
    if "\x00" in text:
        raise ConfigError(f"{what} {text!r} holds a NUL character; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {text!r} is not valid UTF-8 text; pass UTF-8 text") from None
    return text


def parse_filter(value: TagFilter, what: str) -> tuple[dict[str, str | None], list[str]]:
    """A tags/properties filter as (key -> value conditions, key-only conditions)."""
    if value is None:
        return {}, []
    if isinstance(value, str):
        return {}, [value]
    if isinstance(value, dict):
        pairs: dict[str, str | None] = {}
        for k, v in value.items():
            pairs[_check_tag_key(k)] = _check_tag_value(k, v, what)
        return pairs, []
    if isinstance(value, (list, tuple)):
        return {}, [_check_tag_key(k) for k in value]
    raise ConfigError(
        f"{what} filter {value!r} must be a key (str), a list of keys, or a dict of key -> value"
    )


class Run:
    """A run of an experiment.

    Get one from ``Experiment.start_logging()``, ``Experiment.submit()``,
    ``Run.get_context()`` inside a training script, or ``Run.get(ws, run_id)``.

    Example:
        >>> run = Run.get_context()
        >>> run.log("loss", 0.25)
        >>> run.tag("stage", "tuning")
    """

    def __init__(
        self,
        experiment: Experiment,
        run_id: str,
        outputs: str | None = None,
        _row: RunRow | None = None,
        **kwargs: Any,
    ) -> None:
        store = experiment.workspace._store
        row = _row if _row is not None else store.get_run(run_id)
        if row is None or row.experiment_name != experiment.name:
            raise NotFoundError(
                f"no run {run_id!r} in experiment {experiment.name!r}; list runs with "
                "exp.get_runs() or `runner run list -e EXPERIMENT`"
            )
        self._experiment = experiment
        self._workspace: Workspace = experiment.workspace
        self._store = store
        self._row = row
        self._id: str = str(row.id)
        self._outputs = outputs
        # Per-metric buffers this object has checked once: name -> values list (no
        # steps), or name -> (values, steps). The store's writer drains them.
        self._fast: dict[str, list[Any]] = {}
        self._stepped: dict[str, tuple[list[Any], list[int]]] = {}
        # metric name -> kind, for every metric this object has checked once
        self._kinds: dict[str, str] = {}

    # -- lookup ------------------------------------------------------------------------

    @staticmethod
    def get(workspace: Workspace, run_id: str, _rehydrate_runs: bool = True) -> Run:
        """The run with this id in the workspace (a ScriptRun for a submitted script's run,
        or what the run type's provider makes; see ``add_type_provider``)."""
        from runner.experiment import Experiment

        try:
            str(run_id).encode("utf-8")
            row = workspace._store.get_run(run_id)
        except UnicodeEncodeError:  # lone surrogates: no stored id can match
            row = None
        if row is None:
            raise NotFoundError(
                f"no run {run_id!r} in workspace {workspace.name}; list runs with "
                "`runner run list -e EXPERIMENT`"
            )
        return _typed(Experiment(workspace, row.experiment_name), row, _rehydrate_runs)

    @staticmethod
    def get_context(
        allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any
    ) -> Run:
        """Inside a submitted run, that run; elsewhere an offline run (or an error).

        The offline run records everything in memory and prints each call, so a training
        script can be tried with plain ``python train.py``.
        """
        from runner.context import get_context

        return get_context(allow_offline=allow_offline)

    @staticmethod
    def get_submitted_run(**kwargs: Any) -> Run:
        """Deprecated in azureml.core: the submitted run this script runs in.

        Use ``Run.get_context()``, which this returns (an offline run outside a run).
        """
        warnings.warn(
            "Run.get_submitted_run() is deprecated (as in azureml.core); use Run.get_context()",
            DeprecationWarning,
            stacklevel=2,
        )
        from runner.context import get_context

        return get_context(allow_offline=True)

    @staticmethod
    def add_type_provider(runtype: str, run_factory: Callable[[Experiment, Any], Run]) -> None:
        """Make listed and looked-up runs of type ``runtype`` with ``run_factory``.

        ``run_factory(experiment, run_dto)`` is called for every such run that
        ``Run.list``, ``exp.get_runs()``, ``run.get_children()`` and ``Run.get`` return
        (unless ``_rehydrate_runs=False``); ``run_dto.run_id`` is the run's id. Kept for
        the life of the process, as in azureml.

        Example:
            >>> class TunedRun(Run): ...
            >>> Run.add_type_provider("tuning", lambda exp, dto: TunedRun(exp, dto.run_id))
        """
        if not isinstance(runtype, str) or not runtype:
            raise ConfigError(
                f"add_type_provider: runtype {runtype!r} must be a run type (a non-empty str), "
                "e.g. 'azureml.scriptrun'"
            )
        if not callable(run_factory):
            raise ConfigError(
                f"add_type_provider({runtype!r}): run_factory {run_factory!r} is not callable; "
                "pass a function (experiment, run_dto) -> Run"
            )
        _TYPE_PROVIDERS[runtype] = run_factory

    @staticmethod
    def list(
        experiment: Experiment,
        type: str | None = None,
        tags: TagFilter = None,
        properties: TagFilter = None,
        status: str | None = None,
        include_children: bool = False,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """Runs of an experiment, newest first; tags/properties match by key or key+value."""
        rows = _find(
            experiment.workspace,
            experiment_id=experiment._id,
            top_level_only=not include_children,
            run_type=type,
            status=status,
            tags=tags,
            properties=properties,
        )
        return (_typed(experiment, r, _rehydrate_runs) for r in rows)

    @staticmethod
    def list_by_compute(
        compute: Any,
        type: str | None = None,
        tags: TagFilter = None,
        properties: TagFilter = None,
        status: str | None = None,
    ) -> Iterator[Run]:
        """Runs on a compute target (any object with ``.workspace`` and ``.name``)."""
        from runner.experiment import Experiment

        ws: Workspace = compute.workspace
        rows = _find(
            ws, target=compute.name, run_type=type, status=status, tags=tags, properties=properties
        )
        exps: dict[str, Experiment] = {}
        for r in rows:
            exp = exps.get(r.experiment_name)
            if exp is None:
                exp = exps[r.experiment_name] = Experiment(ws, r.experiment_name)
            yield _typed(exp, r)

    def _refresh(self) -> RunRow:
        row = self._store.get_run(self._id)
        if row is None:
            raise NotFoundError(f"run {self._id} was removed from the workspace")
        self._row = row
        return row

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The run id."""
        return self._id

    @property
    def number(self) -> int:
        """The run's number in its experiment: 1, 2, 3..."""
        return int(self._row.number)

    @property
    def experiment(self) -> Experiment:
        """The experiment holding the run."""
        return self._experiment

    @property
    def type(self) -> str:
        """The run type, e.g. 'azureml.scriptrun'."""
        return str(self._row.type)

    @property
    def name(self) -> str:
        """The display name (azureml's alias)."""
        return self.display_name

    @property
    def display_name(self) -> str:
        """A name for people; settable. Defaults to the run id."""
        return str(self._refresh().display_name or self._id)

    @display_name.setter
    def display_name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"display_name {value!r} must be a non-empty str")
        self._store.update_run(self._id, display_name=value)
        self._row.display_name = value

    @property
    def description(self) -> str | None:
        """A free-text description; settable."""
        d = self._refresh().description
        return None if d is None else str(d)

    @description.setter
    def description(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"description must be a str, not {type(value).__name__}")
        self._store.update_run(self._id, description=value)

    @property
    def parent(self) -> Run | None:
        """The parent run, or None at the top."""
        pid = self._row.parent_id
        if pid is None:
            return None
        return Run(self._experiment, pid)

    @property
    def status(self) -> str:
        """The current status (read fresh)."""
        return self.get_status()

    @property
    def tags(self) -> dict[str, str | None]:
        """The run's tags."""
        return self.get_tags()

    @property
    def properties(self) -> dict[str, str | None]:
        """The run's properties."""
        return self.get_properties()

    def __repr__(self) -> str:
        try:
            status = self._refresh().status  # the status now, not when this object was made
        except (StoreError, NotFoundError):  # a repr never raises: show the last one seen
            status = self._row.status
        return (
            f"Run(Experiment: {self._experiment.name}, Id: {self._id}, Type: {self._row.type}, "
            f"Status: {status})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Run) and other._id == self._id and other._workspace == self._workspace
        )

    def __hash__(self) -> int:
        return hash(self._id)

    # -- status ------------------------------------------------------------------------

    def _checked(self) -> RunRow:
        """The fresh row, after noticing what the run's holders left behind: a supervised
        run whose heartbeats stopped or that waits for a daemon (one is started), an
        interactive run whose process is gone (it ends Failed). See runner.lifecycle."""
        row = self._refresh()
        try:
            return self._observe(row)
        except StoreError:
            # The workspace takes no writes now (a full disk): answer with what is
            # recorded; the next read notices again.
            return row

    def _observe(self, row: RunRow) -> RunRow:
        """Record what ``row``'s holders left behind (see ``_checked``); the fresh row."""
        from runner import lifecycle

        if row.status == "Running" and row.type == RUN_TYPE_SCRIPT and row.heartbeat_utc:
            from runner.liveness import not_responding_after_s

            if time.time() - float(row.heartbeat_utc) > not_responding_after_s():
                self._store.set_status(
                    self._id,
                    RunStatus.NOT_RESPONDING.value,
                    allowed_from={"Running"},
                    details="no heartbeat from its supervisor",
                )
                lifecycle.ensure_supervised(self._workspace)  # a new daemon re-adopts it
                row = self._refresh()
        elif (
            # (A submit hands its run to a daemon itself: no need to look in its first second.)
            row.type != RUN_TYPE_SCRIPT or time.time() - float(row.created_utc) > 1.0
        ) and lifecycle.check_run(self._workspace, row):
            row = self._refresh()
        return row

    def get_status(self) -> str:
        """The current status string, e.g. 'Running' or 'Completed'."""
        return str(self._checked().status)

    def get_detailed_status(self) -> dict[str, Any]:
        """``{'status': ..., 'details': ...}``; details say what a queued run waits for."""
        row = self._checked()
        return {"status": row.status, "details": row.status_details}

    def get_details(self) -> dict[str, Any]:
        """The run's definition, status, times, properties, log files and error."""
        row = self._checked()
        details: dict[str, Any] = {
            "runId": row.id,
            "target": row.target,
            "status": row.status,
        }
        if row.start_utc is not None:
            details["startTimeUtc"] = _iso(row.start_utc)
        if row.status in _TERMINAL_VALUES and row.end_utc is not None:
            details["endTimeUtc"] = _iso(row.end_utc)
        details["properties"] = self.get_properties()
        details["inputDatasets"] = []
        details["outputDatasets"] = []
        details["runDefinition"] = _shown_definition(loads_or_none(row.definition) or {})
        details["logFiles"] = self._log_files()
        details["submittedBy"] = row.submitted_by
        if row.error is not None:
            details["error"] = loads_or_none(row.error)
        if row.status_details:
            details["statusDetails"] = row.status_details
        return details

    def get_details_with_logs(self) -> dict[str, Any]:
        """get_details() with the text of each log file under ``logFiles``."""
        details = self.get_details()
        details["logFiles"] = {
            name: Path(path).read_text(encoding="utf-8", errors="replace")
            for name, path in details["logFiles"].items()
            if Path(path).exists()
        }
        return details

    def _run_dir(self) -> Path:
        return self._workspace.run_dir(self._id)

    def _log_files(self) -> dict[str, str]:
        """Log name -> local path: live files of a running run, stored ones afterwards."""
        found: dict[str, str] = {}
        for name, digest, _ in self._store.list_files(self._id):
            if name.startswith(("logs/", "azureml-logs/")):
                found[name] = str(self._workspace._blobs.path_of(digest))
        live = self._run_dir() / "logs"
        if live.is_dir():
            for p in sorted(live.rglob("*")):
                if p.is_file():
                    found.setdefault("azureml-logs/" + p.relative_to(live).as_posix(), str(p))
        return found

    def _set_terminal(
        self, status: RunStatus, error: dict[str, Any] | None = None, details: str | None = None
    ) -> bool:
        old = self._store.set_status(
            self._id,
            status.value,
            allowed_from=_ACTIVE_VALUES,
            error=error,
            details=details,
            end=True,
        )
        if old is not None:
            self._row.status = status.value  # the cached row follows (repr falls back to it)
        return old is not None

    def start(self) -> None:
        """Mark the run started (Running), as azureml does for runs made by another actor.

        A run that is already Running (children from ``create_children`` are born
        Running) stays as it is; a finished run is not restarted (a RunnerWarning says so).
        """
        old = self._store.set_status(
            self._id,
            RunStatus.RUNNING.value,
            allowed_from={"NotStarted", "Starting", "Provisioning", "Preparing", "Queued"},
            start=True,
        )
        if old is not None:
            self._refresh()
            return
        status = self.get_status()
        if status in _TERMINAL_VALUES:
            warnings.warn(
                f"run {self._id} is already {status}; start() changed nothing",
                RunnerWarning,
                stacklevel=2,
            )

    def complete(self, _set_status: bool = True) -> None:
        """Flush what was logged, store ``outputs``, and mark the run Completed.

        When the metrics or outputs cannot be stored (a full disk) the run is marked
        Failed with that reason instead, and the StoreError is raised.
        """
        self._flush_and_store_outputs(_set_status)
        if _set_status and not self._set_terminal(RunStatus.COMPLETED):
            status = self.get_status()
            if status != RunStatus.COMPLETED.value:
                warnings.warn(
                    f"run {self._id} is already {status}; complete() changed nothing",
                    RunnerWarning,
                    stacklevel=2,
                )

    def fail(
        self,
        error_details: str | BaseException | None = None,
        error_code: str | None = None,
        _set_status: bool = True,
    ) -> None:
        """Flush, store ``outputs``, and mark the run Failed with an optional error.

        As in azureml, a run that has Completed can be marked Failed afterwards (it ran
        the wrong script, its model is bad): its end time and stored files stay as they
        are, and ``error`` is recorded as given. A Canceled or Failed run is left as it is
        (a RunnerWarning says so).
        """
        message = (
            f"{type(error_details).__name__}: {error_details}"
            if isinstance(error_details, BaseException)
            else (error_details or "the run was marked failed")
        )
        error = _failure.error_details(error_code or "UserError", message, when=_iso(time.time()))
        if _set_status and self._refresh().status == RunStatus.COMPLETED.value:
            self.flush()  # what this process logged; the outputs stored at its end stay
            if self._mark_completed_failed(error):
                return
        self._flush_and_store_outputs(_set_status)
        if _set_status and not self._set_terminal(RunStatus.FAILED, error=error):
            warnings.warn(
                f"run {self._id} is already {self.get_status()}; fail() changed nothing",
                RunnerWarning,
                stacklevel=2,
            )

    def _mark_completed_failed(self, error: dict[str, Any]) -> bool:
        """Completed -> Failed, keeping the end time; False if the run was not Completed."""
        old = self._store.set_status(
            self._id,
            RunStatus.FAILED.value,
            allowed_from={RunStatus.COMPLETED.value},
            error=error,
            details="marked Failed with fail() after it had completed",
        )
        self._refresh()
        return old is not None

    def cancel(self) -> None:
        """Cancel the run and its unfinished children.

        An interactive run becomes Canceled at once. A submitted run becomes
        CancelRequested; its supervisor then stops the process tree (TERM, a grace
        period, KILL) and records Canceled. Cancel of a finished run is a no-op that
        says so.
        """
        row = self._refresh()
        if row.status in _TERMINAL_VALUES:
            warnings.warn(
                f"run {self._id} is already {row.status}; cancel() changed nothing",
                RunnerWarning,
                stacklevel=2,
            )
            return
        from runner.control import request_cancel

        request_cancel(self._workspace, self._id)

    def wait_for_completion(
        self,
        show_output: bool = False,
        wait_post_processing: bool = False,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:
        """Wait until the run ends; return get_details().

        With ``show_output`` the run's logs are streamed to stdout as they are written.
        With ``raise_on_error`` a Failed run raises RunFailedError with the error and
        the tail of its log.
        """
        if show_output:
            from runner.logstream import stream_run_output

            stream_run_output(self)
        self._wait_terminal()
        details = self.get_details()
        if raise_on_error and details["status"] == RunStatus.FAILED.value:
            err = (details.get("error") or {}).get("error") or {}
            tail = str(err.get("logTail") or self._log_tail()).rstrip("\n")
            message = str(err.get("message", "no error recorded"))
            log = self._failure_log(details["logFiles"], err.get("kind"))
            if log and "full log: " not in message:
                message += f"; full log: {log}"
            # One message, the log's path, its last lines once (issue 14).
            raise RunFailedError(
                f"run {self._id} failed: {message}"
                + (f"\n--- last lines of the log ---\n{tail}" if tail else ""),
                run_id=self._id,
                status=details["status"],
                exit_code=err.get("exitCode"),
                log_tail=tail,
            )
        return details

    def _failure_log(self, log_files: dict[str, str], kind: object) -> str | None:
        """The log that tells why the run failed: the preparation log when its environment
        could not be prepared, else the driver log; its live path while it is there."""
        wanted = "environment_prep_log" if kind == "environment_failed" else "driver_log"
        live = self._run_dir() / "logs"
        if live.is_dir():
            for p in sorted(live.iterdir()):
                if wanted in p.name:
                    return str(p)
        for name, path in sorted(log_files.items()):
            if wanted in name:
                return path
        return None

    def _wait_terminal(self) -> None:
        """Block until the run is Completed, Failed or Canceled."""
        delay = 0.002
        checked = time.monotonic()
        while self._refresh().status not in _TERMINAL_VALUES:
            if self._row.type == RUN_TYPE_SCRIPT:
                # The daemon answers the moment the run ends: no polling latency.
                from runner import daemon_client

                try:
                    daemon_client.request(
                        self._workspace.path,
                        {"op": "wait", "run_id": self._id, "timeout_s": 1.0},
                        timeout_s=5.0,
                    )
                except (OSError, ValueError):
                    time.sleep(0.05)
                self._checked()
                continue
            time.sleep(delay)
            delay = min(delay * 1.2, 0.05)
            if time.monotonic() - checked > 1.0:
                self._checked()
                checked = time.monotonic()

    def _log_tail(self, lines: int = 20) -> str:
        for name, path in self._log_files().items():
            if name.endswith("driver_log.txt") and Path(path).exists():
                text = Path(path).read_bytes()[-16384:].decode("utf-8", "replace")
                return "\n".join(text.splitlines()[-lines:])
        return ""

    def flush(self, timeout_seconds: int = 300) -> None:
        """Make everything logged so far durable and visible to other processes."""
        if not self._store.flush(timeout_s=timeout_seconds):
            raise TimeoutError(f"flush of run {self._id} did not finish in {timeout_seconds} s")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            self.complete()
        elif isinstance(exc, KeyboardInterrupt):
            self.flush()
            self._store_outputs()
            self._set_terminal(RunStatus.CANCELED, details="interrupted (KeyboardInterrupt)")
        else:
            self.fail(exc)

    # -- metrics -----------------------------------------------------------------------

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a scalar (int, float, bool or str); repeated names build a vector.

        If a metric was given a step once, every value of it must have one. No database
        round trip happens here: values are written in batches by a background thread.
        """
        buf = self._fast.get(name)
        if buf is not None and step is None and type(value) in _SCALARS:
            buf.append(value)
            return
        self._log_slow(name, value, description, step)

    def _log_slow(self, name: str, value: Any, description: str, step: int | None) -> None:
        pair = self._stepped.get(name)
        if pair is not None and type(value) in _SCALARS and type(step) is int:
            pair[0].append(value)
            pair[1].append(step)
            return
        name = _m.check_metric_name(name)
        value = _m.coerce_scalar(name, value)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ConfigError(f"metric {name!r}: step {step!r} must be an int, e.g. step=epoch")
        if name not in self._fast and name not in self._stepped:
            _, has_step = self._register(name, _KIND_SCALAR, step is not None, description)
            vals, steps = self._store.scalar_buffer(self._id, name, bool(has_step))
            if steps is None:
                self._fast[name] = vals
            else:
                self._stepped[name] = (vals, steps)
            self._store.ensure_writer()
        if name in self._stepped:
            if step is None:
                raise ConfigError(
                    f"metric {name!r} was logged with step= before, so every value needs one; "
                    f"pass step= for {value!r} too"
                )
            vals, steps = self._stepped[name]
            vals.append(value)
            steps.append(int(step))
            return
        if step is not None:
            raise ConfigError(
                f"metric {name!r} was logged without step= before; log every value of it "
                "with a step or none, or use a new metric name"
            )
        self._fast[name].append(value)

    def _register(
        self, name: str, kind: str, has_step: bool | None, description: str | None
    ) -> tuple[str, bool | None]:
        """Record (or check) a metric's kind once per name per Run object."""
        known = self._kinds.get(name)
        if known is None:
            known, stored_step = self._store.metric_meta(
                self._id, name, kind, has_step, description or ""
            )
            self._kinds[name] = known
            if known == _KIND_SCALAR and kind == _KIND_SCALAR:
                return known, stored_step
        else:
            stored_step = name in self._stepped
        if known != kind and {known, kind} != {_KIND_SCALAR, _KIND_LIST}:
            raise ConflictError(
                f"metric {name!r} of run {self._id} was logged with {_LOGGER_OF_KIND[known]}; "
                f"it cannot take {_LOGGER_OF_KIND[kind]} values; use another name"
            )
        return known, stored_step

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        """Log a list of scalars; repeated calls extend the metric's vector.

        Any ordered iterable works, a generator or ``map`` too (read once, as in azureml).
        """
        name = _m.check_metric_name(name)
        values = _m.check_list(name, value)
        self._register(name, _KIND_LIST, None, description)
        if name in self._stepped:
            raise ConfigError(
                f"metric {name!r} has steps; log its values one by one with log(name, v, step=...)"
            )
        buf = self._fast.get(name)
        if buf is None:
            buf = self._fast[name] = self._store.scalar_buffer(self._id, name, False)[0]
        buf.extend(values)
        self._store.ensure_writer()

    def _log_other(self, name: str, kind: str, value: Any, description: str | None) -> None:
        self._register(name, kind, None, description)
        self._store.other_queue.append((self._id, name, value))
        self._store.ensure_writer()

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of a table metric; repeated calls add rows."""
        name = _m.check_metric_name(name)
        self._log_other(name, _KIND_ROW, _m.check_row(name, kwargs), description)

    def log_table(self, name: str, value: dict[str, Sequence[Any]], description: str = "") -> None:
        """Log a table as a dict of equal-length column lists."""
        name = _m.check_metric_name(name)
        self._log_other(name, _KIND_TABLE, _m.check_table(name, value), description)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        """Log a confusion matrix (the seeds' ``schema_type: confusion_matrix`` JSON)."""
        self._log_structured("confusion_matrix", name, value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        """Log an accuracy table (the seeds' ``schema_type: accuracy_table`` JSON)."""
        self._log_structured("accuracy_table", name, value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        """Log binned predictions (the seeds' ``schema_type: predictions`` JSON)."""
        self._log_structured("predictions", name, value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        """Log a residuals histogram (the seeds' ``schema_type: residuals`` JSON)."""
        self._log_structured("residuals", name, value, description)

    def _log_structured(self, kind: str, name: str, value: Any, description: str) -> None:
        name = _m.check_metric_name(name)
        self._log_other(name, kind, _STRUCTURED[kind](name, value), description)

    def log_image(
        self, name: str, path: Any = None, plot: Any = None, description: str = ""
    ) -> None:
        """Log an image file (path or binary stream) or a matplotlib figure/pyplot.

        A figure or ``pyplot`` passed in the ``path`` position is rendered as ``plot=``
        would be: ``run.log_image("ROC", plt)`` is the azureml articles' own sample.
        """
        name = _m.check_metric_name(name)
        if plot is None and _m.looks_like_plot(path):
            path, plot = None, path
        if (path is None) == (plot is None):
            raise ConfigError(
                f"log_image({name!r}): pass exactly one of path= (an image file) or plot= "
                "(a matplotlib figure or pyplot)"
            )
        if plot is not None:
            data = _m.render_plot_png(name, plot)
            ext = ".png"
            digest = self._workspace._blobs.put_bytes(data)
            size = len(data)
        else:
            _m.check_image_path(name, path)
            if hasattr(path, "read"):
                digest, size = self._workspace._blobs.put_stream(path)
                ext = os.path.splitext(str(getattr(path, "name", "")))[1] or ".png"
            else:
                digest, size = self._workspace._blobs.put_file(path)
                ext = os.path.splitext(os.fspath(path))[1] or ".png"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        file_name = f"{safe}_{digest[:16]}{ext}"  # one file per distinct image
        self._store.add_files(self._id, [(file_name, digest, size)])
        ref = f"aml://artifactId/ExperimentRun/dcid.{self._id}/{file_name}"
        self._log_other(name, _KIND_IMAGE, ref, description)

    def get_metrics(
        self,
        name: str | None = None,
        recursive: bool = False,
        run_type: str | None = None,
        populate: bool = False,
    ) -> dict[str, Any]:
        """The run's metrics: name -> value.

        A metric logged once is a scalar, more than once a list; rows and tables are
        dicts of column lists; images are references to the stored file. With
        ``recursive=True``: ``{run_id: {name: value}}`` for this run and its descendants.
        """
        self._store.flush()
        if not recursive:
            return _shape_metrics(self._store.read_metrics(self._id, name))
        result: dict[str, Any] = {}
        ids = [self._id] + [
            r.id for r in self._store.find_runs(descendants_of=self._id, run_type=run_type)
        ]
        if run_type is not None and self.type != run_type:
            ids = ids[1:]
        for rid in ids:
            result[rid] = _shape_metrics(self._store.read_metrics(rid, name))
        return result

    def get_metrics_with_steps(self, name: str) -> dict[str, builtins.list[Any]]:
        """``{'steps': [...], 'values': [...]}`` of a metric logged with step= (runner's own)."""
        self._store.flush()
        series = self._store.read_metrics(self._id, name).get(name)
        if series is None:
            raise NotFoundError(f"run {self._id} has no metric {name!r}")
        return {"steps": series.steps or [], "values": series.values}

    # -- tags and properties -----------------------------------------------------------

    def tag(self, key: str, value: str | None = None) -> None:
        """Set a tag; without a value it is a value-less tag (value None)."""
        key = _check_tag_key(key)
        self._store.set_tags(self._id, {key: _check_tag_value(key, value)})

    def set_tags(self, tags: dict[str, str | None] | str | builtins.list[str]) -> None:
        """Add or change tags: a dict, or a str / list of value-less tags."""
        if isinstance(tags, str):
            pairs: dict[str, str | None] = {_check_tag_key(tags): None}
        elif isinstance(tags, (list, tuple)):
            pairs = {_check_tag_key(k): None for k in tags}
        elif isinstance(tags, dict):
            pairs = {_check_tag_key(k): _check_tag_value(k, v) for k, v in tags.items()}
        else:
            raise ConfigError(f"set_tags takes a dict, a str or a list of str, not {tags!r}")
        self._store.set_tags(self._id, pairs)

    def remove_tags(self, tags: builtins.list[str] | str) -> dict[str, str | None]:
        """Delete tags by key; returns the tags left."""
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._store.remove_tags(self._id, [_check_tag_key(k) for k in keys])
        return self.get_tags()

    def get_tags(self) -> dict[str, str | None]:
        """The run's tags."""
        return self._store.get_tags(self._id)

    def add_properties(self, properties: dict[str, Any]) -> None:
        """Add immutable properties; a different value for an existing key raises."""
        if not isinstance(properties, dict):
            raise ConfigError(f"add_properties takes a dict, not {type(properties).__name__}")
        pairs = {
            _check_tag_key(k): _check_tag_value(k, v, "property") for k, v in properties.items()
        }
        self._store.add_properties(self._id, pairs)

    def get_properties(self) -> dict[str, str | None]:
        """The run's properties."""
        return self._store.get_properties(self._id)

    # -- children ----------------------------------------------------------------------

    def child_run(
        self, name: str | None = None, run_id: str | None = None, outputs: str | None = None
    ) -> Run:
        """Start a child run (Running); as a context manager it completes on exit.

        ``outputs`` names a folder whose content is stored with the child when it completes.
        """
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ConfigError(f"run_id {run_id!r} must be a non-empty str or None")
        (cid,) = self._store.create_runs(
            self._experiment._id,
            [
                NewRun(
                    id=run_id,
                    type=RUN_TYPE_CHILD,
                    status="Running",
                    target=self._row.target,
                    display_name=name,
                    owner=self._child_owner(),
                )
            ],
            parent_id=self._id,
            submitted_by=self._row.submitted_by,
        )
        return self._child_type()(self._experiment, cid, outputs=outputs)

    def _child_type(self) -> builtins.type[Run]:
        """The class of this run's children: its own (an offline run's stay offline)."""
        return type(self)

    def _child_owner(self) -> str | None:
        """The process that owns a new child: this one, outside a submitted run (inside
        one, children live as long as it and its supervisor do)."""
        if os.environ.get("RUNNER_RUN_ID") or self._row.type == RUN_TYPE_SCRIPT:
            return None
        from runner.lifecycle import process_token

        return process_token()

    def create_children(
        self,
        count: int | None = None,
        tag_key: str | None = None,
        tag_values: Sequence[str] | None = None,
    ) -> builtins.list[Run]:
        """Create several Running children in one transaction.

        Pass ``count``, or ``tag_key`` and ``tag_values`` (one child per value, tagged).
        """
        owner = self._child_owner()
        if tag_values is not None or tag_key is not None:
            if tag_key is None or tag_values is None:
                raise ConfigError("create_children: pass tag_key and tag_values together")
            tag_key = _check_tag_key(tag_key)
            values = [_check_tag_value(tag_key, v) for v in tag_values]
            if count is not None and count != len(values):
                raise ConfigError(
                    f"create_children: count={count} but {len(values)} tag_values; pass one or "
                    "make them agree"
                )
            specs = [
                NewRun(
                    type=RUN_TYPE_CHILD,
                    status="Running",
                    target=self._row.target,
                    tags={tag_key: v},
                    owner=owner,
                )
                for v in values
            ]
        else:
            if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(
                    f"create_children: count={count!r}; pass a count >= 0, or tag_key and tag_values"
                )
            specs = [
                NewRun(type=RUN_TYPE_CHILD, status="Running", target=self._row.target, owner=owner)
                for _ in range(count)
            ]
        ids = self._store.create_runs(
            self._experiment._id, specs, parent_id=self._id, submitted_by=self._row.submitted_by
        )
        rows = {r.id: r for r in self._store.find_runs(parent_id=self._id)}
        child_type = self._child_type()
        return [child_type(self._experiment, i, _row=rows.get(i)) for i in ids]

    def get_children(
        self,
        recursive: bool = False,
        tags: TagFilter = None,
        properties: TagFilter = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """Children (or all descendants) of the run, newest first, filtered."""
        rows = _find(
            self._workspace,
            parent_id=None if recursive else self._id,
            descendants_of=self._id if recursive else None,
            run_type=type,
            status=status,
            tags=tags,
            properties=properties,
        )
        return (_typed(self._experiment, r, _rehydrate_runs) for r in rows)

    def submit_child(
        self, config: Any, tags: dict[str, str | None] | None = None, **kwargs: Any
    ) -> Run:
        """Submit a ScriptRunConfig as a child of this run; it runs on its own target."""
        from runner.submit import submit

        return submit(self._experiment, config, tags=tags, parent=self, **kwargs)

    # -- files -------------------------------------------------------------------------

    def upload_file(
        self,
        name: str,
        path_or_stream: str | os.PathLike[str] | IO[bytes],
        datastore_name: str | None = None,
    ) -> dict[str, Any]:
        """Store a local file (or a binary stream) with the run under ``name``."""
        name = check_artifact_name(name)
        self._refuse_clashes([name])
        blobs = self._workspace._blobs
        if hasattr(path_or_stream, "read"):
            digest, size = blobs.put_stream(path_or_stream)  # type: ignore[arg-type]
        else:
            path = Path(os.fspath(path_or_stream))
            if not path.is_file():
                raise NotFoundError(f"upload_file({name!r}): no file at {path}")
            digest, size = blobs.put_file(path)
        self._store.add_files(self._id, [(name, digest, size)])
        return {"name": name, "size": size, "digest": digest}

    def upload_files(
        self,
        names: Sequence[str],
        paths: Sequence[str | os.PathLike[str]],
        return_artifacts: bool = False,
        timeout_seconds: int | None = None,
        datastore_name: str | None = None,
    ) -> builtins.list[dict[str, Any]] | None:
        """Store several local files at once (one transaction)."""
        if len(names) != len(paths):
            raise ConfigError(
                f"upload_files: {len(names)} names but {len(paths)} paths; pass one name per path"
            )
        checked = [check_artifact_name(n) for n in names]
        self._refuse_clashes(checked)
        for p in paths:
            if not Path(os.fspath(p)).is_file():
                raise NotFoundError(f"upload_files: no file at {p}; nothing was uploaded")
        blobs = self._workspace._blobs
        entries = []
        for n, p in zip(checked, paths):
            digest, size = blobs.put_file(os.fspath(p))
            entries.append((n, digest, size))
        self._store.add_files(self._id, entries)
        if return_artifacts:
            return [{"name": n, "digest": d, "size": s} for n, d, s in entries]
        return None

    def upload_folder(
        self, name: str, path: str | os.PathLike[str], datastore_name: str | None = None
    ) -> None:
        """Store every file under a local folder with the names ``name/relative/path``."""
        prefix = check_artifact_name(name)
        folder = Path(os.fspath(path))
        if not folder.is_dir():
            raise NotFoundError(f"upload_folder({name!r}): {folder} is not a folder")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        self.upload_files([f"{prefix}/{p.relative_to(folder).as_posix()}" for p in files], files)

    def _refuse_clashes(self, names: Sequence[str]) -> None:
        """ConflictError, before any blob is stored, for names that would make a file and a
        folder of one name (``a`` and ``a/b``), among themselves or with the run's files.
        ``Store.add_files`` checks again in its transaction."""
        clash = name_clash(names)
        if clash is not None:
            raise ConflictError(
                f"{clash[0]!r} and {clash[1]!r} cannot both be files of run {self._id}: "
                f"{clash[0]!r} would be a file and a folder at once; rename one of them; "
                "nothing was uploaded"
            )
        recorded = self._store.file_clashes(self._id, names)
        if recorded:
            old, new = recorded[0]
            raise ConflictError(
                f"run {self._id} already has a file {old!r}, so {new!r} cannot be a file too: "
                "one would be a file and a folder at once; upload under another name"
            )

    def get_file_names(self) -> builtins.list[str]:
        """The names of the run's stored files."""
        return [n for n, _, _ in self._store.list_files(self._id)]

    def _digest_of(self, name: str) -> str:
        name = check_artifact_name(name)
        for n, d, _ in self._store.list_files(self._id, prefix=name):
            if n == name:
                return d
        raise NotFoundError(
            f"run {self._id} has no file {name!r}; its files are listed by run.get_file_names()"
        )

    def download_file(
        self,
        name: str,
        output_file_path: str | os.PathLike[str] | None = None,
        _validate_checksum: bool = False,
    ) -> str:
        """Write a stored file to ``output_file_path`` (a file, or an existing folder)."""
        digest = self._digest_of(name)
        base = name.rstrip("/").split("/")[-1]
        dest = Path(output_file_path) if output_file_path is not None else Path.cwd() / base
        if dest.is_dir():
            dest = dest / base
        _copy_out(self._workspace._blobs, digest, dest, f"file {name!r} of run {self._id}")
        return str(dest)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: Sequence[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: int | None = None,
    ) -> builtins.list[str]:
        """Write every stored file under ``prefix`` into ``output_directory``."""
        norm = check_artifact_name(prefix) if prefix else None
        files = self._store.list_files(self._id, prefix=norm)
        if output_paths is not None and len(output_paths) != len(files):
            raise ConfigError(
                f"download_files: {len(output_paths)} output_paths for {len(files)} files"
            )
        out = Path(output_directory) if output_directory is not None else Path.cwd()
        _check_folder(out, "output_directory")
        written = []
        for i, (name, digest, _) in enumerate(files):
            if output_paths is not None:
                dest = Path(output_paths[i])
            else:
                rel = name
                if norm and not append_prefix:
                    rel = name[len(norm) :].lstrip("/") or name.split("/")[-1]
                dest = out / rel
            _copy_out(self._workspace._blobs, digest, dest, f"file {name!r} of run {self._id}")
            written.append(str(dest))
        return written

    def get_all_logs(self, destination: str | os.PathLike[str] | None = None) -> builtins.list[str]:
        """Write the run's log files into ``destination`` (default ``./RUN_ID``)."""
        dest = Path(destination) if destination is not None else Path.cwd() / self._id
        _check_folder(dest, "destination")
        written = []
        for name, path in self._log_files().items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(path).read_bytes())
            written.append(str(target))
        return written

    def _flush_and_store_outputs(self, set_status: bool) -> None:
        """Flush and store ``outputs``; if that fails, record the run Failed and raise.

        If even Failed cannot be recorded (the database is full), the run stays active
        until this process is gone; then the next process that looks at it records it
        Failed (runner.lifecycle): never Completed without what it logged.
        """
        try:
            self.flush()
            self._store_outputs()
        except StoreError as exc:
            if set_status:
                from runner.lifecycle import service_error

                message = f"what run {self._id} logged or its outputs could not be stored: {exc}"
                with contextlib.suppress(StoreError):  # else recorded later, as said above
                    self._set_terminal(
                        RunStatus.FAILED,
                        error=service_error(message, "store_failed"),
                        details=message,
                    )
            raise

    def _store_outputs(self) -> None:
        """Store the ``outputs`` folder given at creation (child_run, start_logging)."""
        if self._outputs and Path(self._outputs).is_dir():
            from runner.outputs import store_folder

            store_folder(self._workspace, self._id, Path(self._outputs), "outputs")

    # -- snapshots ---------------------------------------------------------------------

    def take_snapshot(self, file_or_folder_path: str | os.PathLike[str]) -> str:
        """Snapshot a file or folder (honouring .amlignore/.gitignore); returns its id."""
        from runner import access
        from runner.snapshot import cache_file, take_snapshot

        src = Path(os.fspath(file_or_folder_path))
        if not src.exists():
            raise NotFoundError(f"take_snapshot: {src} does not exist")
        ws = self._workspace
        cache = cache_file(ws.path, src)
        access.make_dirs(cache.parent, ws._access)
        snap = take_snapshot(src, ws._blobs, cache_path=cache)
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) VALUES (?,?,?)",
                (self._id, snap.id, time.time()),
            )
        if "ContentSnapshotId" not in self.get_properties():
            self._store.add_properties(self._id, {"ContentSnapshotId": snap.id})
        return snap.id

    def get_snapshot_id(self) -> str | None:
        """The id of the run's latest snapshot, or None."""
        rows = self._store.query(
            "SELECT snapshot_id FROM run_snapshots WHERE run_id = ? ORDER BY created_utc DESC LIMIT 1",
            (self._id,),
        )
        return str(rows[0][0]) if rows else None

    def restore_snapshot(
        self, snapshot_id: str | None = None, path: str | os.PathLike[str] | None = None
    ) -> str:
        """Write a snapshot (default: the latest) as ``<path>/<snapshot id>.zip``.

        As in azureml, ``path`` is the folder to write into (default: the current
        folder; created if missing), and the zip file's absolute path is returned.

        Example:
            >>> run.restore_snapshot(path="snapshots")  # doctest: +SKIP
            '/home/u/proj/snapshots/3f2a....zip'
        """
        from runner.snapshot import load_snapshot, to_zip

        sid = snapshot_id or self.get_snapshot_id()
        if sid is None:
            raise NotFoundError(
                f"run {self._id} has no snapshot; take one with run.take_snapshot(path)"
            )
        folder = (Path(os.fspath(path)) if path is not None else Path.cwd()).absolute()
        _check_folder(folder, "restore_snapshot: path")
        snap = load_snapshot(self._workspace._blobs, sid)
        created = not folder.exists()
        try:
            return str(to_zip(snap, self._workspace._blobs, folder / f"{sid}.zip"))
        except BaseException:
            if created:  # leave nothing behind, not even the folder made for the zip
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    # -- models, environment, secrets, misc --------------------------------------------

    def register_model(
        self,
        model_name: str,
        model_path: str | None = None,
        tags: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> Model:
        """Register the run's file or folder ``model_path`` (default ``outputs``) as a model."""
        from runner.models import register_from_run

        return register_from_run(
            self,
            model_name,
            model_path or "outputs",
            tags=tags,
            properties=properties,
            framework=model_framework,
            framework_version=model_framework_version,
            description=description,
        )

    def get_environment(self) -> Any:
        """The Environment the run was defined with."""
        from runner.environment import Environment

        definition = loads_or_none(self._row.definition) or {}
        env = definition.get("environment")
        if env is None:
            return Environment.default()
        return Environment.from_dict(env)

    def get_secret(self, name: str) -> str:
        """A secret from the workspace keyvault."""
        return self._workspace.get_default_keyvault().get_secret(name)

    def get_secrets(self, secrets: builtins.list[str]) -> dict[str, str | None]:
        """Several secrets from the workspace keyvault (None for missing names)."""
        return self._workspace.get_default_keyvault().get_secrets(secrets)

    def get_portal_url(self) -> str:
        """Where to look at the run: its folder in the workspace, as a file URL."""
        return self._run_dir().as_uri()

    def clean(self) -> builtins.list[str]:
        """Remove the run's working files on this machine, as azureml's ``clean()``.

        azureml removes "the files corresponding to the current run on the target": here,
        the run's working folder (its snapshot copy, ``./outputs``, ``./logs``). Nothing
        stored with the run is removed, and nothing is lost: what is in ``./outputs`` and
        ``./logs`` is stored with the run first. A finished run's working folder is already
        gone (it was stored when the run ended), so ``[]`` is returned. During a run, a
        RunnerWarning says what was removed; the script cannot write there afterwards.

        Returns:
            The paths of the files removed.
        """
        import shutil

        work = self._run_dir() / "work"
        if not work.is_dir():
            return []
        removed = sorted(str(p) for p in work.rglob("*") if not p.is_dir() or p.is_symlink())
        from runner.outputs import store_folder

        kept = 0
        for folder in ("outputs", "logs"):  # as the run's end stores them; errors keep all
            if (work / folder).is_dir():
                kept += store_folder(self._workspace, self._id, work / folder, folder)
        shutil.rmtree(work, ignore_errors=True)
        if removed:
            shown = ", ".join(os.path.relpath(p, work) for p in removed[:5])
            more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
            warnings.warn(
                f"run {self._id} is {self.get_status()}: clean() removed its working folder "
                f"{work} ({len(removed)} file(s): {shown}{more}); the {kept} file(s) of its "
                "./outputs and ./logs were stored with the run first and are kept; the script "
                "can no longer write there",
                RunnerWarning,
                stacklevel=2,
            )
        return removed


def _typed(experiment: Experiment, row: RunRow, rehydrate: bool = True) -> Run:
    """The Run object for a stored run: made by its type's provider when there is one."""
    if rehydrate:
        factory = _TYPE_PROVIDERS.get(str(row.type))
        if factory is not None:
            return factory(experiment, row)
        if row.type == RUN_TYPE_SCRIPT:
            from runner.script_run import ScriptRun

            return ScriptRun(experiment, row.id, _row=row)
    return Run(experiment, row.id, _row=row)


def _find(
    ws: Workspace,
    *,
    tags: TagFilter = None,
    properties: TagFilter = None,
    status: str | None = None,
    **kw: Any,
) -> Iterator[RunRow]:
    """Runs matching the filters, newest first, fetched in pages as they are consumed."""
    tag_pairs, tag_keys = parse_filter(tags, "tags")
    prop_pairs, prop_keys = parse_filter(properties, "properties")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ConfigError(
            f"status {status!r} is not a run status; use one of "
            + ", ".join(s.value for s in RunStatus)
        )
    if not os.environ.get("RUNNER_RUN_ID") and ws._store.db_path != ":memory:":
        from runner import lifecycle

        lifecycle.sweep(ws)  # listed statuses are true: nothing left Running by the dead
    return ws._store.iter_runs(
        tags=tag_pairs,
        tag_keys=tag_keys,
        properties=prop_pairs,
        property_keys=prop_keys,
        status=status,
        **kw,
    )


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for k in row:
            if k not in cols:
                cols[k] = [None] * i
        for k, col in cols.items():
            col.append(row.get(k))
    return cols


def _shape_metrics(series: dict[str, MetricSeries]) -> dict[str, Any]:
    """Stored series -> the shapes azureml's get_metrics returns."""
    out: dict[str, Any] = {}
    for name, s in series.items():
        kind, values = s.kind, s.values
        if kind == _KIND_SCALAR:
            if values:
                out[name] = values[0] if len(values) == 1 else values
        elif kind == _KIND_LIST:
            out[name] = values
        elif kind == _KIND_ROW:
            out[name] = _columns(values)
        elif kind == _KIND_TABLE:
            merged: dict[str, list[Any]] = {}
            for table in values:
                n_before = len(next(iter(merged.values()))) if merged else 0
                n_new = len(next(iter(table.values()))) if table else 0
                for k in table:
                    merged.setdefault(k, [None] * n_before)
                for k, col in merged.items():
                    col.extend(table.get(k, [None] * n_new))
            out[name] = merged
        elif values:
            out[name] = values[0] if len(values) == 1 else values
    return out


def _check_folder(path: Path, what: str) -> None:
    """ConfigError unless ``path`` is a folder or can become one (nothing written yet)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(
                    f"{what} {str(path)!r} is not a folder ({str(p)!r} is a file); pass a "
                    "folder, which is created if missing"
                )
            return


def _copy_out(blobs: Any, digest: str, dest: Path, what: str) -> None:
    """Write a blob to ``dest``; a destination in the way is a ConfigError naming it."""
    try:
        blobs.copy_to(digest, dest, what)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise ConfigError(
            f"cannot write {str(dest)!r}: {exc.strerror or exc} at {exc.filename!r}; move what is "
            "in the way or download into an empty folder"
        ) from exc


def _shown_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A run's definition for get_details(): a registry password in it hidden."""
    from runner.environment import redacted

    shown = dict(definition)
    if isinstance(shown.get("environment"), dict):
        shown["environment"] = redacted(shown["environment"])
    config = shown.get("runConfiguration")
    if isinstance(config, dict) and isinstance(config.get("environment"), dict):
        shown["runConfiguration"] = {**config, "environment": redacted(config["environment"])}
    return shown
