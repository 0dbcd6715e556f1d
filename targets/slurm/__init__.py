"""Slurm targets: runs submitted to a Slurm cluster through its login node.

The login node is reached with the SSH target's code (``targets.ssh``: OpenSSH, host keys
checked as for any host), and runner's host side there is ``runner.remote_slurm``, which
drives the real engine: ``sbatch`` (checked with ``sbatch --test-only`` first), ``squeue``
(one call for all of a user's runner jobs), ``sacct`` (or ``sacct -c``) and ``scancel``.
Everything lives in the target's ``shared_dir``, a folder every node sees at the same path:
runner's client, snapshot contents, environments (built once on the login node) and the
runs' folders, where the compute nodes write logs and journals that the login node streams
back here, from byte offsets, as for an SSH host.

The run's job: ``runner-<run id>``, ``--no-requeue`` (runner never runs a script twice
behind the user's back), ``--open-mode=append``, the script under ``srun`` and runner's
exit-code shim; ``gpu_count`` -> ``--gpus-per-node``; a distributed job's processes ->
srun tasks with RANK/WORLD_SIZE/MASTER_ADDR and a log per rank;
``max_run_duration_seconds`` -> ``--time`` plus runner's own cancel.

Statuses: PENDING -> Queued (Slurm's reason in the details; a reason that never clears
fails the run), RUNNING -> Running, SUSPENDED/PREEMPTED/REQUEUED -> NotResponding, and the
end from the job's last state (``SlurmHandle``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runner.definition import RunDefinition
from runner.errors import ConfigError, TargetUnavailableError
from runner.remote_slurm import request_args
from targets.base import Job, LaunchSpec, Place, RunEvents, TargetKind
from targets.slurm.handle import SlurmHandle
from targets.ssh import SshTarget, environment_request
from targets.ssh.connection import BOOTSTRAP, Endpoint

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = ["KIND", "SLURM_BOOTSTRAP", "SlurmHandle", "SlurmTarget", "job_request", "shell_path"]

#: The bootstrap of ``runner.remote_slurm`` (the SSH target's, pointed at the other module).
SLURM_BOOTSTRAP = BOOTSTRAP.replace(
    "from runner.remote_agent import main", "from runner.remote_slurm import main"
)


def shell_path(folder: str) -> str:
    """``folder`` as a word for the login node's shell, inside double quotes (``~/x`` ->
    ``$HOME/x``); ConfigError for characters the shell would read differently."""
    if any(c in folder for c in '"`\\$\n'):
        raise ConfigError(
            f"shared_dir={folder!r} holds a character the login node's shell would expand "
            '(" ` \\ $ or a newline); pick a plain path'
        )
    if folder == "~" or folder.startswith("~/"):
        return "$HOME" + folder[1:]
    if not folder.startswith("/"):
        raise ConfigError(
            f"shared_dir={folder!r} is not an absolute path; give the folder every node sees "
            "at the same path (e.g. '/shared/me/runner' or '~/runner' on a shared home)"
        )
    return folder.rstrip("/") or "/"


def job_request(definition: RunDefinition, config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``sbatch`` is asked for this run (``runner.remote_slurm.request_args``)."""
    distributed = definition.distributed or {}
    nodes = int(distributed.get("nodeCount") or 1)
    processes = int(distributed.get("processCount") or 1)
    return {
        "partition": config.get("partition"),
        "account": config.get("account"),
        "qos": config.get("qos"),
        "gpus_per_node": definition.gpu_count,
        "nodes": nodes,
        "tasks_per_node": max(1, processes // nodes),
        "time_s": definition.max_run_duration_seconds,
        "extra_args": list(config.get("sbatch_args") or []),
    }


class SlurmTarget(SshTarget):
    """Runs scripts as Slurm jobs (one object per run, as for SSH hosts)."""

    kind: ClassVar[str] = "slurm"
    shares_host: ClassVar[bool] = False
    bootstrap: ClassVar[str] = SLURM_BOOTSTRAP
    session_command: ClassVar[str] = "slurm-session"
    cancel_command: ClassVar[str] = "slurm-cancel"

    def __init__(
        self,
        ws: Any,
        name: str,
        config: Mapping[str, Any],
        definition: RunDefinition | None = None,
        endpoint: Endpoint | None = None,
        client_dir: Path | None = None,
    ) -> None:
        super().__init__(ws, name, config, endpoint, client_dir)
        self.config = dict(config)
        self.base = shell_path(str(config.get("shared_dir") or "~/.runner-slurm"))
        self.definition = definition

    def request(self) -> dict[str, Any]:
        """What sbatch is asked for the run this target was made for."""
        return job_request(self.definition or RunDefinition(target=self.name), self.config)

    def check(self) -> None:
        """The login node answers, and Slurm would accept the job (``sbatch --test-only``):
        an impossible request (more nodes or GPUs than the partition has) fails now."""
        super().check()
        request = self.request()
        partition = request.get("partition")
        lines = []
        if request.get("gpus_per_node"):
            where = f"-p {shlex.quote(str(partition))} " if partition else ""
            lines.append(f'echo "gres:$(sinfo -h {where}-o %G | sort -u | tr "\\n" " ")"')
        args = request_args(request)
        test = shlex.join(["sbatch", "--test-only", "--output=/dev/null", *args, "--wrap=true"])
        lines.append(f"cd && {test}")
        proc = self.conn.run("; ".join(lines), timeout_s=60)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace").replace("sbatch: error: ", "").strip()
        gres = next((ln[5:] for ln in out.splitlines() if ln.startswith("gres:")), None)
        where = f"partition {partition!r}" if partition else "the default partition"
        if gres is not None and "gpu" not in gres:
            raise TargetUnavailableError(
                f"target {self.name!r}: {where} has no GPUs (its nodes' gres: "
                f"{gres.strip() or 'none'}), and the run asks for gpu_count="
                f"{request['gpus_per_node']}; pick a partition with GPUs "
                "(SlurmCompute.attach_configuration(partition=...)) or set gpu_count=0"
            )
        if proc.returncode != 0:
            raise TargetUnavailableError(
                f"target {self.name!r}: Slurm would never run this job on {where} "
                f"({err}; asked: {' '.join(args)}); ask for fewer nodes, GPUs or time, or "
                "another partition"
            )

    def check_environment(self, env: Environment) -> None:
        """Docker images are not run on Slurm: ConfigError naming what works."""
        if env.docker.enabled:
            raise ConfigError(
                f"environment {env.name!r} is a docker image; Slurm targets run user-managed, "
                "venv (pip) or conda environments built in the target's shared_dir; set "
                "environment.docker.enabled = False"
            )
        environment_request(env)
        env.validate()

    def launch(self, spec: LaunchSpec, events: RunEvents) -> SlurmHandle:
        """Submit the job; the handle follows it from the queue to its end."""
        request = self.request()
        session, answer = self.send_launch(spec, slurm=request)
        job_id = str(answer["job_id"])
        events.queued(f"Slurm job {job_id} submitted; waiting for Slurm to start it")
        return SlurmHandle(
            self, spec.run_id, events, session, job_id=job_id, time_limited=bool(request["time_s"])
        )

    def recover(self, job: Job) -> dict[str, str] | None:
        """The run's job by the id recorded in its folder, else by its name; None when it
        was never submitted."""
        session = self.open_session()
        try:
            answer, _ = session.request({"op": "find", "run_id": job.run_id})
        finally:
            session.close()
        if not answer.get("job_id"):
            return None
        return self._described(job.run_id, str(answer["job_id"]))

    def _described(self, run_id: str, job_id: str) -> dict[str, str]:
        return {"kind": "slurm", "target": self.name, "run_id": run_id, "job_id": job_id}

    def reattach(self, described: Mapping[str, str], events: RunEvents) -> SlurmHandle:
        """Follow a job submitted earlier: Queued until Slurm says it runs."""
        events.queued(f"following Slurm job {described.get('job_id')} again")
        return SlurmHandle(
            self,
            str(described["run_id"]),
            events,
            job_id=str(described.get("job_id") or ""),
            time_limited=bool(self.request()["time_s"]),
        )


def _for_run(place: Place, definition: RunDefinition) -> SlurmTarget:
    return SlurmTarget(place.ws, place.name, place.config, definition, client_dir=place.client_dir)


#: The ``slurm`` compute target (registry.BUILTIN).
KIND = TargetKind(make=_for_run)
