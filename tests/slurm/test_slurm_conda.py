"""A conda environment on the Slurm cluster: locked here, built once in shared_dir by the
login node, used by the job on a compute node (the channel and helpers of
tests/ssh/test_remote_conda.py; the login node cannot read the channel)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.environments.conda_channel import LocalChannel
from tests.helpers import run_code
from tests.slurm.test_slurm import TERMINAL, _log, _rig, wait_status
from tests.ssh.test_remote_conda import (
    SCRIPT,
    conda_tools,
    env_cache,
    host_channel,
    module_cache,
    spec_file,
)
from tests.targets.contract import details

__all__ = ["conda_tools", "env_cache", "host_channel", "module_cache"]

pytestmark = [pytest.mark.slurm, pytest.mark.ssh, pytest.mark.slow]

SUBMIT = """
import sys
from runner import Environment, Experiment, ScriptRunConfig, Workspace
ws = Workspace(sys.argv[1])
env = Environment.from_conda_specification("hello-slurm", sys.argv[2])
cfg = ScriptRunConfig(sys.argv[3], "train.py", compute_target="cluster", environment=env)
print("RUN", Experiment(ws, "slurm-conda").submit(cfg).id)
"""


def test_a_conda_environment_is_built_once_in_the_shared_folder(
    slurm_ws: tuple[Path, Path], host_channel: LocalChannel, tmp_path: Path
) -> None:
    ws, shared = slurm_ws
    rig = _rig(ws)
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    spec = spec_file(tmp_path, host_channel, "pyhello=1.0")
    ids = []
    for _ in range(2):
        proc = run_code(SUBMIT, ws, spec, src, timeout_s=300)
        assert proc.returncode == 0, proc.stderr
        run_id = proc.stdout.split("RUN ", 1)[1].split()[0]
        assert wait_status(rig, run_id, TERMINAL, 300) == "Completed", details(rig, run_id)
        ids.append(run_id)
    for run_id in ids:
        log = _log(rig, run_id, tmp_path)
        assert "pyhello 1.0 | hello from a local conda channel (data 0.2)" in log, log
        prefix = next(x for x in log.splitlines() if x.startswith("prefix ")).split(" ", 1)[1]
        assert Path(prefix).parent == shared / "envs", prefix
    prep = tmp_path / "prep"
    details(rig, ids[1], prep)
    second = run_code(
        "import sys; from runner import Run, Workspace\n"
        "r = Run.get(Workspace(sys.argv[1]), sys.argv[2])\n"
        "r.download_file('azureml-logs/55_environment_prep_log.txt', sys.argv[3])",
        ws,
        ids[1],
        prep / "prep.txt",
    )
    assert second.returncode == 0, second.stderr
    assert ": cached" in (prep / "prep.txt").read_text()
