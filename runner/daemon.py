"""The workspace daemon: the supervisor of every submitted run of one workspace.

One long-lived process per workspace (started on demand by the first submit, or as a
service with ``runner daemon start``). The database is the queue: ``submit`` writes a
run in status Starting and pokes the daemon over its socket; the daemon claims it,
prepares its environment (Preparing), waits for resources (Queued), launches it on its
target (Running), sends heartbeats, stops it on cancel or when it runs too long, stores
its outputs and logs (Finalizing) and records how it ended.

Why one warm process instead of one supervisor process per run: starting Python and
importing the host-side dependencies costs tens of milliseconds, more than the whole
budget of a small run's overhead. Runs still outlive the daemon: each runs in its own
session under its keeper (runner.keeper, started ahead of need), which writes its exit
code, and a restarted daemon re-adopts the runs it finds active in the database. Who
holds what, and what happens when each dies: runner.lifecycle.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import access, daemon_client, lifecycle, workcopy
from runner.errors import (
    ConfigError,
    EnvironmentBuildError,
    RunnerError,
    StoreError,
    store_fault,
)
from runner.failure import error_details
from runner.jobconfig import MPIRUN_MISSING
from runner.keeper import failed_rank_file
from runner.liveness import heartbeat_s
from runner.run import RUN_TYPE_SCRIPT
from runner.scheduler import Scheduler
from runner.shim import LEFTOVER_GRACE_S
from runner.snapshot import Snapshot, load_snapshot
from runner.status import BEFORE_LAUNCH_VALUES, LIVE_VALUES, SUPERVISED_VALUES, RunStatus
from runner.store import RunRow, Store
from runner.workspace import Workspace, declare_mlflow_plugin

_ACTIVE = SUPERVISED_VALUES
_BEFORE_LAUNCH = BEFORE_LAUNCH_VALUES
_LIVE = LIVE_VALUES
#: ``runs.handle`` of a run whose launch was decided but not yet confirmed by a handle.
LAUNCHING = "launching"
#: How long a new daemon waits for the keeper of a run an earlier daemon was launching.
LAUNCH_EVIDENCE_S = 3.0
#: Connections served at once; more are answered "busy" (each holds a thread).
MAX_CONNECTIONS = 64
#: Seconds a client has to send its request once connected.
REQUEST_READ_S = 5.0
#: Log names, as azureml calls them.
DRIVER_LOG = "70_driver_log.txt"
PREP_LOG = "55_environment_prep_log.txt"
#: In a run's folder: why its outputs or logs could not be stored (a full disk). Kept
#: until the run's end (Failed, with this reason) is recorded, so that a daemon taking
#: over the run never records it Completed; its working folder is removed once this
#: file exists, which frees the space its outputs took.
STORE_FAILURE = "store_failure"
#: Longest wait between tries to record the end of a run while the workspace is full.
END_RETRY_MAX_S = 30.0


class _Abandoned(Exception):
    """This daemon leaves the run to the next one (it stops, or lost the claim)."""


class UnschedulableError(RunnerError):
    """A run asks for more than this daemon can ever give it (e.g. more GPUs than exist)."""


class Daemon:
    """Supervises the submitted runs of one workspace."""

    def __init__(self, ws: Workspace, idle_exit_s: float | None) -> None:
        self.ws = ws
        self.store: Store = ws._store
        self.idle_exit_s = idle_exit_s
        self.supervisors: dict[str, RunSupervisor] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_busy = time.monotonic()
        self._client_dir: Path | None = None
        self._identity = daemon_client.workspace_identity(ws.path)
        self.settings = load_settings(ws)
        self.scheduler = Scheduler(self.settings.gpus, self.settings.max_concurrent)
        #: this daemon as runs.supervisor records it (runner.lifecycle)
        self.token = lifecycle.process_token()
        self._schedule_lock = threading.Lock()
        self._skipped: set[str] = set()
        self._schedule_fault: str | None = None  # the last store fault a tick logged
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._socket_inode = -1
        # Who may talk to this daemon: its own user, the workspace's owner, root (see
        # _peer_refusal), and with a shared group its members.
        self._trusted_uids = {os.getuid(), ws.path.stat().st_uid, 0}
        self._refused = 0
        self._refusal_logged = 0.0
        #: the umask of the user who started this daemon, which their runs keep
        self.run_umask: int | None = None
        from targets.local import KeeperFactory

        self.keepers = KeeperFactory()

    # -- the in-run client ------------------------------------------------------------

    def client_dir(self) -> Path:
        """A folder holding a copy of the runner package, put on the runs' PYTHONPATH.

        A copy (not the installed location) so that a run in another interpreter gets
        runner's standard-library client and nothing else from our site-packages.
        """
        if self._client_dir is not None:
            return self._client_dir
        import hashlib

        src = Path(__file__).resolve().parent
        h = hashlib.sha256()
        files = sorted(p for p in src.glob("*.py"))
        for p in files:
            h.update(p.name.encode())
            h.update(p.read_bytes())
        dest = self.ws.path / "client" / h.hexdigest()[:16]
        if not (dest / "runner" / "__init__.py").exists():
            tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "runner").mkdir(parents=True)
            for p in files:  # (copyfile: the daemon's private umask sets the mode)
                shutil.copyfile(p, tmp / "runner" / p.name)
            # mlflow in a run's script finds runner's tracking store (scheme runner:) here.
            declare_mlflow_plugin(tmp)
            try:
                os.replace(tmp, dest)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another daemon won the race
        self._client_dir = dest
        return dest

    # -- serving ---------------------------------------------------------------------

    def serve(self) -> None:
        """Adopt active runs, then serve requests until stopped or idle."""
        self.keepers.cache_dir = self.client_dir()
        from runner.keeper import remove_empty_cgroups

        if remove_empty_cgroups():
            self._log("removed empty cgroups that killed keepers had left")
        threading.Thread(target=self.keepers.start, name="keeper-factory", daemon=True).start()
        sock = self._listen()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._sample_loop, name="system-metrics", daemon=True).start()
        self._log(
            f"GPUs {self.settings.gpus or 'none'}, at most "
            f"{self.settings.max_concurrent or 'unlimited'} runs at once, system metrics every "
            f"{self.settings.system_metrics_s or 'never'} s"
        )
        # Re-adopt and re-queue what an earlier daemon left before answering anyone, so
        # that the first `runner daemon status` already shows the GPUs that are held.
        self._schedule_or_log()
        threading.Thread(target=self._clean_containers, name="docker-cleanup", daemon=True).start()
        threading.Thread(target=self._accept_loop, args=(sock,), name="accept", daemon=True).start()
        self._log(f"daemon {os.getpid()} serving workspace {self.ws.path}")
        try:
            while not self.stopping.is_set():
                self._schedule_or_log()
                self.wake.wait(1.0)
                self.wake.clear()
                if self._idle_too_long():
                    self._log("idle: exiting")
                    break
                if self._identity != daemon_client.workspace_identity(self.ws.path):
                    self._log("the workspace was removed or replaced: exiting")
                    break
        finally:
            self.stopping.set()
            sock.close()
            self._unlisten()

    def _schedule_or_log(self) -> None:
        """``_schedule``, but a store fault (a full disk) is logged, not fatal.

        The daemon keeps supervising the runs it has and tries again on the next tick;
        claims are compare-and-set in one transaction, so a failed tick leaves nothing half
        done.
        """
        try:
            self._schedule()
        except StoreError as exc:
            if str(exc) != self._schedule_fault:
                self._log(f"cannot look for new runs yet: {exc}")
            self._schedule_fault = str(exc)
        else:
            if self._schedule_fault is not None:
                self._log("looking for new runs again")
            self._schedule_fault = None

    def _clean_containers(self) -> None:
        """Remove containers of this workspace that no active run owns (a crash's leftovers)."""
        if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
            return  # no engine here: do not pay for importing docker
        try:
            from targets.docker import cleanup_leftovers, docker_available

            client = docker_available()
            if client is None:
                return
            marks = ",".join("?" * len(_ACTIVE))

            def active() -> dict[str, str | None]:
                rows = self.store.query(
                    f"SELECT id, handle FROM runs WHERE status IN ({marks})",  # noqa: S608
                    _ACTIVE,
                )
                return {
                    run_id: (json.loads(handle) if handle else {}).get("container_id")
                    for run_id, handle in rows
                }

            # The containers are listed first, then the active runs (so a run launched in
            # between counts as active).
            removed = cleanup_leftovers(client, self.ws.path, active)
            client.close()
            if removed:
                self._log(f"removed {len(removed)} leftover container(s): {', '.join(removed)}")
        except Exception as exc:  # cleaning must never stop the daemon
            self._log(f"leftover container cleanup failed: {exc}")

    def _idle_too_long(self) -> bool:
        with self.lock:
            busy = bool(self.supervisors)
        if busy:
            self.last_busy = time.monotonic()
            return False
        return self.idle_exit_s is not None and time.monotonic() - self.last_busy > self.idle_exit_s

    def _listen(self) -> socket.socket:
        """Bind the socket file in the daemon folder (this daemon holds the lock, so a file
        already there is a dead daemon's, or a squatter's: it is replaced)."""
        path = daemon_client.socket_path(self.ws.path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with daemon_client.socket_address(path) as address:
            sock.bind(address)
        # Connecting needs write permission on the file: the owner (and the shared group).
        os.chmod(path, self.ws._access.file_mode)
        self._socket_inode = path.stat().st_ino
        sock.listen(128)
        sock.settimeout(0.5)
        return sock

    def _unlisten(self) -> None:
        """Remove the socket file, unless another daemon has replaced it since."""
        path = daemon_client.socket_path(self.ws.path)
        with contextlib.suppress(OSError):
            if path.stat().st_ino == self._socket_inode:
                path.unlink()

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._connections.acquire(blocking=False):
                # Bounded: a flood of connections must not become a flood of threads.
                self._refuse(conn, "busy: too many open connections; try again")
                continue
            try:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread could be started
                self._connections.release()
                self._refuse(conn, "busy: cannot start a thread; try again")

    def _refuse(self, conn: socket.socket, error: str) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.2)
            conn.sendall(json.dumps({"error": error}).encode() + b"\n")

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                refusal = self._peer_refusal(conn)
                if refusal is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps({"error": refusal}).encode() + b"\n")
                    return
                # A client sends its one line at once: one that dawdles holds a slot.
                conn.settimeout(REQUEST_READ_S)
                try:
                    data = daemon_client.recv_line(conn)
                    if not data.endswith(b"\n"):
                        return
                    msg = json.loads(data)
                    if not isinstance(msg, dict):
                        raise ValueError("a request is a JSON object")
                    answer = self._answer(msg)
                except OSError:
                    return  # the client went away, or sent nothing in time
                except Exception as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer).encode() + b"\n")
        finally:
            self._connections.release()

    def _peer_refusal(self, conn: socket.socket) -> str | None:
        """Why the connected process may not use this daemon, or None if it may.

        The workspace's owner may, and root: root can read and change every file of the
        workspace anyway, so refusing it here would protect nothing and would only break
        administration (``sudo runner ...``). With a shared group, its members may too.
        """
        if not hasattr(socket, "SO_PEERCRED"):
            return None  # (not Linux) the socket file's permissions are the only guard
        pid, uid, gid = daemon_client.peer_credentials(conn)
        if uid in self._trusted_uids:
            return None
        group = self.ws._access.group
        if group is not None and (gid == group or group in _groups_of(pid)):
            return None
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 1.0:  # a flood of attempts must not fill the log
            self._refusal_logged = now
            self._log(
                f"refused a request from pid {pid} (uid {uid}): not the owner of this "
                f"workspace ({self._refused} refused so far)"
            )
        return f"permission denied: uid {uid} may not use the daemon of workspace {self.ws.path}"

    def _answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "identity": self._identity}
        if op == "wake":  # the main loop schedules at once; the submitter need not wait
            self.last_busy = time.monotonic()
            self.wake.set()
            # Which workspace this is: a submit needs no separate ping (daemon_client.notify).
            return {"ok": True, "identity": self._identity}
        if op == "cancel":
            run_id = str(msg["run_id"])
            with self.lock:
                sup = self.supervisors.get(run_id)
            if sup is not None:
                sup.request_cancel(str(msg.get("reason") or "canceled by user"))
            else:
                self._schedule()
            return {"ok": True}
        if op == "wait":
            with self.lock:
                sup = self.supervisors.get(str(msg["run_id"]))
            if sup is None:
                return {"ok": True, "done": True}
            timeout_s = min(max(float(msg.get("timeout_s") or 30.0), 0.0), 30.0)
            return {"ok": True, "done": sup.done.wait(timeout_s)}
        if op == "status":
            with self.lock:
                runs = {rid: s.phase for rid, s in self.supervisors.items()}
            return {
                "ok": True,
                "pid": os.getpid(),
                "workspace": str(self.ws.path),
                "runs": runs,
                "systemMetricsSeconds": self.settings.system_metrics_s,
                **self.scheduler.snapshot(),
            }
        if op == "configure":
            self.settings = load_settings(self.ws)
            self.scheduler.configure(self.settings.gpus, self.settings.max_concurrent)
            return {"ok": True, **self.scheduler.snapshot()}
        if op == "keep":  # `runner daemon start`: stay up until stopped
            self.idle_exit_s = None
            return {"ok": True}
        if op == "stop":
            self._log("asked to stop")
            self.stopping.set()
            self.wake.set()
            return {"ok": True}
        return {"error": f"unknown request {op!r}"}

    # -- scheduling ------------------------------------------------------------------

    def _schedule(self) -> None:
        """Claim and start a supervisor for every active supervised run that has none.

        A run is claimed (``runs.supervisor``, compare-and-set) before anything is done for
        it, so two daemons can never both work on it. A run claimed by a process that is
        gone (an earlier daemon that stopped or died) is taken over. Each new run takes
        its place in the scheduler (running runs their GPUs, queued and preparing runs
        their place in line) before any supervisor thread starts: the order in which
        threads happen to run never decides which run starts first.
        """
        marks = ",".join("?" * len(_ACTIVE))
        with self._schedule_lock:
            rows = self.store.query(
                "SELECT id, handle, supervisor, rowid FROM runs "  # noqa: S608
                f"WHERE status IN ({marks}) AND type = ? ORDER BY rowid",
                (*_ACTIVE, RUN_TYPE_SCRIPT),
            )
            new: list[RunSupervisor] = []
            for run_id, handle, supervisor, rowid in rows:
                with self.lock:
                    if run_id in self.supervisors or self.stopping.is_set():
                        continue
                row = self.store.get_run(run_id)
                if row is None:
                    continue
                definition = json.loads(row.definition or "{}")
                if not definition.get("supervised") or not self._claim(run_id, supervisor):
                    continue
                sup = RunSupervisor(
                    self, row, definition, json.loads(handle) if handle else None, rowid
                )
                with self.lock:
                    self.supervisors[run_id] = sup
                self._take_place(sup)
                new.append(sup)
        for sup in new:
            threading.Thread(target=sup.supervise, name=f"run-{sup.run_id}", daemon=True).start()

    def _claim(self, run_id: str, supervisor: str | None) -> bool:
        """Whether this daemon may supervise the run (claiming it if needed)."""
        if supervisor == self.token:
            return True
        if supervisor is not None and lifecycle.token_alive(supervisor) is not False:
            if run_id not in self._skipped:  # say it once
                self._skipped.add(run_id)
                self._log(f"run {run_id} is supervised by another live process ({supervisor})")
            return False
        if not self.store.claim_run(run_id, self.token, supervisor):
            return False  # another daemon claimed it first
        if supervisor is not None:
            self._log(f"took over run {run_id} from {supervisor}, which is gone")
        return True

    def _take_place(self, sup: RunSupervisor) -> None:
        """What a newly supervised run holds in the scheduler, before any thread runs."""
        if sup._remote():
            return  # it runs on another host: it holds nothing here
        if sup.described is not None:  # launched, or being launched
            self.scheduler.reserve(sup.run_id, sup.described_gpus())
        elif sup.row.status == RunStatus.QUEUED.value:
            self.scheduler.enqueue(sup.run_id, *sup.queue_request())
        elif sup.row.status in _BEFORE_LAUNCH:
            self.scheduler.expect(sup.run_id, *sup.queue_request())

    def release_claims(self) -> None:
        """Give up this daemon's claims (it stops): the next daemon needs no liveness check."""
        self.store.release_claims(self.token)

    def finished(self, run_id: str) -> None:
        """A supervisor is done with its run."""
        with self.lock:
            self.supervisors.pop(run_id, None)
        self.last_busy = time.monotonic()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                live = [rid for rid, s in self.supervisors.items() if s.phase == "running"]
            if live:
                try:
                    marks = ",".join("?" * len(live))
                    with self.store.write() as conn:
                        conn.execute(
                            f"UPDATE runs SET heartbeat_utc = ? WHERE id IN ({marks})",  # noqa: S608
                            (time.time(), *live),
                        )
                        conn.execute(
                            "UPDATE runs SET status = 'Running', status_details = NULL "  # noqa: S608
                            f"WHERE status = 'NotResponding' AND id IN ({marks})",
                            live,
                        )
                except Exception as exc:
                    self._log(f"heartbeat failed: {exc}")
            self.stopping.wait(heartbeat_s())

    def _sample_loop(self) -> None:
        """Record CPU, memory and GPU use of every running run as ``sys/...`` metrics."""
        from runner.sysmetrics import Sampler

        sampler = Sampler(self.ws)
        while not self.stopping.is_set():
            interval = self.settings.system_metrics_s
            if interval:
                with self.lock:
                    live = [s for s in self.supervisors.values() if s.phase == "running"]
                try:
                    sampler.sample(live)
                except Exception as exc:  # sampling must never hurt the runs
                    self._log(f"system metrics failed: {exc}")
            self.stopping.wait(interval or 5.0)

    def _log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            sys.stderr.write(f"{stamp} {text}\n")
            sys.stderr.flush()
        except OSError:
            pass  # daemon.log on a full disk: the daemon's work matters more than its log


class RunSupervisor:
    """Carries one run through its life; one thread per active run."""

    def __init__(
        self,
        daemon: Daemon,
        row: RunRow,
        definition: dict[str, Any],
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
        self.handle: Any = None
        self.dir = self.ws.run_dir(self.run_id)
        self.logs = self.dir / "logs"
        self.workdir = self.dir / "work"
        self.exit_file = self.dir / "exit_code"
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
                target=handle.cancel, args=(self._grace_s(),), daemon=True
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
        except _Abandoned:
            self.daemon._log(f"run {self.run_id}: left to the next daemon")
        except Exception as exc:  # a runner bug or a broken environment: the run fails
            self._fail_internal(exc)
        finally:
            self.daemon.scheduler.release(self.run_id)
            self.daemon.finished(self.run_id)
            self.done.set()

    def described_gpus(self) -> tuple[int, ...]:
        """The GPUs a launched run holds, as its stored handle says."""
        text = str((self.described or {}).get("gpus") or "")
        return tuple(int(g) for g in text.split(",") if g)

    def queue_request(self) -> tuple[int, tuple[int, float, str]]:
        """(GPUs wanted, place in the queue: higher priority first, then older first)."""
        priority = int(self.definition.get("priority") or 0)
        order = (-priority, float(self.rowid or self.row.created_utc), self.run_id)
        return int(self.definition.get("gpuCount") or 0), order

    def _queued_because(self, why: str) -> None:
        self.store.set_status(
            self.run_id, RunStatus.QUEUED.value, allowed_from={RunStatus.QUEUED.value}, details=why
        )

    def _prep_log(self, text: str) -> None:
        with open(self.logs / PREP_LOG, "a", encoding="utf-8") as f:
            f.write(text)

    def _remote(self) -> bool:
        return (self.definition.get("target") or "local") != "local"

    def _start(self) -> None:
        from runner.environment import Environment

        if self._remote():
            return self._start_remote()
        self.phase = "preparing"
        before = set(_BEFORE_LAUNCH)
        if self.row.status != RunStatus.QUEUED.value:
            # A run queued before a daemon restart stays Queued while its (cached)
            # environment is looked up again: statuses never go backwards.
            self._status(RunStatus.PREPARING, before)
        env_def = self.definition.get("environment")
        env = Environment.from_dict(env_def) if env_def else Environment.default()
        prepared = prepare_environment(self.ws, env, self.definition, self.logs / PREP_LOG)
        if prepared.lock_file is not None and Path(prepared.lock_file).is_file():
            # The lock is kept with the run, so the same environment can be rebuilt exactly.
            digest, size = self.ws._blobs.put_file(prepared.lock_file)
            name = f"azureml-environment/{Path(prepared.lock_file).name}"
            self.store.replace_files(self.run_id, [(name, digest, size)])
        if self._cancel_requested():
            return self._end_canceled_before_start()
        self.phase = "queued"
        self._status(RunStatus.QUEUED, before, details="waiting for a free slot")
        if self._cancel_requested():
            return self._end_canceled_before_start()
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
            return self._end_canceled_before_start()
        self.gpu_ids = gpus
        # The snapshot as the working folder: a kept one when there is (runner.workcopy).
        workcopy.forget(self.workdir)
        snapshot = self._snapshot()
        if snapshot is not None:
            how = workcopy.make(self.ws, snapshot, self.workdir)
            self._prep_log(f"working folder: {how} ({snapshot.file_count} files)\n")
        else:
            self.workdir.mkdir(parents=True)
        (self.workdir / "outputs").mkdir(exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.exit_file.unlink(missing_ok=True)
        spec = self._launch_spec(prepared)
        target = make_target(self.ws, self.definition, self.daemon.keepers)
        if not self._begin_launch(target.kind):
            return self._end_canceled_before_start()
        self.handle = target.launch(spec)
        self.described = {**self.handle.describe(), "gpus": ",".join(map(str, self.gpu_ids))}
        self.store.update_run(self.run_id, handle=json.dumps(self.described))
        if not self._status(RunStatus.RUNNING, before, start=True):
            self.request_cancel(self.cancel_reason or "canceled while starting")
        self.phase = "running"
        self._watch()
        return None

    def _begin_launch(self, kind: str) -> bool:
        """Record, before any process starts, that this daemon launches the run.

        False when it must not: the daemon is stopping (the next one starts the run), or the
        run was canceled meanwhile, or it is no longer this daemon's (then nothing is done).
        """
        if self.daemon.stopping.is_set():
            raise _Abandoned
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
        raise _Abandoned

    def _resume_launch(self) -> None:
        """An earlier daemon was launching this run when it stopped: find what it started.

        The run is never launched again. A local run's keeper records its start in the
        run folder; a container is found by its name; a remote run by its id on the host.
        With no trace of a process the run ends Failed, saying so.
        """
        from runner.shim import container_name
        from targets.local import LocalHandle, identify, read_started

        kind = str((self.described or {}).get("target") or "local")
        if kind == "local":
            deadline = time.monotonic() + LAUNCH_EVIDENCE_S
            started = read_started(self.exit_file)
            while started is None and time.monotonic() < deadline:
                time.sleep(0.05)
                started = read_started(self.exit_file)
            if started is None:
                self._finalize(
                    None,
                    failure=(
                        "the daemon stopped while launching this run and no process of it "
                        "was started; it is not started again (a run starts at most once): "
                        "submit it again"
                    ),
                )
                return
            keeper = identify(int(str(started["pid"])), float(str(started.get("create_time") or 0)))
            described = LocalHandle(
                keeper, self.exit_file, run_id=self.run_id, keeper=True
            ).describe()
        elif kind == "docker":
            described = {
                "kind": "docker",
                "container_id": container_name(self.run_id),
                "exit_file": str(self.exit_file),
                "run_id": self.run_id,
            }
        else:
            described = {"kind": "ssh", "run_id": self.run_id}
        self.described = {**described, "gpus": str((self.described or {}).get("gpus") or "")}
        self.store.update_run(self.run_id, handle=json.dumps(self.described))
        self._adopt()

    def _launch_spec(self, prepared: Any) -> Any:
        from targets.base import LaunchSpec

        remote = prepared is None  # the host prepares the interpreter and its variables
        # A container or a remote host starts from its own environment, not the daemon's.
        env = {} if remote or prepared.image else dict(os.environ)
        for var in ("RUNNER_DAEMON_IDLE_S",):
            env.pop(var, None)
        if not remote:
            env.update(prepared.env)
        env.update(self.definition.get("environmentVariables") or {})
        if not remote:
            client = str(self.daemon.client_dir())
            env["PYTHONPATH"] = os.pathsep.join(
                [client, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
            )
        env["PYTHONUNBUFFERED"] = "1"
        asked = self.definition.get("environmentVariables") or {}
        if self.daemon.scheduler.all_gpus and "CUDA_VISIBLE_DEVICES" not in asked and not remote:
            # Each run sees exactly the GPUs it was given (none if it asked for none),
            # unless its environment_variables name GPUs itself: that is asking to share.
            visible = ",".join(map(str, self.gpu_ids))
            env["CUDA_VISIBLE_DEVICES"] = visible
            env["NVIDIA_VISIBLE_DEVICES"] = visible or "void"
            # CUDA numbers GPUs fastest first unless told otherwise; NVML (whose indices
            # these are) numbers them in PCI bus order.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["RUNNER_RUN_ID"] = self.run_id
        env["RUNNER_WORKSPACE"] = str(self.ws.path)
        env["RUNNER_EXPERIMENT"] = self.row.experiment_name
        env["AZUREML_RUN_ID"] = self.run_id
        if "MLFLOW_TRACKING_URI" not in asked and not remote:
            # As Azure ML did: mlflow in the script records into this run's workspace.
            env["MLFLOW_TRACKING_URI"] = self.ws.get_mlflow_tracking_uri()
        command = self.definition.get("command")
        args = [str(a) for a in self.definition.get("arguments") or []]
        if command:
            if isinstance(command, str):
                argv = ["/bin/sh", "-c", command, "sh", *args]
            else:
                argv = [*command, *args]
        elif remote:
            argv = ["{python}", self.definition["script"], *args]
        else:
            argv = [*prepared.argv_prefix, prepared.python, self.definition["script"], *args]
        ranks: tuple[Any, ...] = ()
        distributed = self.definition.get("distributed")
        if distributed and not remote:
            argv, ranks = distributed_launch(distributed, argv, env, self.logs, self.run_id)
        return LaunchSpec(
            run_id=self.run_id,
            argv=argv,
            workdir=self.workdir,
            env=env,
            driver_log=self.logs / DRIVER_LOG,
            exit_file=self.exit_file,
            image=None if remote else prepared.image,
            gpu_ids=self.gpu_ids,
            grace_s=self._grace_s(),
            umask=self.daemon.run_umask,
            ranks=ranks,
        )

    def _grace_s(self) -> float:
        g = self.definition.get("cancelGraceSeconds")
        return 10.0 if g is None else float(g)

    def _start_remote(self) -> None:
        """Prepare and start the run on an SSH host, then follow it from here."""
        from runner.environment import Environment
        from targets.ssh import environment_request, sync_snapshot

        self.phase = "preparing"
        before = set(_BEFORE_LAUNCH)
        self._status(RunStatus.PREPARING, before)
        target = make_target(self.ws, self.definition)
        self._prep_log(f"connecting to {target.endpoint.user}@{target.endpoint.address}\n")
        session = target.open_session(self.daemon.client_dir())
        try:
            snap_id = self.definition.get("snapshotId")
            if snap_id:
                sent = sync_snapshot(
                    session, self.ws._blobs, load_snapshot(self.ws._blobs, snap_id)
                )
                self._prep_log(f"snapshot {snap_id[:12]}: {sent} bytes of contents sent\n")
            env_def = self.definition.get("environment")
            env = Environment.from_dict(env_def) if env_def else Environment.default()
            answer, _ = session.request({"op": "prepare", **environment_request(env)})
            self._prep_log(str(answer.get("log") or ""))
            if self._cancel_requested():
                session.close()
                return self._end_canceled_before_start()
            spec = self._launch_spec(None)
            if not self._begin_launch("ssh"):
                session.close()
                return self._end_canceled_before_start()
            session.request(
                {
                    "op": "launch",
                    "run_id": self.run_id,
                    "snapshot": snap_id,
                    "experiment": self.row.experiment_name,
                    "target": self.definition.get("target"),
                    "tags": self.store.get_tags(self.run_id),
                    "properties": self.store.get_properties(self.run_id),
                    "python": answer.get("python"),
                    "image": answer.get("image"),
                    "shm_size": answer.get("shm_size"),
                    "argv": list(spec.argv),
                    "env": dict(spec.env),
                }
            )
        except BaseException:
            session.close()
            raise
        self.handle = target.reattach({"run_id": self.run_id})
        self.described = {**self.handle.describe(), "gpus": ""}
        self.store.update_run(self.run_id, handle=json.dumps(self.described))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._follow(session)
        if not self._status(RunStatus.RUNNING, before, start=True):
            self.request_cancel(self.cancel_reason or "canceled while starting")
        self.phase = "running"
        self._watch()
        return None

    def _follow(self, session: Any = None) -> None:
        """Stream a remote run's log and records here; the link's state sets the status."""
        self.handle.follow(
            self.store,
            self.ws._blobs,
            self.logs / DRIVER_LOG,
            self.daemon.client_dir(),
            self._link_changed,
            session=session,
            heartbeat_s=heartbeat_s(),
        )

    def _link_changed(self, up: bool) -> None:
        if up:
            self.daemon._log(f"run {self.run_id}: the link to the host is back")
            self.phase = "running"  # the next heartbeat makes it Running again
            self.daemon.wake.set()
            return
        self.daemon._log(f"run {self.run_id}: lost the link to the host ({self.handle.error})")
        self.phase = "lost"
        self._status(
            RunStatus.NOT_RESPONDING,
            {RunStatus.RUNNING.value},
            details=f"lost the connection to the host: {self.handle.error}",
        )

    def _adopt(self) -> None:
        """Watch a run an earlier daemon launched."""
        target = make_target(self.ws, self.definition)
        described = self.described or {}
        self.handle = target.reattach(described)
        if described.get("kind") == "ssh":
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._follow()
        self.gpu_ids = self.described_gpus()
        self.daemon.scheduler.reserve(self.run_id, self.gpu_ids)
        # Launched, but the last daemon died before it recorded Running.
        self._status(RunStatus.RUNNING, _BEFORE_LAUNCH, start=True)
        self.phase = "running"
        self.daemon._log(f"re-adopted run {self.run_id} (pid {described.get('pid')})")
        self._watch(adopted=True)

    def _watch(self, adopted: bool = False) -> None:
        duration = self.definition.get("maxRunDurationSeconds")
        start = self.store.get_run(self.run_id)
        started = start.start_utc if start and start.start_utc else time.time()
        deadline = None if not duration else started + float(duration)
        reason: str | None = None
        noted = False
        while True:
            code = self.handle.wait(timeout_s=0.5)
            noted = noted or self._note_containment()
            if code is not None:
                break
            if self.daemon.stopping.is_set():
                return None  # the run goes on; the next daemon re-adopts it
            if not self.cancel_event.is_set():
                self._cancel_requested()
            elif self.cancel_thread is None:
                # Requested before the handle existed: kill the tree now.
                self.request_cancel(self.cancel_reason or "canceled by user")
            if deadline is not None and time.time() > deadline and not self.cancel_event.is_set():
                reason = f"exceeded max_run_duration_seconds={duration}"
                self.request_cancel(reason)
        if self.cancel_thread is not None:
            # The keeper may die on TERM before the script does: the run is over only
            # when the whole tree is gone (after the grace period, KILL).
            self.cancel_thread.join()
        else:
            # The script is done; stop what it left running in its session, as a
            # container's end would.
            self.handle.cancel(LEFTOVER_GRACE_S)
        if code == -1:  # gone without an exit code
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

    def _note_containment(self) -> bool:
        """Record how the run's processes are held together (property
        ``runner.containment``: ``cgroup`` or ``subreaper``) once its keeper says; True
        when there is nothing (more) to record."""
        if not getattr(self.handle, "keeper", False):
            return True
        from targets.local import read_started

        started = read_started(self.exit_file)
        if started is None:
            return False
        how = "cgroup" if started.get("cgroup") else "subreaper"
        with contextlib.suppress(Exception):  # never fail a run over a property
            self.store.add_properties(self.run_id, {"runner.containment": how})
        return True

    # -- endings ---------------------------------------------------------------------

    def _store_outputs(self) -> None:
        from runner.outputs import store_folder

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

    def _finalize(self, code: int | None, failure: str | None = None) -> None:
        """Store the run's outputs and logs, record its end, remove its working folder.

        When the outputs, logs or statuses cannot be stored (a full disk), the run ends
        Failed with that reason; its end is tried again until it is recorded (see
        ``_until_recorded``), and ``STORE_FAILURE`` keeps the reason meanwhile.
        """
        self.phase = "finalizing"
        canceled = self.cancel_event.is_set()
        kind = None
        earlier = self._read_store_failure()
        if earlier is not None:  # an earlier try (of this daemon or the last one) failed
            failure, kind = earlier, "store_failed"
        try:
            self._status(
                RunStatus.FINALIZING,
                {*_LIVE, RunStatus.CANCEL_REQUESTED.value, *_BEFORE_LAUNCH},
            )
            self._fetch_remote_outputs()
            self._store_outputs()
        except Exception as exc:  # the run fails, saying why; its end is recorded below
            if kind is None:
                failure, kind = self._could_not_store(exc), "store_failed"
        self._until_recorded(lambda: self._end(code, canceled, failure, kind))
        self._leave_workdir(kept=kind is None)
        (self.dir / STORE_FAILURE).unlink(missing_ok=True)

    def _snapshot(self) -> Snapshot | None:
        """The run's snapshot (its manifest read once: at launch and again at the end)."""
        snap_id = self.definition.get("snapshotId")
        if snap_id and self._loaded_snapshot is None:
            self._loaded_snapshot = load_snapshot(self.ws._blobs, snap_id)
        return self._loaded_snapshot

    def _leave_workdir(self, kept: bool) -> None:
        """The run is over: keep its working folder for the next run, or delete it."""
        snapshot = None
        if kept:
            with contextlib.suppress(Exception):  # (a broken snapshot: nothing to keep)
                snapshot = self._snapshot()
        if snapshot is None or not workcopy.keep(self.ws, snapshot, self.workdir):
            workcopy.forget(self.workdir)

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
                raise _Abandoned
            delay_s = min(delay_s * 2, END_RETRY_MAX_S)

    def _fetch_remote_outputs(self) -> None:
        fetch = getattr(self.handle, "fetch_outputs", None)
        if fetch is None:
            return
        try:
            fetch(self.workdir)
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

    def _finalize_after_crash(self) -> None:
        code = None
        from runner.shim import read_exit_file

        if (self.described or {}).get("kind") == "ssh":
            # Not finished: follow it again (to its exit code), then finalize.
            self._adopt()
            return
        code = read_exit_file(self.exit_file)
        if (self.described or {}).get("kind") == "docker":  # remove the finished container
            with contextlib.suppress(Exception):
                make_target(self.ws, self.definition).reattach(self.described or {}).cancel(1.0)
        self._finalize(code, failure=None if code is not None else "finalizing was interrupted")

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
        except _Abandoned:
            self.daemon._log(f"run {self.run_id}: its failure is left to the next daemon")
        finally:  # recorded, or left to the next daemon: either way nothing runs here
            workcopy.forget(self.workdir)


#: Seconds between samples of a run's ``sys/...`` metrics when nothing is configured.
DEFAULT_SYSTEM_METRICS_S = 10.0
#: The sampling interval: 0 switches sampling off, else seconds within this range.
SYSTEM_METRICS_RANGE_S = (0.05, 86400.0)
_SYSTEM_METRICS_RULE = (
    f"use 0 to switch system metrics off, or seconds from {SYSTEM_METRICS_RANGE_S[0]:g} "
    f"to {SYSTEM_METRICS_RANGE_S[1]:g}"
)
_MAX_CONCURRENT_RULE = "use a whole number >= 0 (0: no limit)"


@dataclass
class Settings:
    """Daemon settings: ``WS/daemon/settings.json``, written by ``runner daemon start``."""

    gpus: list[int]  #: GPU indices runs may use
    max_concurrent: int | None  #: runs at once (None: no limit)
    system_metrics_s: float  #: seconds between samples of sys/... metrics (0: off)


def default_max_concurrent() -> int | None:
    """Runs at once when nothing is configured: no limit, as azureml's local runs.

    GPU runs still wait for their GPUs. A fixed default would deadlock a parent that
    waits for more children than there are slots.
    """
    return None


def check_system_metrics_s(value: object, source: str) -> float:
    """Seconds between system-metric samples (0: off), or ConfigError naming ``source``.

    NaN, infinities, negatives and tiny intervals are refused: the daemon's sampling loop
    would spin (NaN, 1e-9) or never sample.
    """
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip() or "0")
        except ValueError:
            number = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    low, high = SYSTEM_METRICS_RANGE_S
    if number is None or not (number == 0 or low <= number <= high):
        raise ConfigError(f"{source} is {value!r}, which is not valid; {_SYSTEM_METRICS_RULE}")
    return number


def check_max_concurrent(value: object, source: str) -> int | None:
    """Runs at once (None: no limit, written as 0), or ConfigError naming ``source``."""
    number: int | None = None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        number = value
    if number is None:
        raise ConfigError(f"{source} is {value!r}, which is not valid; {_MAX_CONCURRENT_RULE}")
    return number or None


def settings_path(ws_path: Path) -> Path:
    """``WS/daemon/settings.json``."""
    return daemon_client.daemon_dir(ws_path) / "settings.json"


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings file as a dict ({} when there is none); ConfigError when it is garbled."""
    fix = "fix it, or delete it to use the defaults, then run `runner daemon start` again"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"daemon settings file {path} is not UTF-8 text; {fix}") from None
    except OSError as exc:
        raise ConfigError(
            f"daemon settings file {path} cannot be read ({exc.strerror}); {fix}"
        ) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"daemon settings file {path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"daemon settings file {path} holds a {type(data).__name__}, not a JSON object; {fix}"
        )
    return data


def load_settings(ws: Workspace, *, strict: bool = False) -> Settings:
    """Settings from the settings file, then ``RUNNER_*`` variables, then defaults.

    ``strict`` (``runner daemon start``): a garbled file or a bad value is a ConfigError
    naming it and the valid range. Otherwise (the daemon, which may have been started on
    demand by a submit) each problem is written to the daemon log and the default is used
    instead: a daemon that died over its settings would leave every submit waiting for it.
    """
    path = settings_path(ws.path)
    try:
        data = read_settings_file(path)
    except ConfigError as exc:
        if strict:
            raise
        sys.stderr.write(f"settings: {exc}; using the defaults instead\n")
        data = {}
    return settings_from(data, path, strict=strict)


def settings_from(data: dict[str, Any], path: Path, *, strict: bool = False) -> Settings:
    """Settings from the settings file's ``data`` (read from ``path``), then ``RUNNER_*``
    variables, then defaults; ``strict`` as for ``load_settings``."""
    problems: list[ConfigError] = []
    gpus = _load_gpus(data, quiet=strict)

    def value(key: str, env: str, default: object) -> tuple[object, str]:
        if key in data:
            return data[key], f"{key} in {path}"
        if os.environ.get(env, "") != "":
            return os.environ[env], env
        return default, "the default"

    mc, mc_source = value("max_concurrent", "RUNNER_MAX_CONCURRENT", None)
    max_concurrent = default_max_concurrent()
    if mc not in (None, ""):
        try:
            max_concurrent = check_max_concurrent(mc, mc_source)
        except ConfigError as exc:
            problems.append(exc)
    sm, sm_source = value("system_metrics_s", "RUNNER_SYSTEM_METRICS_S", DEFAULT_SYSTEM_METRICS_S)
    system_metrics_s = DEFAULT_SYSTEM_METRICS_S
    try:
        system_metrics_s = check_system_metrics_s(sm, sm_source)
    except ConfigError as exc:
        problems.append(exc)
    if problems and strict:
        raise problems[0]
    for problem in problems:
        sys.stderr.write(f"settings: {problem}; using the default instead\n")
    return Settings(gpus=gpus, max_concurrent=max_concurrent, system_metrics_s=system_metrics_s)


def _load_gpus(data: dict[str, Any], quiet: bool) -> list[int]:
    from runner import gpus as gpu_mod

    found = gpu_mod.discover()
    spec = data.get("gpus", os.environ.get("RUNNER_GPUS", "all"))
    text = (
        spec
        if isinstance(spec, str)
        else ",".join(map(str, spec))
        if isinstance(spec, list)
        else str(spec)
    )
    try:
        return gpu_mod.parse_gpu_list(text, found)
    except ValueError as exc:
        # A GPU the settings name is gone (or the text is bad): keep those of the named
        # ones that remain, never GPUs the settings left out (they may be someone else's).
        named = {int(p) for p in text.split(",") if p.strip().isdigit()}
        gpus = sorted(named & {g.index for g in found})
        if not quiet:
            sys.stderr.write(f"settings: {exc}; using GPUs {gpus}\n")
        return gpus


def _groups_of(pid: int) -> set[int]:
    """The supplementary groups of a process (from /proc), empty if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def prepare_environment(ws: Workspace, env: Any, definition: dict[str, Any], log: Path) -> Any:
    """The PreparedEnvironment for a run's environment definition."""
    from environments.selection import builder_for

    return builder_for(env, definition.get("python")).prepare(env, log)


def distributed_launch(
    distributed: dict[str, Any],
    argv: list[str],
    env: dict[str, str],
    logs: Path,
    run_id: str,
) -> tuple[list[str], tuple[Any, ...]]:
    """(argv, ranks) of a distributed run on this machine.

    PyTorch: N processes of the same argv, kept together by the run's keeper, with the
    variables torchrun sets (and the AZ_BATCH* names of azureml's PyTorch jobs); every
    rank sees all of the run's GPUs, as under torchrun, and takes ``cuda:LOCAL_RANK``.
    MPI: one process, ``mpirun -np N`` before the argv (mpirun sets OMPI_*/PMI_*).
    """
    from targets.base import RankSpec

    count = int(distributed.get("processCount") or 1)
    if distributed.get("kind") == "mpi":
        mpirun = shutil.which("mpirun", path=env.get("PATH"))
        if mpirun is None:
            raise RunnerError(MPIRUN_MISSING)
        if os.geteuid() == 0:  # Open MPI refuses root unless told (as in containers)
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        # more ranks than cores is the user's choice (Open MPI refuses it by default)
        env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
        return [mpirun, "-np", str(count), *argv], ()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))  # a free port now, as torchrun's standalone mode picks it
        port = str(s.getsockname()[1])
    common = {
        "WORLD_SIZE": str(count),
        "LOCAL_WORLD_SIZE": str(count),
        "NODE_RANK": "0",
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "1",
        "ROLE_NAME": "default",
        "ROLE_WORLD_SIZE": str(count),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "TORCHELASTIC_RUN_ID": run_id,
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        # azureml v1's names for the same facts
        "AZ_BATCH_MASTER_NODE": f"127.0.0.1:{port}",
        "AZ_BATCHAI_MPI_MASTER_NODE": "127.0.0.1",
        "AZ_BATCHAI_PYTORCH_INIT_METHOD": f"tcp://127.0.0.1:{port}",
        "AZ_BATCHAI_TASK_INDEX": "0",
    }
    if count > 1 and "OMP_NUM_THREADS" not in env:
        common["OMP_NUM_THREADS"] = "1"  # torchrun's default: N ranks do not oversubscribe
    ranks = tuple(
        RankSpec(
            rank=rank,
            env={**common, "RANK": str(rank), "LOCAL_RANK": str(rank), "ROLE_RANK": str(rank)},
            log=logs / f"{Path(DRIVER_LOG).stem}_{rank}{Path(DRIVER_LOG).suffix}",
        )
        for rank in range(count)
    )
    return argv, ranks


def make_target(ws: Workspace, definition: dict[str, Any], keepers: Any = None) -> Any:
    """The Target a run definition names (local runs take their keepers from ``keepers``)."""
    from targets.local import LocalTarget

    name = definition.get("target") or "local"
    if name != "local":
        from runner.compute import ComputeTarget

        target = ComputeTarget(ws, name)
        if target.type != "remote":
            raise RunnerError(f"compute target {name!r} ({target.type}) cannot run jobs yet")
        from targets.ssh import SshTarget

        return SshTarget(ws, name, target.config)
    docker = (definition.get("environment") or {}).get("docker") or {}
    if docker.get("enabled"):
        from targets.docker import DockerTarget

        return DockerTarget(shm_size=docker.get("shmSize"))
    return LocalTarget(keepers)


# -- process entry -------------------------------------------------------------------


#: How long a new daemon keeps trying for the workspace lock before it concludes that
#: another daemon holds it. Clients probe the lock by taking it for an instant
#: (daemon_client._lock_held); a daemon that met such a probe and gave up at once would
#: exit silently while its starter waited for it.
LOCK_PATIENCE_S = 1.0


def _take_lock(ws: Workspace) -> int | None:
    fd = access.create_file(
        daemon_client.daemon_dir(ws.path) / "daemon.lock", ws._access, os.O_RDWR
    )
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            os.close(fd)
            return None
        return fd


def run_daemon(ws_path: str, *, detach: bool, idle_exit_s: float | None) -> int:
    """Run the daemon for a workspace in this process (after detaching if asked).

    Nothing of the workspace is opened before the fork: an SQLite connection (and its
    locks) must never cross one (see runner.store).
    """
    root = Path(ws_path).expanduser().resolve()
    if not (root / "workspace.json").is_file():
        Workspace(root)  # raises NotFoundError with the fix
    policy = access.access_of(root)
    # Everything the daemon creates (logs, run folders, environments) is private, or the
    # shared group's; the runs themselves get back the umask of the user who started it.
    run_umask = os.umask(policy.umask)
    folder = daemon_client.daemon_dir(root)
    access.make_dirs(folder, policy)
    if detach:
        if os.fork() > 0:
            os._exit(0)  # the starter returns at once; the daemon lives on, re-parented
        os.setsid()
        log = access.create_file(folder / "daemon.log", policy, os.O_WRONLY | os.O_APPEND)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
    lifecycle.IN_DAEMON = True
    ws = Workspace(root)
    lock = _take_lock(ws)
    if lock is None:
        if detach:
            sys.stderr.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}: another daemon "
                "holds the workspace lock: exiting\n"
            )
        return 0  # another daemon serves this workspace
    # Written whole before the socket is bound: clients check the socket's peer against it.
    access.write_private(
        folder / "daemon.json",
        json.dumps(
            {
                "pid": os.getpid(),
                "python": sys.executable,
                "pythonpath": os.environ.get("PYTHONPATH", ""),
                "started_utc": time.time(),
            }
        ),
        policy,
    )
    daemon = Daemon(ws, idle_exit_s)
    daemon.run_umask = run_umask

    def on_term(signum: int, frame: Any) -> None:
        daemon.stopping.set()
        daemon.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        daemon.serve()
    finally:
        began = time.monotonic()
        daemon.keepers.close()
        with contextlib.suppress(Exception):
            daemon.release_claims()
        ws._store.close()
        daemon._log(f"daemon {os.getpid()} exits ({time.monotonic() - began:.2f} s to let go)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.daemon run WORKSPACE [--detach] [--idle-exit S]``."""
    parser = argparse.ArgumentParser(prog="python -m runner.daemon")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the daemon of a workspace")
    p.add_argument("workspace")
    p.add_argument("--detach", action="store_true")
    p.add_argument("--idle-exit", type=float, default=None, help="exit after S idle seconds")
    args = parser.parse_args(argv)
    idle = args.idle_exit if args.idle_exit and args.idle_exit > 0 else None
    return run_daemon(args.workspace, detach=args.detach, idle_exit_s=idle)


if __name__ == "__main__":
    raise SystemExit(main())
