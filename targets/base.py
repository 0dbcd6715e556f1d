"""The target interface: few methods, values in and out (httpx's transport model).

Environments *produce* a PreparedEnvironment, targets *consume* it in a LaunchSpec,
and neither does the other's job. Runs outlive their submitter: the supervisor stores
``describe()`` and a restarted one ``reattach``es. Handles are never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol


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


class RunHandle(Protocol):
    """A launched run's process (or container, or remote process)."""

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code; None if ``timeout_s`` passed first."""

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the whole tree, wait ``grace_s``, KILL the rest; idempotent."""

    def describe(self) -> dict[str, str]:
        """JSON-safe description, enough to ``reattach`` later."""


class Target(Protocol):
    """A kind of place where runs execute."""

    kind: ClassVar[str]

    def check(self) -> None:
        """Raise TargetUnavailableError with the fix if the target cannot be used."""

    def launch(self, spec: LaunchSpec) -> RunHandle:
        """Start the run; return at once."""

    def reattach(self, described: Mapping[str, str]) -> RunHandle:
        """A handle for a run launched earlier (by another supervisor process)."""

    def close(self) -> None:
        """Release what the target holds; idempotent."""
