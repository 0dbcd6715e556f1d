"""Curated environments by their v1 names (issue 14 item 6): local equivalents, or a list.

Each step is its own process (a notebook cell run as a script); the test process never
opens the workspace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.curated import CURATED
from tests.helpers import run_code, stop_daemon_of

PY = sys.executable


def cell(code: str, *args: object, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run CODE as its own Python process (argv: ARGS); the test keeps nothing open."""
    return run_code(code, *args, timeout_s=timeout_s)


TRAIN = """\
import sys
from runner import Run
run = Run.get_context()
run.log("in_venv", float(sys.prefix != sys.base_prefix))
print("interpreter", sys.executable)
"""


@pytest.mark.slow
def test_a_script_runs_in_azureml_minimal_as_the_notebook_writes_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TRAIN)
    submitted = cell(
        "import sys\n"
        "from runner import Environment, Experiment, ScriptRunConfig, Workspace\n"
        "ws = Workspace.create(sys.argv[1])\n"
        "env = Environment.get(workspace=ws, name='AzureML-Minimal')\n"
        "src = ScriptRunConfig(source_directory=sys.argv[2], script='train.py', environment=env)\n"
        "run = Experiment(ws, 'curated').submit(src)\n"
        "print(run.id)",
        ws,
        src,
    )
    try:
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.strip().splitlines()[-1]
        done = cell(
            "import json, sys\n"
            "from runner import Run, Workspace\n"
            "run = Run.get(Workspace(sys.argv[1]), sys.argv[2])\n"
            "run.wait_for_completion(raise_on_error=False)\n"
            "print(json.dumps({'status': run.get_status(), 'metrics': run.get_metrics(),\n"
            "    'env': run.get_details()['runDefinition']['environment']['name']}))",
            ws,
            run_id,
            timeout_s=300,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.splitlines()[-1])
        assert seen["status"] == "Completed", seen
        assert seen["env"] == "AzureML-Minimal"
        assert seen["metrics"]["in_venv"] == 1.0, "AzureML-Minimal runs in a venv of its own"
    finally:
        stop_daemon_of(ws)


def test_the_using_environments_notebook_prints_a_curated_definition(tmp_path: Path) -> None:
    shown = cell(
        "import sys\n"
        "from runner import Environment, Workspace\n"
        "ws = Workspace.create(sys.argv[1])\n"
        "env = Environment.get(workspace=ws, name='AzureML-Tutorial')\n"
        "print(env.name, env.version)\n"
        "print(env.python.conda_dependencies.serialize_to_string())",
        tmp_path / "ws",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("AzureML-Tutorial 1\n")
    for package in ("scikit-learn", "pandas", "matplotlib"):
        assert package in shown.stdout


@pytest.mark.parametrize("name", sorted(CURATED))
def test_every_curated_name_is_a_valid_definition(name: str, tmp_path: Path) -> None:
    from runner.environment import Environment
    from runner.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    env = Environment.get(ws, name)
    env.validate()
    assert env.version == "1"
    assert not env.python.user_managed_dependencies
    assert list(env.python.conda_dependencies.pip_packages) == CURATED[name][1]  # type: ignore[union-attr]
    assert Environment.get(ws, name, version="1").spec_hash() == env.spec_hash()


def test_an_unknown_curated_name_lists_what_there_is_and_records_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    tried = cell(
        "import sys\n"
        "from runner import Environment, Workspace\n"
        "ws = Workspace.create(sys.argv[1])\n"
        "Environment.get(ws, 'AzureML-sklearn-1.0')",
        ws,
    )
    assert tried.returncode == 1
    last = tried.stderr.strip().splitlines()[-1]
    assert "NotFoundError: no curated environment 'AzureML-sklearn-1.0'" in last
    assert "did you mean" in last
    assert "'AzureML-sklearn-1.0-ubuntu20.04-py38-cpu'" in last
    assert "AzureML-Minimal" in last
    assert "Environment.from_pip_requirements" in last

    registered = cell(
        "import sys\n"
        "from runner import ConfigError, Environment, Workspace\n"
        "ws = Workspace(sys.argv[1])\n"
        "try:\n"
        "    Environment('AzureML-mine').register(ws)\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "print(sorted(Environment.list(ws)))",
        ws,
    )
    assert registered.returncode == 0, registered.stderr
    said, listed = registered.stdout.strip().splitlines()
    assert "starts with 'AzureML', which is reserved for curated environments" in said
    assert listed == "[]"
    wrong_version = cell(
        "import sys\n"
        "from runner import Environment, NotFoundError, Workspace\n"
        "try:\n"
        "    Environment.get(Workspace(sys.argv[1]), 'AzureML-Minimal', version='7')\n"
        "except NotFoundError as exc:\n"
        "    print(exc)",
        ws,
    )
    assert "no curated environment 'AzureML-Minimal' version 7" in wrong_version.stdout
