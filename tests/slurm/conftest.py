"""A real Slurm cluster for tests/slurm: Slurm 22.05 on this machine, no fakes but the GPUs.

``scripts/slurm_services.sh`` (root only) sets it up: munge, slurmctld and slurmd, one node
with two fake GPUs (gres over character devices: Slurm hands their indices to jobs as
CUDA_VISIBLE_DEVICES, which is all a job sees of a GPU), partitions ``debug`` (default) and
``nogpu`` (no GPUs), KillWait 5 s, no slurmdbd (``sacct -c`` answers). The login node is the
test sshd of tests/ssh (127.0.0.1:2222, user jobrunner), whose jobs run as jobrunner.

With ``CI=true`` the cluster must be there: when it does not answer, the script is run (as
root, once per session), and a cluster still unusable fails the tests. Elsewhere the tests
are skipped with the command that enables them.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, require_service, run_code, stop_daemons_under
from tests.ssh.conftest import SshHost, ssh_host

SETUP_SCRIPT = REPO / "scripts" / "slurm_services.sh"
__all__ = ["Cluster", "slurm_cluster", "slurm_ws", "ssh_host"]

ENABLE = "sudo bash scripts/slurm_services.sh && sudo bash scripts/ssh_services.sh"
#: Where the tests' shared folders go (world-writable: jobs run as jobrunner).
SHARED_ROOT = Path("/tmp/runner-slurm-shared")
#: Slurm's KillWait in the test cluster (scancel: TERM, then KILL this long after).
KILL_WAIT_S = 5

ATTACH = """
import json, shutil, sys
from pathlib import Path
from runner import ComputeTarget, SlurmCompute, Workspace

ws = Workspace.create(sys.argv[1], exist_ok=True)
folder = Path(sys.argv[1]) / "ssh"
folder.mkdir(mode=0o700, exist_ok=True)
shutil.copy(sys.argv[6], folder / "known_hosts")
extra = json.loads(sys.argv[9])
cfg = SlurmCompute.attach_configuration(
    address=sys.argv[2], ssh_port=int(sys.argv[3]), username=sys.argv[4],
    private_key_file=sys.argv[5], shared_dir=sys.argv[7], partition=sys.argv[8] or None, **extra)
ComputeTarget.attach(ws, sys.argv[10], cfg)
"""


def slurm_problem() -> str | None:
    """None when the test cluster answers with its node up and its fake GPUs."""
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH (Slurm is not installed)"
    proc = subprocess.run(
        ["sinfo", "-h", "-N", "-p", "debug", "-o", "%t|%G"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip()}"
    state, _, gres = proc.stdout.strip().partition("|")
    if state.rstrip("*~#!%$@^-+") not in ("idle", "mix", "alloc", "comp"):
        return f"the node of partition debug is {state or 'missing'!r}"
    if "gpu" not in gres:
        return f"the node has no fake GPUs (gres {gres!r}): another cluster config is running"
    return None


@dataclass(frozen=True)
class Cluster:
    """The test cluster, reached through its login node."""

    login: SshHost

    def attach(
        self,
        ws: Path,
        name: str = "cluster",
        partition: str = "debug",
        **extra: object,
    ) -> Path:
        """Attach the cluster to ``ws`` (from a process of its own) with a fresh shared
        folder; returns that folder."""
        import json

        shared = SHARED_ROOT / f"t-{uuid.uuid4().hex[:12]}"
        login = self.login
        proc = run_code(
            ATTACH,
            ws,
            login.address,
            login.port,
            login.user,
            login.key,
            login.known_hosts,
            shared,
            partition,
            json.dumps(extra),
            name,
        )
        assert proc.returncode == 0, proc.stderr
        return shared


@pytest.fixture(scope="session")
def slurm_cluster(ssh_host: SshHost) -> Cluster:
    """The cluster of scripts/slurm_services.sh, its login node the test sshd."""
    require_service("Slurm cluster", slurm_problem, SETUP_SCRIPT, ENABLE)
    return Cluster(ssh_host)


@pytest.fixture
def slurm_ws(
    slurm_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Path]]:
    """A workspace with the cluster attached as ``cluster``: (workspace, shared folder). At
    teardown the daemons stop, no job of the test is left in Slurm, and the folder goes."""
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", "0.5")
    ws = tmp_path / "ws"
    shared = slurm_cluster.attach(ws)
    yield ws, shared
    problems = stop_daemons_under(tmp_path)
    left = jobs_of(shared)
    for job in left:
        subprocess.run(["scancel", job], capture_output=True, check=False)
    shutil.rmtree(shared, ignore_errors=True)
    assert not problems, problems
    assert not left, f"jobs left in Slurm: {left}"


def jobs_of(shared: Path) -> list[str]:
    """Ids of the live Slurm jobs of the runs under ``shared``."""
    ids = []
    for job_file in shared.glob("runs/*/job"):
        job = job_file.read_text().strip()
        proc = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, check=False
        )
        if proc.stdout.strip() in ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING"):
            ids.append(job)
    return ids
