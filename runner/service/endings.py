"""How a run ends: its outputs and logs stored, its end recorded, a full disk retried.

The part of RunSupervisor that is the same for every way a run can end (completed,
failed, canceled, lost, or the runner's own fault); the life before it is in
``supervisor.py``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import (
    ConfigError,
    EnvironmentBuildError,
    RunnerError,
    StoreError,
    store_fault,
)
from runner.failure import error_details
from runner.keeper import failed_rank_file
from runner.outputs import store_folder
from runner.service import workcopy
from runner.service.launch import DRIVER_LOG, PREP_LOG
from runner.status import BEFORE_LAUNCH_VALUES, LIVE_VALUES, SUPERVISED_VALUES, RunStatus

if TYPE_CHECKING:
    from runner.service.daemon import Daemon
    from runner.store import Store
    from runner.workspace import Workspace
    from targets.base import RunHandle

_ACTIVE = SUPERVISED_VALUES
_BEFORE_LAUNCH = BEFORE_LAUNCH_VALUES
_LIVE = LIVE_VALUES
#: ``runs.handle`` of a run whose launch was decided but not yet confirmed by a handle.
LAUNCHING = "launching"
#: In a run's folder: why its outputs or logs could not be stored (a full disk). Kept
#: until the run's end (Failed, with this reason) is recorded, so that a daemon taking
#: over the run never records it Completed; its working folder is removed once this
#: file exists, which frees the space its outputs took.
STORE_FAILURE = "store_failure"
#: Longest wait between tries to record the end of a run while the workspace is full.
END_RETRY_MAX_S = 30.0


class Abandoned(Exception):
    """This daemon leaves the run to the next one (it stops, or lost the claim)."""


class UnschedulableError(RunnerError):
    """A run asks for more than this daemon can ever give it (e.g. more GPUs than exist)."""


class RunEndings:
    """The endings of RunSupervisor (a mixin: the attributes below are the supervisor's)."""

    daemon: Daemon
    ws: Workspace
    store: Store
    run_id: str
    dir: Path
    logs: Path
    workdir: Path
    exit_file: Path
    phase: str
    handle: RunHandle | None
    cancel_event: threading.Event
    cancel_reason: str | None

    def _status(
        self, status: RunStatus, allowed: Iterable[str], details: str | None = None, **kw: Any
    ) -> bool:
        raise NotImplementedError

    def _prep_log(self, text: str) -> None:
        raise NotImplementedError

    def _leave_workdir(self, kept: bool) -> None:
        raise NotImplementedError

    def _store_outputs(self) -> None:
        refused: ConfigError | None = None  # bad names: store the rest, then say so
        for folder, prefix in (
            (self.workdir / "outputs", "outputs"),
            (self.workdir / "logs", "logs"),
            (self.logs, "azureml-logs"),
        ):
            if folder.is_dir():
                try:
                    store_folder(self.ws, self.run_id, folder, prefix)
                except ConfigError as exc:
                    refused = refused or exc
        if refused is not None:
            raise refused

    def _finalize(
        self, code: int | None, failure: str | None = None, cause: str | None = None
    ) -> None:
        """Store the run's outputs and logs, record its end, remove its working folder.

        When the outputs, logs or statuses cannot be stored (a full disk), the run ends
        Failed with that reason; its end is tried again until it is recorded (see
        ``_until_recorded``), and ``STORE_FAILURE`` keeps the reason meanwhile. ``cause``:
        what a ``failure`` is called in the run's error.
        """
        self.phase = "finalizing"
        canceled = self.cancel_event.is_set()
        kind: str | None = None
        earlier = self._read_store_failure()
        if earlier is not None:  # an earlier try (of this daemon or the last one) failed
            failure, kind = earlier, "store_failed"
        try:
            self._status(
                RunStatus.FINALIZING,
                {*_LIVE, RunStatus.CANCEL_REQUESTED.value, *_BEFORE_LAUNCH},
            )
            self._collect()
            self._store_outputs()
        except Exception as exc:  # the run fails, saying why; its end is recorded below
            if kind is None:
                failure, kind = self._could_not_store(exc), "store_failed"
        self._until_recorded(lambda: self._end(code, canceled, failure, kind or cause))
        self._leave_workdir(kept=kind is None)
        (self.dir / STORE_FAILURE).unlink(missing_ok=True)

    def _could_not_store(self, exc: Exception) -> str:
        """Keep why the outputs could not be stored, free their space; returns the reason."""
        if isinstance(exc, OSError):
            exc = store_fault(exc, str(self.ws.path), "store the run's outputs") or exc
        reason = str(exc) if isinstance(exc, RunnerError) else f"{type(exc).__name__}: {exc}"
        message = f"could not store the outputs, logs or status of run {self.run_id}: {reason}"
        self.daemon._log(f"run {self.run_id}: {message}")
        marker = self.dir / STORE_FAILURE
        try:
            marker.write_text(message, encoding="utf-8")
        except OSError as marker_exc:
            # Even this does not fit: keep the working folder, so that a daemon taking
            # over the run finds the outputs and tries to store them again.
            marker.unlink(missing_ok=True)
            self.daemon._log(f"run {self.run_id}: could not write {marker}: {marker_exc}")
        else:
            workcopy.forget(self.workdir)
        return message

    def _read_store_failure(self) -> str | None:
        try:
            text = (self.dir / STORE_FAILURE).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            text = f"could not store the outputs or logs of run {self.run_id} ({exc})"
        return text or f"could not store the outputs or logs of run {self.run_id}"

    def _until_recorded(self, record: Callable[[], object]) -> None:
        """Call ``record`` until the store takes it (a full workspace is retried).

        Meanwhile the run keeps its status (an active one, never Completed) and this
        daemon keeps supervising it. A daemon that stops leaves the run to the next one.
        """
        delay_s = 0.5
        said = None
        while True:
            try:
                record()
                return
            except StoreError as exc:
                if str(exc) != said:
                    said = str(exc)
                    self.daemon._log(f"run {self.run_id}: cannot record its end yet: {exc}")
            if self.daemon.stopping.wait(delay_s):
                raise Abandoned
            delay_s = min(delay_s * 2, END_RETRY_MAX_S)

    def _collect(self) -> None:
        """The run's ./outputs and ./logs into its working folder, where they are not yet."""
        if self.handle is None:
            return
        try:
            self.handle.collect(self.workdir)
        except Exception as exc:  # the run's end is recorded all the same
            self.daemon._log(f"run {self.run_id}: could not fetch outputs: {exc}")
            with open(self.logs / DRIVER_LOG, "a", encoding="utf-8") as f:
                f.write(f"\nrunner: could not fetch ./outputs from the host: {exc}\n")

    def _end(
        self, code: int | None, canceled: bool, failure: str | None, kind: str | None = None
    ) -> None:
        allowed = {*_ACTIVE}
        if canceled and kind is None:
            self._status(RunStatus.CANCELED, allowed, details=self.cancel_reason, end=True)
        elif code == 0 and failure is None:
            self._status(RunStatus.COMPLETED, allowed, end=True)
        else:
            rank = self._failed_rank() if failure is None else None
            if failure is not None:
                message = failure
            elif rank is not None:
                message = f"rank {rank} of the distributed run exited with code {code}"
            else:
                message = f"the script exited with code {code}"
            error = error_details(
                "UserError" if failure is None else "ServiceError",
                message,
                kind=kind or ("script_failed" if failure is None else "lost"),
                exit_code=code,
                failed_rank=rank,
                log_tail=_tail(self.logs / DRIVER_LOG),
            )
            self._status(RunStatus.FAILED, allowed, details=message, error=error, end=True)

    def _failed_rank(self) -> int | None:
        """The rank that failed a distributed run, as its keeper wrote it down."""
        try:
            return int(Path(failed_rank_file(str(self.exit_file))).read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None

    def _end_canceled_before_start(self) -> None:
        self._status(
            RunStatus.CANCELED,
            set(_ACTIVE),
            details=self.cancel_reason or "canceled before it started",
            end=True,
        )
        self._store_outputs()

    def _end_without_launch(self, current: str | None) -> None:
        if current == RunStatus.CANCEL_REQUESTED.value:
            self.cancel_event.set()
            self._end_canceled_before_start()
        else:
            self._finalize(None, failure="the run was launched but its process is unknown")

    def _fail_internal(self, exc: BaseException) -> None:
        if self.handle is not None:  # never leave a process running for a failed run
            with contextlib.suppress(Exception):
                self.handle.cancel(1.0)
        if isinstance(exc, OSError):  # a full disk while preparing the working folder
            exc = store_fault(exc, str(self.ws.path), "prepare the run's working folder") or exc
        if isinstance(exc, RunnerError):
            # The user's to fix (a build that failed, no GPU free): what and why, once; the
            # build's own lines are already in this log, and our traceback helps no one.
            summary = exc.summary if isinstance(exc, EnvironmentBuildError) else str(exc)
            detail = summary + "\n"
        else:  # a bug of runner's: keep its traceback
            summary = f"{type(exc).__name__}: {exc}"
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        tail = _tail(self.logs / PREP_LOG)  # the build's lines, before ours: said once
        with contextlib.suppress(OSError):
            self._prep_log(f"\nrunner could not run this: {detail}")
        if isinstance(exc, UnschedulableError):
            kind = "could_not_start"
        elif isinstance(exc, RunnerError):
            kind = "environment_failed"
        else:
            kind = "could_not_start"
        error = error_details(
            "UserError" if isinstance(exc, RunnerError) else "ServiceError",
            summary,
            kind=kind,
            log_tail=tail,
        )
        try:
            self._store_outputs()
        except Exception as store_exc:  # recording the failure matters more than its logs
            self.daemon._log(f"run {self.run_id}: could not store outputs: {store_exc}")
        try:
            self._until_recorded(
                lambda: self.store.set_status(
                    self.run_id,
                    RunStatus.FAILED.value,
                    allowed_from=_ACTIVE,
                    details=summary,
                    error=error,
                    end=True,
                )
            )
        except Abandoned:
            self.daemon._log(f"run {self.run_id}: its failure is left to the next daemon")
        finally:  # recorded, or left to the next daemon: either way nothing runs here
            workcopy.forget(self.workdir)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
