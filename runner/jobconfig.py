"""The job-level settings of a ScriptRunConfig, as azureml v1 spells them.

``distributed_job_config``: :class:`PyTorchConfiguration` and :class:`MpiConfiguration`
start N processes of the script on this machine (``node_count=1``), each with the
variables torchrun (or mpirun) sets; :class:`TensorflowConfiguration` is refused.
``docker_runtime_config``: :class:`DockerConfiguration` maps onto the environment's
``docker`` section. Standard library only (a run's script may import these).
"""

from __future__ import annotations

from typing import Any

from runner.errors import ConfigError

__all__ = [
    "DockerConfiguration",
    "MpiConfiguration",
    "PyTorchConfiguration",
    "TensorflowConfiguration",
    "check_distributed",
]


def _count(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what}={value!r}; pass an int >= {minimum}")
    return value


class PyTorchConfiguration:
    """A PyTorch distributed job: ``process_count`` processes, started as torchrun would.

    Each process gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK,
    MASTER_ADDR (127.0.0.1) and MASTER_PORT (a free port), and its output goes to
    ``azureml-logs/70_driver_log_<rank>.txt``. Only one node (this machine) is supported.

    Example:
        >>> src = ScriptRunConfig(".", "train.py",
        ...                       distributed_job_config=PyTorchConfiguration(process_count=2))
    """

    def __init__(
        self,
        communication_backend: str = "Nccl",
        process_count: int | None = None,
        node_count: int = 1,
        process_count_per_node: int | None = None,
    ) -> None:
        self.communication_backend = communication_backend
        self.process_count = process_count
        self.node_count = node_count
        self.process_count_per_node = process_count_per_node
        self.check()

    def check(self) -> None:
        """Raise ConfigError unless this job can run here (one node, N >= 1 processes)."""
        if not isinstance(self.communication_backend, str):
            raise ConfigError(
                f"communication_backend={self.communication_backend!r}; pass 'Nccl' or 'Gloo'"
            )
        _count(self.node_count, "PyTorchConfiguration.node_count")
        if self.process_count is not None:
            _count(self.process_count, "PyTorchConfiguration.process_count")
        if self.process_count_per_node is not None:
            _count(self.process_count_per_node, "PyTorchConfiguration.process_count_per_node")
        if (
            self.process_count is not None
            and self.process_count_per_node is not None
            and self.process_count != self.process_count_per_node * self.node_count
        ):
            raise ConfigError(
                f"PyTorchConfiguration(process_count={self.process_count}, "
                f"process_count_per_node={self.process_count_per_node}) disagree on one node; "
                "pass only one of them"
            )

    @property
    def processes(self) -> int:
        """How many processes run in all (1 when no count was given)."""
        if self.process_count:
            return self.process_count
        return (self.process_count_per_node or 1) * self.node_count

    def __repr__(self) -> str:
        return (
            f"PyTorchConfiguration(communication_backend={self.communication_backend!r}, "
            f"process_count={self.processes}, node_count={self.node_count})"
        )


class MpiConfiguration:
    """An MPI job: the script started by ``mpirun -np process_count_per_node``.

    Needs ``mpirun`` (Open MPI or MPICH) on PATH; mpirun sets the OMPI_*/PMI_* variables.
    Only one node (this machine) is supported.
    """

    def __init__(self, process_count_per_node: int = 1, node_count: int = 1) -> None:
        self.process_count_per_node = process_count_per_node
        self.node_count = node_count
        self.check()

    def check(self) -> None:
        """Raise ConfigError unless this job can run here."""
        _count(self.process_count_per_node, "MpiConfiguration.process_count_per_node")
        _count(self.node_count, "MpiConfiguration.node_count")

    @property
    def processes(self) -> int:
        """How many processes run in all (mpirun's -np on one node)."""
        return self.process_count_per_node * self.node_count

    def __repr__(self) -> str:
        return (
            f"MpiConfiguration(process_count_per_node={self.process_count_per_node}, "
            f"node_count={self.node_count})"
        )


class TensorflowConfiguration:
    """azureml's parameter-server TensorFlow job: not supported (refused when made)."""

    def __init__(self, worker_count: int = 1, parameter_server_count: int = 1) -> None:
        raise ConfigError(
            "TensorflowConfiguration (parameter-server jobs, TF_CONFIG) is not supported by "
            "runner; use MpiConfiguration for Horovod, or PyTorchConfiguration(process_count=N) "
            "and build TF_CONFIG from RANK and WORLD_SIZE in the script"
        )


def one_node_only(node_count: int, what: str) -> ConfigError:
    """The error for a job on several nodes submitted where there is one machine."""
    return ConfigError(
        f"{what}(node_count={node_count}): runner runs a distributed job on one machine "
        "only, except on a Slurm target; pass node_count=1 and raise the processes per "
        "node instead, or submit it to a Slurm target (SlurmCompute)"
    )


#: said at submit, and at launch if the daemon's PATH has no mpirun either
MPIRUN_MISSING = (
    "MpiConfiguration needs mpirun on PATH; install openmpi (apt-get install openmpi-bin) "
    "or use PyTorchConfiguration"
)


def check_distributed(config: Any) -> int:
    """The number of processes a ``distributed_job_config`` asks for (ConfigError when it
    cannot run anywhere; 1 for None). Where it runs is checked at submit."""
    if config is None:
        return 1
    if isinstance(config, (PyTorchConfiguration, MpiConfiguration)):
        config.check()
        return config.processes
    raise ConfigError(
        f"distributed_job_config={config!r}; pass PyTorchConfiguration(process_count=N) or "
        "MpiConfiguration(process_count_per_node=N)"
    )


def distributed_definition(config: Any) -> dict[str, Any] | None:
    """What the daemon needs to start the job's processes (None: one process): their
    kind, how many in all, on how many nodes."""
    count = check_distributed(config)
    if config is None:
        return None
    kind = "mpi" if isinstance(config, MpiConfiguration) else "pytorch"
    nodes = int(config.node_count)
    if count % nodes:
        raise ConfigError(
            f"{config!r}: {count} processes do not divide evenly over {nodes} nodes; pass a "
            "process_count that is a multiple of node_count"
        )
    return {"kind": kind, "processCount": count, "nodeCount": nodes}


class DockerConfiguration:
    """azureml's ``docker_runtime_config``: maps onto the environment's ``docker`` section.

    ``use_docker`` sets ``docker.enabled``; ``shm_size``, ``arguments`` and
    ``shared_volumes`` set the fields of the same names. None leaves a field as the
    environment has it.
    """

    def __init__(
        self,
        use_docker: bool | None = None,
        arguments: list[str] | None = None,
        shared_volumes: bool | None = None,
        shm_size: str | None = None,
    ) -> None:
        if use_docker is not None and not isinstance(use_docker, bool):
            raise ConfigError(f"DockerConfiguration(use_docker={use_docker!r}); pass True or False")
        self.use_docker = use_docker
        self.arguments = arguments
        self.shared_volumes = shared_volumes
        self.shm_size = shm_size

    def apply(self, docker: Any) -> None:
        """Set these fields on an Environment's ``docker`` section (its setters check them)."""
        if self.use_docker is not None:
            docker.enabled = self.use_docker
        if self.shm_size is not None:
            docker.shm_size = self.shm_size
        if self.arguments is not None:
            docker.arguments = self.arguments
        if self.shared_volumes is not None:
            docker.shared_volumes = self.shared_volumes

    def __repr__(self) -> str:
        return (
            f"DockerConfiguration(use_docker={self.use_docker!r}, shm_size={self.shm_size!r}, "
            f"arguments={self.arguments!r})"
        )
