"""What the targets of this machine (a process here, a container here) share: the
environment is built here, and the run's working folder is its snapshot, made here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from environments import selection
from runner.service import workcopy
from targets.base import Job, LocalTree

if TYPE_CHECKING:
    from environments.base import PreparedEnvironment
    from runner.environment import Environment


class HostTarget:
    """A target on this machine: ``shares_host``, prepare and stage as every one here."""

    shares_host: ClassVar[bool] = True

    def check_environment(self, env: Environment) -> None:
        """ConfigError now for what would fail the build later (no subprocess)."""
        selection.check(env)

    def prepare(self, job: Job) -> PreparedEnvironment:
        """Build (or find in the cache) the environment on this machine."""
        builder = selection.builder_for(job.environment, job.definition.python)
        return builder.prepare(job.environment, job.prep_log)

    def stage(self, job: Job, workdir: Path) -> str:
        """The snapshot as the run's working folder: a kept one when there is
        (``runner.service.workcopy``), with ./outputs and ./logs in it. Returns the
        line for the prep log ("" for a run without a snapshot)."""
        workcopy.forget(workdir)
        if job.snapshot is not None:
            how = workcopy.make(job.workspace, job.snapshot, workdir)
            line = f"working folder: {how} ({job.snapshot.file_count} files)"
        else:
            workdir.mkdir(parents=True)
            line = ""
        (workdir / "outputs").mkdir(exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        return line


class HostHandle:
    """What the handles of runs on this machine share: outputs are where they belong."""

    def collect(self, workdir: Path) -> None:
        """Nothing to bring: the run wrote into its working folder on this machine."""

    def properties(self) -> dict[str, str] | None:
        """Nothing learned beyond what the run records itself."""
        return {}

    def local_tree(self) -> LocalTree | None:
        """Overridden by handles that know their processes."""
        return None
