"""RunSupervisor: carries one run through its life, the same way on every target.

    prepare -> queue -> stage -> launch -> watch -> collect -> finalize

The run's Target (``registry.target_for``) does what differs: where the environment is
built, where the source goes, how a process starts and is watched. The supervisor never
asks which kind of target it holds; it asks only whether the target shares this machine
(``Target.shares_host``): such runs wait for this machine's slots and GPUs. The endings
(outputs stored, status recorded, a full disk retried) are in ``endings.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import journal
from runner.definition import RunDefinition
from runner.environment import Environment
from runner.service import workcopy
from runner.service.endings import LAUNCHING, Abandoned, RunEndings, UnschedulableError
from runner.service.launch import DRIVER_LOG, PREP_LOG, RunPlace, launch_spec
from runner.service.registry import target_for
from runner.shim import LEFTOVER_GRACE_S, read_exit_file
from runner.snapshot import Snapshot, load_snapshot
from runner.status import BEFORE_LAUNCH_VALUES, LIVE_VALUES, RunStatus
from runner.store import RunRow
from targets.base import Job, RunHandle, Target

if TYPE_CHECKING:
    from runner.service.daemon import Daemon

_BEFORE_LAUNCH = BEFORE_LAUNCH_VALUES
_LIVE = LIVE_VALUES


class RunSupervisor(RunEndings):
    """Carries one run through its life; one thread per active run."""

    def __init__(
        self,
        daemon: Daemon,
        row: RunRow,
        definition: RunDefinition,
        handle: dict[str, str] | None,
        rowid: int = 0,
    ) -> None:
        self.daemon = daemon
        self.rowid = rowid  #: insertion order: older runs first in the queue
        self.ws = daemon.ws
        self.store = daemon.store
        self.row = row
        self.run_id: str = row.id
        self.definition = definition
        self.described = handle
        self.phase = "new"
        self.cancel_reason: str | None = None
        self.cancel_event = threading.Event()
        self.cancel_lock = threading.Lock()
        self.done = threading.Event()
        self.cancel_thread: threading.Thread | None = None
        self.gpu_ids: tuple[int, ...] = ()
        self.handle: RunHandle | None = None
        self.place = RunPlace(
            run_id=row.id,
            experiment=row.experiment_name,
            workspace=self.ws.path,
            mlflow_uri=self.ws.get_mlflow_tracking_uri(),
            run_dir=self.ws.run_dir(row.id),
        )
        self.dir = self.place.run_dir
        self.logs = self.place.logs
        self.workdir = self.place.workdir
        self.exit_file = self.place.exit_file
        self.events = SupervisorEvents(self)
        self._target: Target | None = None
        self._loaded_snapshot: Snapshot | None = None

    # -- control ---------------------------------------------------------------------

    def request_cancel(self, reason: str) -> None:
        """Stop the run: before launch it never starts; after, its tree is killed.

        Idempotent. A request that comes while there is no handle yet (launching, or
        re-adopting after a restart) is remembered; ``_watch`` starts the kill once the
        handle exists.
        """
        with self.cancel_lock:
            if not self.cancel_event.is_set():
                self.cancel_reason = reason
                self.cancel_event.set()
                self.daemon.scheduler.poke(self.run_id)
            handle = self.handle
            if handle is None or self.cancel_thread is not None:
                return
            self.cancel_thread = threading.Thread(
                target=handle.cancel, args=(self.definition.grace_s,), daemon=True
            )
            self.cancel_thread.start()

    def _cancel_requested(self) -> bool:
        if self.cancel_event.is_set():
            return True
        row = self.store.get_run(self.run_id)
        if row is not None and row.status == RunStatus.CANCEL_REQUESTED.value:
            self.request_cancel(row.status_details or "canceled by user")
            return True
        if (self.dir / "cancel").exists():
            self.request_cancel((self.dir / "cancel").read_text(errors="replace") or "canceled")
            return True
        return False

    def _status(
        self,
        status: RunStatus,
        allowed: Iterable[str],
        details: str | None = None,
        **kw: Any,
    ) -> bool:
        return (
            self.store.set_status(
                self.run_id, status.value, allowed_from=allowed, details=details, **kw
            )
            is not None
        )

    # -- the run's target ------------------------------------------------------------

    def target(self) -> Target:
        """The run's Target (made once; TargetNotFoundError when its compute target is gone)."""
        if self._target is None:
            self._target = target_for(
                self.ws, self.definition, self.daemon.keepers, self.daemon.client_dir()
            )
        return self._target

    def shares_host(self) -> bool:
        """Whether the run takes this machine's slots and GPUs (False also when its target
        cannot be made: the supervisor then fails the run, holding nothing)."""
        try:
            return self.target().shares_host
        except Exception:  # reported by the supervisor's thread, which fails the run
            return False

    def _job(self) -> Job:
        env_def = self.definition.environment
        return Job(
            run_id=self.run_id,
            definition=self.definition,
            environment=Environment.from_dict(env_def) if env_def else Environment.default(),
            snapshot=self._snapshot(),
            workspace=self.ws,
            blobs=self.ws.blobs,
            prep_log=self.logs / PREP_LOG,
            exit_file=self.exit_file,
        )

    def _snapshot(self) -> Snapshot | None:
        """The run's snapshot (its manifest read once: at launch and again at the end)."""
        snap_id = self.definition.snapshot_id
        if snap_id and self._loaded_snapshot is None:
            self._loaded_snapshot = load_snapshot(self.ws.blobs, snap_id)
        return self._loaded_snapshot

    # -- the life of a run -----------------------------------------------------------

    def supervise(self) -> None:
        """Prepare, queue, launch, watch, finalize."""
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            status = self.store.get_run(self.run_id)
            current = status.status if status else None
            if (self.described or {}).get("kind") == LAUNCHING:
                self._resume_launch()
            elif current == RunStatus.FINALIZING.value:
                self._finalize_after_crash()
            elif self.described is not None:
                self._adopt()
            elif current == RunStatus.CANCEL_REQUESTED.value or current in _LIVE:
                # Never launched (or launched without a handle stored): nothing runs.
                self._end_without_launch(current)
            else:
                self._start()
        except Abandoned:
            self.daemon._log(f"run {self.run_id}: left to the next daemon")
        except Exception as exc:  # a runner bug or a broken environment: the run fails
            self._fail_internal(exc)
        finally:
            if self._target is not None:
                self._target.close()
            self.daemon.scheduler.release(self.run_id)
            self.daemon.finished(self.run_id)
            self.done.set()

    def described_gpus(self) -> tuple[int, ...]:
        """The GPUs a launched run holds, as its stored handle says."""
        text = str((self.described or {}).get("gpus") or "")
        return tuple(int(g) for g in text.split(",") if g)

    def queue_request(self) -> tuple[int, tuple[int, float, str]]:
        """(GPUs wanted, place in the queue: higher priority first, then older first)."""
        order = (-self.definition.priority, float(self.rowid or self.row.created_utc), self.run_id)
        return self.definition.gpu_count, order

    def _queued_because(self, why: str) -> None:
        self.store.set_status(
            self.run_id, RunStatus.QUEUED.value, allowed_from={RunStatus.QUEUED.value}, details=why
        )

    def _prep_log(self, text: str) -> None:
        with open(self.logs / PREP_LOG, "a", encoding="utf-8") as f:
            f.write(text)

    def _start(self) -> None:
        target = self.target()
        job = self._job()
        self.phase = "preparing"
        before = set(_BEFORE_LAUNCH)
        if self.row.status != RunStatus.QUEUED.value:
            # A run queued before a daemon restart stays Queued while its (cached)
            # environment is looked up again: statuses never go backwards.
            self._status(RunStatus.PREPARING, before)
        prepared = target.prepare(job)
        if prepared.lock_file is not None and Path(prepared.lock_file).is_file():
            # The lock is kept with the run, so the same environment can be rebuilt exactly.
            digest, size = self.ws.blobs.put_file(prepared.lock_file)
            name = f"azureml-environment/{Path(prepared.lock_file).name}"
            self.store.replace_files(self.run_id, [(name, digest, size)])
        if self._cancel_requested():
            return self._end_canceled_before_start()
        if target.shares_host and not self._wait_for_slot(before):
            return self._end_canceled_before_start()
        staged = target.stage(job, self.workdir)
        if staged:
            self._prep_log(staged + "\n")
        self.exit_file.unlink(missing_ok=True)
        # A host keeping records of its own starts the run's with its tags and properties;
        # a run here records straight into this store (two queries fewer per launch).
        remote = not target.shares_host
        spec = launch_spec(
            self.place,
            self.definition,
            prepared,
            shares_host=target.shares_host,
            client_dir=self.daemon.client_dir(),
            gpu_ids=self.gpu_ids,
            gpus_managed=bool(self.daemon.scheduler.all_gpus),
            umask=self.daemon.run_umask,
            tags=self.store.get_tags(self.run_id) if remote else {},
            properties=self.store.get_properties(self.run_id) if remote else {},
        )
        if not self._begin_launch(target.kind):
            return self._end_canceled_before_start()
        self.handle = target.launch(spec, self.events)
        self.described = {**self.handle.describe(), "gpus": ",".join(map(str, self.gpu_ids))}
        self.store.update_run(self.run_id, handle=json.dumps(self.described))
        # A run in the target's own queue (a cluster's) becomes Running when it starts.
        if not self.events.waiting and not self._status(RunStatus.RUNNING, before, start=True):
            self.request_cancel(self.cancel_reason or "canceled while starting")
        self.phase = "running"
        self._watch()
        return None

    def _wait_for_slot(self, before: set[str]) -> bool:
        """Queued until this machine has a slot (and the GPUs) for the run; False when the
        run was canceled meanwhile."""
        self.phase = "queued"
        self._status(RunStatus.QUEUED, before, details="waiting for a free slot")
        if self._cancel_requested():
            return False
        gpu_count, order = self.queue_request()
        try:
            gpus = self.daemon.scheduler.acquire(
                self.run_id,
                gpu_count,
                order,
                self.cancel_event.is_set,
                self._queued_because,
            )
        except ValueError as exc:
            raise UnschedulableError(str(exc)) from None
        if gpus is None:
            return False
        self.gpu_ids = gpus
        return True

    def _begin_launch(self, kind: str) -> bool:
        """Record, before any process starts, that this daemon launches the run.

        False when it must not: the daemon is stopping (the next one starts the run), or the
        run was canceled meanwhile, or it is no longer this daemon's (then nothing is done).
        """
        if self.daemon.stopping.is_set():
            raise Abandoned
        launching = {
            "kind": LAUNCHING,
            "target": kind,
            "daemon": self.daemon.token,
            "gpus": ",".join(map(str, self.gpu_ids)),
        }
        if self.store.begin_launch(
            self.run_id, self.daemon.token, json.dumps(launching), _BEFORE_LAUNCH
        ):
            return True
        row = self.store.get_run(self.run_id)
        if row is not None and row.status == RunStatus.CANCEL_REQUESTED.value:
            self.cancel_event.set()
            self.cancel_reason = row.status_details or self.cancel_reason
            return False
        raise Abandoned

    def _resume_launch(self) -> None:
        """An earlier daemon was launching this run when it stopped: find what it started.

        The run is never launched again: the target looks for a trace of the process
        (``Target.recover``); with none the run ends Failed, saying so.
        """
        described = self.target().recover(self._job())
        if described is None:
            self._finalize(
                None,
                failure=(
                    "the daemon stopped while launching this run and no process of it "
                    "was started; it is not started again (a run starts at most once): "
                    "submit it again"
                ),
            )
            return
        self.described = {**described, "gpus": str((self.described or {}).get("gpus") or "")}
        self.store.update_run(self.run_id, handle=json.dumps(self.described))
        self._adopt()

    def _adopt(self) -> None:
        """Watch a run an earlier daemon launched."""
        described = self.described or {}
        self.handle = self.target().reattach(described, self.events)
        self.gpu_ids = self.described_gpus()
        self.daemon.scheduler.reserve(self.run_id, self.gpu_ids)
        if not self.events.waiting:
            # Launched, but the last daemon died before it recorded Running.
            self._status(RunStatus.RUNNING, _BEFORE_LAUNCH, start=True)
        self.phase = "running"
        self.daemon._log(f"re-adopted run {self.run_id} (pid {described.get('pid')})")
        self._watch(adopted=True)

    def _finalize_after_crash(self) -> None:
        """The last daemon stopped while it finalized the run: its process has ended (on
        a host, it is followed to its end); finalize again with the code it left."""
        if self.described is None:
            code = read_exit_file(self.exit_file)
        else:
            handle = self.handle = self.target().reattach(self.described, self.events)
            while (code := handle.wait(timeout_s=0.5)) is None:
                if self.daemon.stopping.is_set():
                    raise Abandoned
            handle.cancel(1.0)  # what is left of it (a stopped container) goes
            code = None if code == -1 else code
        self._finalize(code, failure=None if code is not None else "finalizing was interrupted")

    def _watch(self, adopted: bool = False) -> None:
        handle = self.handle
        assert handle is not None  # noqa: S101 - launched or reattached before
        duration = self.definition.max_run_duration_seconds
        deadline: float | None = None
        noted = False
        while True:
            code = handle.wait(timeout_s=0.5)
            noted = noted or self._note_properties(handle)
            if code is not None:
                break
            if duration and deadline is None and not self.events.waiting:
                # The time runs from the start, not from a wait in a cluster's queue.
                start = self.store.get_run(self.run_id)
                started = start.start_utc if start and start.start_utc else time.time()
                deadline = started + float(duration)
            if self.daemon.stopping.is_set():
                return None  # the run goes on; the next daemon re-adopts it
            if not self.cancel_event.is_set():
                self._cancel_requested()
            elif self.cancel_thread is None:
                # Requested before the handle existed: kill the tree now.
                self.request_cancel(self.cancel_reason or "canceled by user")
            if deadline is not None and time.time() > deadline and not self.cancel_event.is_set():
                self.request_cancel(f"exceeded max_run_duration_seconds={duration}")
        if self.cancel_thread is not None:
            # The keeper may die on TERM before the script does: the run is over only
            # when the whole tree is gone (after the grace period, KILL).
            self.cancel_thread.join()
        else:
            # The script is done; stop what it left running in its session, as a
            # container's end would.
            handle.cancel(LEFTOVER_GRACE_S)
        ending = self.events.said_ending
        if ending is not None and not self.cancel_event.is_set():
            reason, canceled, kind = ending
            if canceled:
                self.cancel_reason = reason
                self.cancel_event.set()
            else:
                return self._finalize(None if code == -1 else code, failure=reason, cause=kind)
        if code == -1 and not self.cancel_event.is_set():  # gone without an exit code
            return self._finalize(
                None,
                failure=(
                    "the run's process ended while no supervisor watched it (the daemon was "
                    "stopped or killed); its exit code is unknown"
                    if adopted
                    else "the run's keeper was killed before it could record the script's exit code"
                ),
            )
        self._finalize(code)
        return None

    def _note_properties(self, handle: RunHandle) -> bool:
        """Record what the target learned about the run (e.g. ``runner.containment``:
        how a local run's processes are held together) once it says; True when there is
        nothing (more) to record."""
        found = handle.properties()
        if found is None:
            return False
        if found:
            try:
                self.store.add_properties(self.run_id, dict(found))
            except Exception as exc:  # never fail a run over a property
                self.daemon._log(f"run {self.run_id}: could not record {found}: {exc}")
        return True

    def _leave_workdir(self, kept: bool) -> None:
        """The run is over: keep its working folder for the next run, or delete it."""
        snapshot = None
        if kept:
            try:
                snapshot = self._snapshot()
            except Exception:
                snapshot = None
        if snapshot is None or not workcopy.keep(self.ws, snapshot, self.workdir):
            workcopy.forget(self.workdir)


class SupervisorEvents:
    """RunEvents of one run: a host's logs and records come into this workspace."""

    def __init__(self, sup: RunSupervisor) -> None:
        self.sup = sup
        #: the target said the run waits in its own queue, and has not said it started
        self.waiting = False
        #: (reason, canceled, kind) the target said of the run's end
        self.said_ending: tuple[str, bool, str] | None = None

    @property
    def driver_log(self) -> Path:
        """This machine's copy of the driver log."""
        return self.sup.logs / DRIVER_LOG

    def journal_offset(self, stream: str = journal.JOURNAL) -> int:
        """How much of the run's journal (``stream``: one rank's) the store has applied."""
        return journal.applied_offset(self.sup.store, self.sup.run_id, stream)

    def apply_journal(self, offset: int, payload: bytes, stream: str = journal.JOURNAL) -> None:
        """Apply journaled records to the store; runs the script submitted there are
        launched from here, at once."""
        submitted: list[str] = []
        journal.apply(self.sup.store, self.sup.run_id, offset, payload, submitted, stream)
        if submitted:
            self.sup.daemon._log(
                f"run {self.sup.run_id} submitted {', '.join(submitted)} from its host"
            )
            self.sup.daemon.wake.set()

    def put_blob(self, data: bytes) -> None:
        """Keep a file's contents in the blob store."""
        self.sup.ws.blobs.put_bytes(data)

    def link_changed(self, up: bool, error: str | None) -> None:
        """NotResponding while the link is down; the next heartbeat makes it Running."""
        sup = self.sup
        if up:
            sup.daemon._log(f"run {sup.run_id}: the link to the host is back")
            sup.phase = "running"
            sup.daemon.wake.set()
            return
        sup.daemon._log(f"run {sup.run_id}: lost the link to the host ({error})")
        sup.phase = "lost"
        sup._status(
            RunStatus.NOT_RESPONDING,
            {RunStatus.RUNNING.value},
            details=f"lost the connection to the host: {error}",
        )

    def queued(self, why: str) -> None:
        """Queued (from an earlier status only), ``why`` in the details."""
        self.waiting = True
        sup = self.sup
        sup.phase = "queued"
        sup._status(RunStatus.QUEUED, _BEFORE_LAUNCH, details=why)

    def started(self) -> None:
        """Running, from Queued or NotResponding (the start time set once)."""
        self.waiting = False
        sup = self.sup
        sup.phase = "running"
        sup._status(
            RunStatus.RUNNING, {*_BEFORE_LAUNCH, RunStatus.NOT_RESPONDING.value}, start=True
        )

    def stalled(self, why: str) -> None:
        """NotResponding while the target holds the run up."""
        sup = self.sup
        sup.phase = "lost"
        sup._status(RunStatus.NOT_RESPONDING, {RunStatus.RUNNING.value}, details=why)

    def ending(self, reason: str, *, canceled: bool = False, kind: str = "target") -> None:
        """Kept for the end of ``_watch``: the first word on it counts."""
        if self.said_ending is None:
            self.said_ending = (reason, canceled, kind)
