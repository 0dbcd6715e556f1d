"""The infrastructure fixtures of tests/docker and tests/ssh, for the contract suite."""

from tests.docker.conftest import engine
from tests.ssh.conftest import ssh_host

__all__ = ["engine", "ssh_host"]
