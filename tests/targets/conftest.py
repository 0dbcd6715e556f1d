"""The infrastructure fixtures of tests/docker, tests/ssh and tests/slurm, for the contract
suite."""

from tests.docker.conftest import engine
from tests.slurm.conftest import slurm_cluster
from tests.ssh.conftest import ssh_host

__all__ = ["engine", "slurm_cluster", "ssh_host"]
