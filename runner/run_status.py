"""The status part of ``Run``: status and details, start and the end (complete, fail,
cancel, the context manager), and waiting for the end.

Reading a status also notices what the run's holders left behind (runner.lifecycle):
a supervisor whose heartbeats stopped, an interactive run whose process is gone.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from runner import failure as _failure
from runner.control import request_cancel
from runner.errors import RunFailedError, RunnerWarning, StoreError, UserError
from runner.liveness import not_responding_after_s
from runner.logstream import stream_run_output
from runner.outputs import store_folder
from runner.run_base import _ACTIVE_VALUES, _TERMINAL_VALUES, RUN_TYPE_SCRIPT, _iso, _RunBase
from runner.status import RunStatus
from runner.store import RunRow, loads_or_none

if TYPE_CHECKING:
    from runner.run import Run

_R = TypeVar("_R", bound="_RunStatus")


class _RunStatus(_RunBase):
    """A run's status, details and end (part of ``Run``)."""

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
        # runner.lifecycle (with keeper, subprocess, socket) doubles what `from runner import
        # Run` costs a training script: loaded when a status is first read, as before.
        from runner import lifecycle

        if row.status == "Running" and row.type == RUN_TYPE_SCRIPT and row.heartbeat_utc:
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
            stream_run_output(cast("Run", self))  # (self is always a Run)
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
            if self._row.type == RUN_TYPE_SCRIPT and self._handed_over():
                raise UserError(
                    f"run {self._id} runs in the workspace that submitted this run, not on "
                    "this host, and its status does not come back here; wait for it there "
                    f"(Run.get(ws, {self._id!r}).wait_for_completion())"
                )
            if self._row.type == RUN_TYPE_SCRIPT:
                # The daemon answers the moment the run ends: no polling latency.
                from runner import daemon_client  # (as lifecycle in _observe: socket, ...)

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

    def _handed_over(self) -> bool:
        """Whether this is a run that a script on a host submitted: its record here is the
        host's private copy, and the submitting workspace launches it (runner.submit)."""
        journal = os.environ.get("RUNNER_JOURNAL")
        return bool(journal) and self._id != os.environ.get("RUNNER_RUN_ID")

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

    def __enter__(self: _R) -> _R:
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
                from runner import lifecycle  # (see _observe)

                message = f"what run {self._id} logged or its outputs could not be stored: {exc}"
                with contextlib.suppress(StoreError):  # else recorded later, as said above
                    self._set_terminal(
                        RunStatus.FAILED,
                        error=lifecycle.service_error(message, "store_failed"),
                        details=message,
                    )
            raise

    def _store_outputs(self) -> None:
        """Store the ``outputs`` folder given at creation (child_run, start_logging)."""
        if self._outputs and Path(self._outputs).is_dir():
            store_folder(self._workspace, self._id, Path(self._outputs), "outputs")


def _shown_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A run's definition for get_details(): a registry password in it hidden."""
    from runner.environment import redacted  # (a fifth of `import runner.run`: on first use)

    shown = dict(definition)
    if isinstance(shown.get("environment"), dict):
        shown["environment"] = redacted(shown["environment"])
    config = shown.get("runConfiguration")
    if isinstance(config, dict) and isinstance(config.get("environment"), dict):
        shown["runConfiguration"] = {**config, "environment": redacted(config["environment"])}
    return shown
