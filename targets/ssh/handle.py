"""A run on an SSH host, followed from here: its driver log and journal stream back
(``RunEvents``), heartbeats tell the link is up, and the run goes on over there while
the link is down."""

from __future__ import annotations

import contextlib
import io
import queue
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import TargetUnavailableError
from runner.liveness import heartbeat_s
from targets.base import LocalTree, ReportedExit, RunEvents
from targets.ssh.session import AgentSession, RemoteError

if TYPE_CHECKING:
    from targets.ssh import SshTarget


class SshHandle(ReportedExit):
    """A run on a host: follows its log and journal into this machine's history from the
    moment it is made, reconnecting when the link drops."""

    def __init__(
        self,
        target: SshTarget,
        run_id: str,
        events: RunEvents,
        session: AgentSession | None = None,
    ) -> None:
        self.target = target
        self.run_id = run_id
        self.events = events
        self._init_exit()
        self._session = session
        self.link_up = True
        self.error: str | None = None
        self._thread = threading.Thread(
            target=self._follow_loop, name=f"ssh-follow-{run_id}", daemon=True
        )
        self._thread.start()

    # -- following -----------------------------------------------------------------------

    def _follow_loop(self) -> None:
        events = self.events
        hb_s = heartbeat_s()
        delay = 0.5
        while not self._exited.is_set():
            session = self._session
            try:
                if session is None:
                    session = self.target.open_session()
                    self._session = session
                session.send(self._follow_request(hb_s))
                for header, payload in self._frames(session, hb_s * 3 + 2):
                    if not self.link_up:
                        self.link_up = True
                        events.link_changed(True, None)
                    delay = 0.5
                    self._take(header, payload)
                    if self._exited.is_set():
                        return
                raise TargetUnavailableError("no heartbeat from the host")
            except RemoteError as exc:  # not the link: trying again would not help
                self.error = str(exc)
                self._report_exit(-1)
                return
            except (TargetUnavailableError, OSError, ValueError) as exc:
                if session is not None:
                    session.kill()
                    with contextlib.suppress(Exception):
                        session.close()
                self._session = None
                if self._exited.is_set():
                    return
                self.error = str(exc)
                if self.link_up:
                    self.link_up = False
                    events.link_changed(False, self.error)
                self._exited.wait(delay)
                delay = min(delay * 2, 5.0)

    def _follow_request(self, hb_s: float) -> dict[str, Any]:
        """Follow the run from what is here already: the log's size, the journal's offset."""
        log = self.events.driver_log
        return {
            "op": "follow",
            "run_id": self.run_id,
            "log": log.stat().st_size if log.exists() else 0,
            "journal": self.events.journal_offset(),
            "hb": hb_s,
        }

    def _frames(
        self, session: AgentSession, timeout_s: float
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Frames of the session; ends when none came for ``timeout_s`` (the link is gone)."""
        frames: queue.Queue[tuple[dict[str, Any], bytes] | BaseException] = queue.Queue()

        def reader() -> None:
            try:
                while True:
                    frame = session.receive()
                    frames.put(frame)
                    if frame[0].get("s") == "exit":
                        return  # what follows answers the supervisor's own requests
            except BaseException as exc:  # the end of the session, whatever ended it
                frames.put(exc)

        threading.Thread(target=reader, daemon=True).start()
        while True:
            try:
                item = frames.get(timeout=timeout_s)
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item[0].get("s") == "exit":
                return

    def _take(self, header: dict[str, Any], payload: bytes) -> None:
        stream = header.get("s")
        driver_log = self.events.driver_log
        if stream == "log":
            size = driver_log.stat().st_size if driver_log.exists() else 0
            offset = int(header["o"])
            if offset + len(payload) > size:  # resent bytes we have are skipped
                with open(driver_log, "ab") as f:
                    f.write(payload[max(0, size - offset) :])
        elif stream == "journal":
            self.events.apply_journal(int(header["o"]), payload)
        elif stream == "blob":
            self.events.put_blob(payload)
        elif stream == "exit":
            code = header.get("code")
            if header.get("missing"):
                self.error = "the run's folder on the host is gone"
            self._report_exit(-1 if code is None else int(code))

    # -- RunHandle -----------------------------------------------------------------------

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the run's session on the host, wait ``grace_s``, KILL the rest.

        Over a new connection, so it works while the follower is cut off; retried until
        the host answers or the run is known to have ended.
        """
        if self._exited.is_set():
            return  # the agent already ended what the script left behind
        command = self.target.agent_command(
            self.target.cancel_command, self.run_id, str(float(grace_s))
        )
        delay = 0.5
        while not self._exited.is_set():
            try:
                proc = self.target.conn.run(command, timeout_s=grace_s + 60)
                if proc.returncode == 0:
                    return
            except (TargetUnavailableError, OSError, subprocess.TimeoutExpired):
                pass
            self._exited.wait(delay)
            delay = min(delay * 2, 5.0)

    def collect(self, workdir: Path) -> None:
        """Copy the run's ./outputs and ./logs from the host into ``workdir``, then remove
        the run's folder there."""
        dest = workdir
        session = self._session
        if session is None:
            session = self.target.open_session()
        try:
            _, data = session.request({"op": "outputs", "run_id": self.run_id})
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                if hasattr(tarfile, "data_filter"):  # refuses links and paths that escape
                    tar.extractall(dest, filter="data")
                else:  # pragma: no cover - Python before 3.11.4
                    tar.extractall(dest)  # noqa: S202
            session.request({"op": "cleanup", "run_id": self.run_id})
        finally:  # the run has ended: its session is done
            session.close()
            self._session = None

    def describe(self) -> dict[str, str]:
        """Enough to follow the run again after a restart."""
        return {"kind": "ssh", "target": self.target.name, "run_id": self.run_id}

    def properties(self) -> dict[str, str] | None:
        """Nothing beyond what the run's journal brings."""
        return {}

    def local_tree(self) -> LocalTree | None:
        """None: the run's processes are on the host."""
        return None
