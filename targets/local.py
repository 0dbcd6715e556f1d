"""LocalTarget: the run as a process tree on this machine, kept by ``runner.keeper``.

Each run has a keeper process: the leader of the run's own session, a child subreaper
(orphans of the run come back to it), the holder of the run's cgroup where cgroup v2 can
be used, and the writer of its exit code. Starting Python costs ~10 ms of CPU, more than
the rest of a small run's overhead, so the daemon keeps a keeper factory
(``targets.keepers.KeeperFactory``) that forks keepers ahead of need: a launch hands the
idle one its spec.

This module is light on purpose: ``submit`` makes the target of every run to check it.
The processes (psutil) are in ``targets.keepers``, loaded when a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from runner.definition import RunDefinition
from targets.base import Job, LaunchSpec, Place, RunEvents, Target, TargetKind
from targets.docker import DockerTarget, sweep_containers
from targets.host import HostTarget

if TYPE_CHECKING:
    from targets.keepers import KeeperFactory, LocalHandle


class LocalTarget(HostTarget):
    """Runs processes on this machine, each run under its keeper."""

    kind: ClassVar[str] = "local"

    def __init__(self, keepers: KeeperFactory | None = None) -> None:
        self.keepers = keepers

    def check(self) -> None:
        """The local machine is always there."""

    def launch(self, spec: LaunchSpec, events: RunEvents | None = None) -> LocalHandle:
        """Hand the run to a keeper; its output goes to the driver log."""
        from targets.keepers import start_run  # psutil: loaded with the first run

        return start_run(spec, self.keepers)

    def recover(self, job: Job) -> dict[str, str] | None:
        """The keeper an earlier daemon started for the run, if it recorded its start."""
        from targets.keepers import find_started  # psutil: loaded with the first run

        return find_started(job)

    def reattach(
        self, described: Mapping[str, str], events: RunEvents | None = None
    ) -> LocalHandle:
        """A handle for a run started by an earlier supervisor."""
        from targets.keepers import handle_of  # psutil: loaded with the first run

        return handle_of(described)

    def close(self) -> None:
        """Nothing to release (the daemon owns the keeper pool)."""


def _for_run(place: Place, definition: RunDefinition) -> Target:
    """A run on this machine: in a container when its environment is a docker one."""
    docker = definition.docker
    if docker.get("enabled"):
        return DockerTarget(shm_size=docker.get("shmSize"))
    return LocalTarget(place.keepers)


#: The ``local`` compute target (registry.BUILTIN).
KIND = TargetKind(make=_for_run, sweep=sweep_containers)
