"""What a run is started with: its LaunchSpec (argv, variables, GPUs, ranks).

The same for every target; what differs is whether the target shares this machine
(``Target.shares_host``): a run here (or in a container here) gets runner's in-run
client on its PYTHONPATH, the GPUs it was given and mlflow's tracking URI; a run on
another host gets only the run's own variables, and that host adds the rest.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from environments.base import PreparedEnvironment
from runner.definition import RunDefinition
from runner.errors import RunnerError
from runner.jobconfig import MPIRUN_MISSING
from targets.base import LaunchSpec, RankSpec

#: Log names, as azureml calls them.
DRIVER_LOG = "70_driver_log.txt"
PREP_LOG = "55_environment_prep_log.txt"
#: Variables of the daemon's own that a run must not inherit.
_DAEMON_ONLY = ("RUNNER_DAEMON_IDLE_S",)


@dataclass(frozen=True)
class RunPlace:
    """Where one run lives on this machine, and who it is."""

    run_id: str
    experiment: str
    workspace: Path
    mlflow_uri: str
    run_dir: Path  #: WS/runs/<id>: logs, the exit file, the working folder

    @property
    def logs(self) -> Path:
        """``70_driver_log.txt`` and the other azureml-logs."""
        return self.run_dir / "logs"

    @property
    def workdir(self) -> Path:
        """The run's working folder (its snapshot; ./outputs and ./logs inside)."""
        return self.run_dir / "work"

    @property
    def exit_file(self) -> Path:
        """Where the run's exit code is written."""
        return self.run_dir / "exit_code"


def launch_spec(
    place: RunPlace,
    definition: RunDefinition,
    prepared: PreparedEnvironment,
    *,
    shares_host: bool,
    client_dir: Path,
    gpu_ids: tuple[int, ...],
    gpus_managed: bool,
    umask: int | None,
    tags: Mapping[str, str | None],
    properties: Mapping[str, str | None],
) -> LaunchSpec:
    """The LaunchSpec of a prepared run (``tags``, ``properties``: for a host that keeps
    records of its own; empty for one that shares this machine's store)."""
    # A container or a remote host starts from its own environment, not the daemon's.
    env = dict(os.environ) if shares_host and not prepared.image else {}
    for var in _DAEMON_ONLY:
        env.pop(var, None)
    asked = definition.environment_variables
    if shares_host:
        env.update(prepared.env)
    env.update(asked)
    if shares_host:
        path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(client_dir), *path])
    env["PYTHONUNBUFFERED"] = "1"
    if shares_host and gpus_managed and "CUDA_VISIBLE_DEVICES" not in asked:
        # Each run sees exactly the GPUs it was given (none if it asked for none),
        # unless its environment_variables name GPUs itself: that is asking to share.
        visible = ",".join(map(str, gpu_ids))
        env["CUDA_VISIBLE_DEVICES"] = visible
        env["NVIDIA_VISIBLE_DEVICES"] = visible or "void"
        # CUDA numbers GPUs fastest first unless told otherwise; NVML (whose indices
        # these are) numbers them in PCI bus order.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["RUNNER_RUN_ID"] = place.run_id
    env["RUNNER_WORKSPACE"] = str(place.workspace)
    env["RUNNER_EXPERIMENT"] = place.experiment
    env["AZUREML_RUN_ID"] = place.run_id
    if shares_host and "MLFLOW_TRACKING_URI" not in asked:
        # As Azure ML did: mlflow in the script records into this run's workspace.
        env["MLFLOW_TRACKING_URI"] = place.mlflow_uri
    argv = _argv(definition, prepared)
    ranks: tuple[RankSpec, ...] = ()
    if definition.distributed and shares_host:
        argv, ranks = distributed_launch(
            definition.distributed, argv, env, place.logs, place.run_id
        )
    return LaunchSpec(
        run_id=place.run_id,
        argv=argv,
        workdir=place.workdir,
        env=env,
        driver_log=place.logs / DRIVER_LOG,
        exit_file=place.exit_file,
        image=prepared.image,
        gpu_ids=gpu_ids,
        grace_s=definition.grace_s,
        umask=umask,
        ranks=ranks,
        experiment=place.experiment,
        tags=dict(tags),
        properties=dict(properties),
    )


def _argv(definition: RunDefinition, prepared: PreparedEnvironment) -> list[str]:
    args = list(definition.arguments)
    command = definition.command
    if isinstance(command, str):
        return ["/bin/sh", "-c", command, "sh", *args]
    if command:
        return [*command, *args]
    return [*prepared.argv_prefix, prepared.python, str(definition.script), *args]


def distributed_launch(
    distributed: dict[str, Any],
    argv: list[str],
    env: dict[str, str],
    logs: Path,
    run_id: str,
) -> tuple[list[str], tuple[RankSpec, ...]]:
    """(argv, ranks) of a distributed run on this machine.

    PyTorch: N processes of the same argv, kept together by the run's keeper, with the
    variables torchrun sets (and the AZ_BATCH* names of azureml's PyTorch jobs); every
    rank sees all of the run's GPUs, as under torchrun, and takes ``cuda:LOCAL_RANK``.
    MPI: one process, ``mpirun -np N`` before the argv (mpirun sets OMPI_*/PMI_*).
    """

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
