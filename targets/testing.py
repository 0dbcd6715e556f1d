"""FakeTarget: a pretend remote host, supported for tests (like httpx's MockTransport).

It runs a run as another host would: on its own copy of the source in a folder of its
own ("the host", ``WS/fake-host/<run id>``), with nothing shared with the supervisor but
what goes through the Target interface: the driver log streams back through
``RunEvents``, and ./outputs come back with ``collect``. It needs no daemon, engine or
sshd, so a target being written (Slurm, Ray) and the supervisor itself can be tested
against the contract suite (``tests/targets/contract.py``) anywhere.

It is a real process on this machine, in its own session, so cancel, reattach and
recover are the real thing; what is pretended is the distance. The run's records go
straight to the workspace (a real host would journal them).

Use it: ``RUNNER_TARGETS=fake=targets.testing:KIND`` in the environment of the process
that submits (the daemon it starts inherits it), then
``ComputeTarget.attach(ws, "pretend", FakeTarget.attach_configuration())`` and submit
with ``compute_target="pretend"``.

Like a mock transport, it can be told to misbehave, to test what the supervisor does
when a target does (``attach_configuration(launch_error=..., link_down_s=...)``): a
launch that fails, a link to the host that drops and comes back while the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from environments.base import PreparedEnvironment
from runner.definition import RunDefinition
from runner.errors import TargetUnavailableError
from runner.service.proc import ProcessId, terminate_tree
from runner.shim import read_exit_file
from runner.snapshot import materialize
from targets.base import Job, LaunchSpec, LocalTree, Place, ReportedExit, RunEvents, TargetKind

if TYPE_CHECKING:
    from runner.environment import Environment
    from runner.workspace import Workspace

#: The compute type FakeTarget registers as (``RUNNER_TARGETS=fake=targets.testing:KIND``).
COMPUTE_TYPE = "fake"
#: Runs the script under sh, writing its exit code the way a keeper does.
_WRAPPER = 'cd "$1" && shift && "$@"; code=$?; echo "$code" > "$RUNNER_FAKE_EXIT"; exit "$code"'


@dataclass(frozen=True)
class Misbehaviour:
    """What a FakeTarget is told to get wrong (nothing, by default)."""

    #: ``launch`` raises TargetUnavailableError with this message
    launch_error: str | None = None
    #: (after, for): seconds into the run the link to the host drops, and how long it
    #: stays down (the run goes on meanwhile, as on a real host)
    link_down_s: tuple[float, float] | None = None


class FakeAttachConfiguration:
    """What ``ComputeTarget.attach`` records for a FakeTarget."""

    def __init__(self, misbehaviour: Misbehaviour) -> None:
        self.misbehaviour = misbehaviour

    def to_config(self, workspace: Workspace, name: str) -> tuple[str, dict[str, Any]]:
        """(compute type, JSON configuration)."""
        return COMPUTE_TYPE, {
            "host_dir": str(Path(workspace.path) / "fake-host"),
            "misbehaviour": asdict(self.misbehaviour),
        }


class FakeTarget:
    """A pretend remote host in a folder of this machine."""

    kind: ClassVar[str] = "fake"
    shares_host: ClassVar[bool] = False

    def __init__(self, host_dir: Path, client_dir: Path | None, told: Misbehaviour) -> None:
        self.host_dir = host_dir
        self.client_dir = client_dir
        self.misbehaviour = told

    @staticmethod
    def attach_configuration(
        launch_error: str | None = None, link_down_s: tuple[float, float] | None = None
    ) -> FakeAttachConfiguration:
        """For ``ComputeTarget.attach(ws, name, FakeTarget.attach_configuration())``;
        the arguments make it misbehave (see ``Misbehaviour``)."""
        return FakeAttachConfiguration(Misbehaviour(launch_error, link_down_s))

    def _run_dir(self, run_id: str) -> Path:
        return self.host_dir / run_id

    def check(self) -> None:
        """The pretend host is always there."""

    def check_environment(self, env: Environment) -> None:
        """Any environment: the pretend host runs everything with this Python."""

    def prepare(self, job: Job) -> PreparedEnvironment:
        """This interpreter (``launch`` puts runner's in-run client on its path)."""
        with open(job.prep_log, "a", encoding="utf-8") as log:
            log.write(f"fake host: python {sys.executable}\n")
        return PreparedEnvironment(python=sys.executable)

    def stage(self, job: Job, workdir: Path) -> str:
        """The snapshot, materialized on the pretend host."""
        host = self._run_dir(job.run_id) / "work"
        shutil.rmtree(host, ignore_errors=True)
        host.mkdir(parents=True)
        if job.snapshot is not None:
            materialize(job.snapshot, job.blobs, host)
        (host / "outputs").mkdir(exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        return f"fake host: staged {host}"

    def launch(self, spec: LaunchSpec, events: RunEvents) -> FakeHandle:
        """Start the run's process on the pretend host, in a session of its own."""
        if self.misbehaviour.launch_error is not None:
            raise TargetUnavailableError(self.misbehaviour.launch_error)
        run_dir = self._run_dir(spec.run_id)
        env = {**os.environ, **spec.env, "RUNNER_FAKE_EXIT": str(run_dir / "exit_code")}
        if self.client_dir is not None:  # as a host puts its copy of runner's client
            env["PYTHONPATH"] = str(self.client_dir)
        with open(run_dir / "driver.log", "ab") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _WRAPPER, "sh", str(run_dir / "work"), *spec.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        handle = FakeHandle(run_dir, ProcessId.of(proc.pid), events, proc)
        if self.misbehaviour.link_down_s is not None:
            handle.drop_link(*self.misbehaviour.link_down_s)
        return handle

    def recover(self, job: Job) -> dict[str, str] | None:
        """Nothing recorded where a launch began: the pretend host never keeps a trace."""
        return None

    def reattach(self, described: Mapping[str, str], events: RunEvents) -> FakeHandle:
        """Follow a run launched by an earlier supervisor."""
        pid = ProcessId(int(described["pid"]), float(described["create_time"]))
        return FakeHandle(Path(described["host_run_dir"]), pid, events)

    def close(self) -> None:
        """Nothing held."""


class FakeHandle(ReportedExit):
    """A run on the pretend host; its driver log streams to ``events.driver_log``."""

    def __init__(
        self,
        run_dir: Path,
        pid: ProcessId,
        events: RunEvents,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._init_exit()
        self.run_dir, self.run_id = run_dir, run_dir.name  # the host's folder is named by the run
        self.pid = pid
        self.events = events
        self._popen = popen
        threading.Thread(target=self._stream, name=f"fake-{self.run_id}", daemon=True).start()

    def drop_link(self, after_s: float, for_s: float) -> None:
        """Report the link to the host down ``after_s`` into the run, and back up
        ``for_s`` later (the run goes on meanwhile)."""

        def flap() -> None:
            if self._exited.wait(after_s):
                return
            self.events.link_changed(False, "the fake host's link was cut on purpose")
            if not self._exited.wait(for_s):
                self.events.link_changed(True, None)

        threading.Thread(target=flap, name=f"fake-link-{self.run_id}", daemon=True).start()

    def _alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return self.pid.is_alive()

    def _stream(self) -> None:
        """Copy the host's driver log here as it grows, until the process is gone."""
        source = self.run_dir / "driver.log"
        dest = self.events.driver_log
        dest.touch()  # there even when the run printed nothing
        while True:
            alive = self._alive()
            have = dest.stat().st_size if dest.exists() else 0
            with contextlib.suppress(FileNotFoundError), open(source, "rb") as f:
                f.seek(have)
                chunk = f.read()
                if chunk:
                    with open(dest, "ab") as out:
                        out.write(chunk)
            if not alive:
                code = read_exit_file(self.run_dir / "exit_code")
                self._report_exit(-1 if code is None else code)
                return
            self._exited.wait(0.05)

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the process group, KILL what is left after ``grace_s``."""
        if self._exited.is_set():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid.pid, signal.SIGTERM)
        terminate_tree(self.pid, grace_s, session=self.pid.pid)
        self._exited.wait(grace_s + 5)

    def describe(self) -> dict[str, str]:
        """Enough to follow the run again after a restart."""
        return {
            "kind": "fake",
            "pid": str(self.pid.pid),
            "create_time": repr(self.pid.create_time),
            "host_run_dir": str(self.run_dir),
            "run_id": self.run_id,
        }

    def collect(self, workdir: Path) -> None:
        """Copy ./outputs from the pretend host, then remove the run's folder there."""
        outputs = self.run_dir / "work" / "outputs"
        if outputs.is_dir():
            shutil.copytree(outputs, workdir / "outputs", dirs_exist_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def properties(self) -> dict[str, str] | None:
        """Where it ran."""
        return {"runner.fake_host": str(self.run_dir.parent)}

    def local_tree(self) -> LocalTree | None:
        """None: a remote host's processes are not sampled from here."""
        return None


def _for_run(place: Place, definition: RunDefinition) -> FakeTarget:
    host = Path(str(place.config.get("host_dir") or Path(place.ws.path) / "fake-host"))
    told = dict(place.config.get("misbehaviour") or {})
    down = told.get("link_down_s")
    misbehaviour = Misbehaviour(
        launch_error=told.get("launch_error"),
        link_down_s=(float(down[0]), float(down[1])) if down else None,
    )
    return FakeTarget(host, place.client_dir, misbehaviour)


#: What the registry loads for compute type ``fake``.
KIND = TargetKind(make=_for_run)
