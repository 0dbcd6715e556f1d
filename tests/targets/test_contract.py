"""The target contract (contract.py) run with every target runner has: local, docker,
ssh, slurm, and the FakeTarget of targets/testing.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import run_code, stop_daemons_under
from tests.targets.contract import SCENARIOS, Rig

ATTACH_FAKE = """
import sys
from runner import ComputeTarget, Workspace
from targets.testing import FakeTarget

ComputeTarget.attach(Workspace(sys.argv[1]), "pretend", FakeTarget.attach_configuration())
"""

ATTACH_SSH = """
import sys
from runner import ComputeTarget, RemoteCompute, Workspace

ws = Workspace(sys.argv[1])
config = RemoteCompute.attach_configuration(
    address=sys.argv[2], ssh_port=int(sys.argv[3]), username=sys.argv[4],
    private_key_file=sys.argv[5],
)
ComputeTarget.attach(ws, "box", config)
"""


def _workspace(tmp: Path) -> Path:
    ws = tmp / "ws"
    proc = run_code("import sys; from runner import Workspace; Workspace.create(sys.argv[1])", ws)
    assert proc.returncode == 0, proc.stderr
    return ws


def _local(request: pytest.FixtureRequest, tmp: Path) -> Rig:
    return Rig("local", _workspace(tmp), "local")


def _docker(request: pytest.FixtureRequest, tmp: Path) -> Rig:
    from tests.docker.conftest import BASE_IMAGE

    request.getfixturevalue("engine")  # a running engine with the base image, or skip/fail
    env_code = f"""
    env = Environment("contract-docker")
    env.docker.enabled = True
    env.docker.base_image = {BASE_IMAGE!r}
    env.python.user_managed_dependencies = True
    """
    variables = {"RUNNER_ENV_CACHE": str(tmp / "env cache")}
    return Rig("docker", _workspace(tmp), "local", env_code, variables, patience_s=180)


def _ssh(request: pytest.FixtureRequest, tmp: Path) -> Rig:
    host = request.getfixturevalue("ssh_host")  # sshd on loopback, or skip/fail
    ws = _workspace(tmp)
    folder = ws / "ssh"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "known_hosts").write_text(host.known_hosts.read_text())
    proc = run_code(ATTACH_SSH, ws, host.address, host.port, host.user, host.key)
    assert proc.returncode == 0, proc.stderr
    env_code = """
    env = Environment("contract-ssh")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = "python3"
    """
    return Rig("ssh", ws, "box", env_code, {"RUNNER_HEARTBEAT_S": "0.5"}, patience_s=120)


def _slurm(request: pytest.FixtureRequest, tmp: Path) -> Rig:
    cluster = request.getfixturevalue("slurm_cluster")  # the test cluster, or skip/fail
    ws = _workspace(tmp)
    shared = cluster.attach(ws)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    env_code = """
    env = Environment("contract-slurm")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = "python3"
    """
    return Rig("slurm", ws, "cluster", env_code, {"RUNNER_HEARTBEAT_S": "0.5"}, patience_s=120)


def _fake(request: pytest.FixtureRequest, tmp: Path) -> Rig:
    variables = {"RUNNER_TARGETS": "fake=targets.testing:KIND"}
    ws = _workspace(tmp)
    proc = run_code(ATTACH_FAKE, ws, env=variables)
    assert proc.returncode == 0, proc.stderr
    return Rig("fake", ws, "pretend", variables=variables)


RIGS: dict[str, Callable[[pytest.FixtureRequest, Path], Rig]] = {
    "local": _local,
    "docker": _docker,
    "ssh": _ssh,
    "slurm": _slurm,
    "fake": _fake,
}
MARKS = {
    "docker": [pytest.mark.docker],
    "ssh": [pytest.mark.ssh],
    "slurm": [pytest.mark.ssh, pytest.mark.slurm],
}


@pytest.fixture(
    params=[pytest.param(name, marks=MARKS.get(name, [])) for name in RIGS],
)
def rig(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    """One target, ready; at teardown its daemons are stopped and nothing of it is left."""
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    made = RIGS[request.param](request, tmp_path)
    yield made
    problems = stop_daemons_under(tmp_path)
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_target_keeps_the_contract(
    rig: Rig, scenario: Callable[[Rig, Path], None], tmp_path: Path
) -> None:
    scenario(rig, tmp_path)
