"""The target interface: few methods, values in and out (httpx's transport model).

A target is a kind of place where runs execute. The supervisor (runner/service/) carries
every run through the same steps whatever its target: ``prepare`` (the environment,
where the run will execute), ``stage`` (the run's source there), ``launch`` (a
``RunHandle``), watch the handle, ``collect`` (./outputs back here), finalize. Targets
that do not share this machine's file system report logs, records and the state of the
link through ``RunEvents``. Runs outlive their submitter: the supervisor stores
``describe()`` and a restarted one ``reattach``es. Handles are never pickled.

Adding a target: a module (or package) under ``targets/`` that implements ``Target``
and ``RunHandle``, one entry in ``runner/service/registry.py`` (or an entry point of the
group ``runner.targets``), and ``tests/targets/contract.py`` run with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from environments.base import PreparedEnvironment
    from runner.artifacts import BlobStore
    from runner.definition import RunDefinition
    from runner.environment import Environment
    from runner.service.proc import ProcessId
    from runner.snapshot import Snapshot
    from runner.workspace import Workspace
    from targets.keepers import KeeperFactory


@dataclass(frozen=True, slots=True)
class RankSpec:
    """One process of a distributed run (the run's argv, with these additions)."""

    rank: int  #: RANK of the process
    env: Mapping[str, str]  #: added to LaunchSpec.env (RANK, LOCAL_RANK, MASTER_PORT...)
    log: Path  #: its stdout and stderr (``70_driver_log_<rank>.txt``)


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything a target needs to start one run."""

    run_id: str  #: the run's id
    argv: Sequence[str]  #: [python, script, *args], never a shell string
    workdir: Path  #: the run's fresh copy of the snapshot; ./outputs and ./logs inside
    env: Mapping[str, str]  #: the whole environment of the process
    driver_log: Path  #: stdout and stderr, interleaved, in order
    exit_file: Path  #: where the exit code is written when the process ends
    image: str | None = None  #: set when the environment is a docker image
    gpu_ids: tuple[int, ...] = field(default=())  #: GPUs reserved for the run
    grace_s: float = 10.0  #: on cancel, seconds between SIGTERM and SIGKILL
    #: the script's umask (the daemon's own is private); None: the launcher's
    umask: int | None = None
    #: a distributed run's processes, all kept together (any failing fails the run);
    #: empty: the usual single process
    ranks: tuple[RankSpec, ...] = field(default=())
    #: the run's experiment, tags and properties: for hosts that keep records of their own
    experiment: str = ""
    tags: Mapping[str, str | None] = field(default_factory=dict)
    properties: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Job:
    """What a target is told of the run it prepares and stages."""

    run_id: str
    definition: RunDefinition  #: what was submitted
    environment: Environment  #: the run's environment (the default one when none was set)
    snapshot: Snapshot | None  #: the run's source, None for a run without one
    workspace: Workspace  #: the run's workspace
    blobs: BlobStore  #: where the snapshot's contents are
    prep_log: Path  #: progress lines go here (``55_environment_prep_log.txt``)
    exit_file: Path  #: where the run's exit code is written


@dataclass(frozen=True, slots=True)
class LocalTree:
    """The root of a run's processes on this machine (for CPU and memory samples)."""

    root: ProcessId
    root_is_runner: bool  #: the root is runner's keeper, not the run's own process


class RunEvents(Protocol):
    """What a run on a host that does not share this file system reports back."""

    @property
    def driver_log(self) -> Path:
        """This machine's copy of the driver log (appended to)."""

    def journal_offset(self, stream: str = "journal") -> int:
        """How much of the run's journal is already applied here (``stream``: which one,
        for a run whose ranks each keep one: ``journal``, ``journal_1``...)."""

    def apply_journal(self, offset: int, payload: bytes, stream: str = "journal") -> None:
        """Apply the run's records (metrics, tags, files...) journaled from ``offset``."""

    def put_blob(self, data: bytes) -> None:
        """Keep the contents of a file the journal refers to."""

    def link_changed(self, up: bool, error: str | None) -> None:
        """The link to the host went down (the run goes on there) or came back."""

    def queued(self, why: str) -> None:
        """The run waits in the target's own queue (a cluster's scheduler): Queued, ``why``
        in its details, until ``started``. Said during ``launch`` (or ``reattach``), it keeps
        the supervisor from marking the run Running itself."""

    def started(self) -> None:
        """The run's process started (after ``queued``), or runs again (after ``stalled``)."""

    def stalled(self, why: str) -> None:
        """The run is held up where it runs (suspended, preempted): NotResponding."""

    def ending(self, reason: str, *, canceled: bool = False, kind: str = "target") -> None:
        """How the run is ending, beyond its exit code: ``canceled`` (by someone other than
        runner), or failed for ``reason`` (``kind`` names the cause in the run's error)."""


class RunHandle(Protocol):
    """A launched run's process (or container, or remote process)."""

    def poll(self) -> int | None:
        """The exit code, or None while it runs (-1: ended, its code unknown)."""

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code; None if ``timeout_s`` passed first."""

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the whole tree, wait ``grace_s``, KILL the rest; idempotent."""

    def describe(self) -> dict[str, str]:
        """JSON-safe description, enough to ``reattach`` later."""

    def collect(self, workdir: Path) -> None:
        """Bring the run's ./outputs and ./logs into ``workdir`` (where they are not)."""

    def properties(self) -> dict[str, str] | None:
        """Properties the target learned about the run, to record once; None: not yet."""

    def local_tree(self) -> LocalTree | None:
        """The run's processes on this machine; None when they are elsewhere (or gone)."""


class ReportedExit:
    """Part of a handle whose exit code one of its threads reports (a host's agent, a
    follower): ``poll`` and ``wait`` over an Event. Call ``_init_exit`` in ``__init__``."""

    _code: int | None
    _exited: threading.Event

    def _init_exit(self) -> None:
        self._code = None
        self._exited = threading.Event()

    def _report_exit(self, code: int) -> None:
        self._code = code
        self._exited.set()

    def poll(self) -> int | None:
        """The exit code once it was reported (-1: ended, its code unknown)."""
        return self._code if self._exited.is_set() else None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code; None if ``timeout_s`` passed first."""
        self._exited.wait(timeout_s)
        return self.poll()


class Target(Protocol):
    """A kind of place where runs execute. The registry makes one per run."""

    kind: ClassVar[str]
    #: Runs see this machine: its files, its Python and its GPUs, and they take its slots
    #: (the daemon's scheduler). False for another host, which prepares its own Python.
    shares_host: ClassVar[bool]

    def check(self) -> None:
        """Raise TargetUnavailableError with the fix if the target cannot be used."""

    def check_environment(self, env: Environment) -> None:
        """ConfigError now (at submit) for an environment this target cannot prepare."""

    def prepare(self, job: Job) -> PreparedEnvironment:
        """Build (or find) the run's environment where the run will execute."""

    def stage(self, job: Job, workdir: Path) -> str:
        """Put the run's source where it executes; a line for the prep log ("": none)."""

    def launch(self, spec: LaunchSpec, events: RunEvents) -> RunHandle:
        """Start the run; return at once."""

    def recover(self, job: Job) -> dict[str, str] | None:
        """An earlier supervisor stopped between deciding to launch the run and storing its
        handle: the description of what it started, or None when nothing was started."""

    def reattach(self, described: Mapping[str, str], events: RunEvents) -> RunHandle:
        """A handle for a run launched earlier (by another supervisor process)."""

    def close(self) -> None:
        """Release what the target holds; idempotent."""


@dataclass(frozen=True)
class Place:
    """What a target is made from: the workspace, the compute target, the daemon's pools."""

    ws: Workspace
    name: str  #: the compute target's name (``local``)
    config: Mapping[str, Any] = field(default_factory=dict)  #: its stored configuration
    keepers: KeeperFactory | None = None  #: the daemon's keeper pool (local runs)
    #: runner's in-run client (Daemon.client_dir), for targets that ship it elsewhere
    client_dir: Path | None = None


#: Removes what crashed runs of this kind left behind (containers...) given the active
#: runs' stored handles; returns what it removed. Called once when a daemon starts.
Sweep = Callable[[Path, Callable[[], dict[str, dict[str, str]]]], list[str]]


@dataclass(frozen=True)
class TargetKind:
    """One kind of target, as the registry knows it."""

    make: Callable[[Place, RunDefinition], Target]  #: the target of one run
    sweep: Sweep | None = None
