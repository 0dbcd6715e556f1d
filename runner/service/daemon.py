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
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runner import access, daemon_client, lifecycle
from runner.definition import RunDefinition
from runner.errors import StoreError
from runner.keeper import remove_empty_cgroups
from runner.liveness import heartbeat_s
from runner.run import RUN_TYPE_SCRIPT
from runner.service import registry
from runner.service.proc import groups_of
from runner.service.scheduler import Scheduler
from runner.service.settings import load_settings
from runner.service.supervisor import RunSupervisor
from runner.service.sysmetrics import Sampler
from runner.status import BEFORE_LAUNCH_VALUES, SUPERVISED_VALUES, RunStatus
from runner.store import Store
from runner.workspace import Workspace, declare_mlflow_plugin
from targets.keepers import KeeperFactory

_ACTIVE = SUPERVISED_VALUES
_BEFORE_LAUNCH = BEFORE_LAUNCH_VALUES
#: Connections served at once; more are answered "busy" (each holds a thread).
MAX_CONNECTIONS = 64
#: Seconds a client has to send its request once connected.
REQUEST_READ_S = 5.0


class Daemon:
    """Supervises the submitted runs of one workspace."""

    def __init__(self, ws: Workspace, idle_exit_s: float | None) -> None:
        self.ws = ws
        self.store: Store = ws.store
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
        self.keepers = KeeperFactory()

    # -- the in-run client ------------------------------------------------------------

    def client_dir(self) -> Path:
        """A folder holding a copy of the runner package, put on the runs' PYTHONPATH.

        A copy (not the installed location) so that a run in another interpreter gets
        runner's standard-library client and nothing else from our site-packages.
        """
        if self._client_dir is not None:
            return self._client_dir
        src = Path(__file__).resolve().parent.parent  # runner/
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
        threading.Thread(target=self._sweep_leftovers, name="sweep", daemon=True).start()
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

    def _sweep_leftovers(self) -> None:
        """Remove what crashed runs left (containers...) that no active run owns: each kind
        of target sweeps its own (``TargetKind.sweep``)."""
        marks = ",".join("?" * len(_ACTIVE))

        def active() -> dict[str, dict[str, str]]:
            rows = self.store.query(
                f"SELECT id, handle FROM runs WHERE status IN ({marks})",  # noqa: S608
                _ACTIVE,
            )
            return {run_id: json.loads(handle) if handle else {} for run_id, handle in rows}

        for name, kind in registry.kinds().items():
            if kind.sweep is None:
                continue
            try:
                removed = kind.sweep(self.ws.path, active)
            except Exception as exc:  # cleaning must never stop the daemon
                self._log(f"leftover cleanup of {name} targets failed: {exc}")
                continue
            if removed:
                self._log(
                    f"removed {len(removed)} leftover(s) of {name} runs: {', '.join(removed)}"
                )

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
        if group is not None and (gid == group or group in groups_of(pid)):
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
                definition = RunDefinition.from_json(row.definition)
                if not definition.supervised or not self._claim(run_id, supervisor):
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
        if not sup.shares_host():
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
        ws.store.close()
        daemon._log(f"daemon {os.getpid()} exits ({time.monotonic() - began:.2f} s to let go)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.service.daemon run WORKSPACE [--detach] [--idle-exit S]``."""
    parser = argparse.ArgumentParser(prog="python -m runner.service.daemon")
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
