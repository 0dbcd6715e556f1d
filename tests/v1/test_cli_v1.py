"""The az ml command lines of the reference pages, as ``python -m runner`` processes
(issue 14 item 11): ``folder attach -w NAME -g RG``, ``run cancel -r ID -w WS -e EXP``,
``run submit-script -c sklearn`` with v1's ``.azureml/sklearn.runconfig``. HOME points
into tmp_path, so named workspaces never touch the real home."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli, run_code


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project


def az(
    home: Path, cwd: Path, *argv: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_cli(*argv, cwd=cwd, env={"HOME": str(home)}, timeout_s=timeout_s)


def python(home: Path, cwd: Path, code: str) -> str:
    proc = run_code(code, cwd=cwd, env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("runner: error: ")
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_folder_attach_with_a_workspace_name_and_a_resource_group(home, project):
    proc = az(home, project, "folder", "attach", "-w", "myworkspace", "-g", "myresourcegroup")
    assert proc.returncode == 0, proc.stderr
    named = (home / ".runner" / "workspaces" / "myworkspace").resolve()
    assert proc.stderr.splitlines() == [
        "runner: note: ignoring -g/--resource-group: runner workspaces are local folders, "
        "named by -w",
        f"runner: note: created workspace 'myworkspace' at {named}",
    ]
    answer = json.loads(proc.stdout)
    assert answer["workspaceName"] == "myworkspace"
    assert answer["workspacePath"] == str(named)
    # the folder now uses it: a run logged here lands in the named workspace
    python(
        home,
        project,
        "from runner import Workspace, Experiment\n"
        "Experiment(Workspace.from_config(), 'exp').start_logging().complete()\n",
    )
    listed = az(home, project, "run", "list", "-e", "exp", "-w", "myworkspace")
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["Completed"]
    # attaching again keeps the workspace, and says nothing about creating it
    again = az(home, project, "folder", "attach", "-w", "myworkspace")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_run_cancel_with_a_workspace_name_and_an_experiment(home, project):
    run_id = python(
        home,
        project,
        "from runner import Workspace, Experiment\n"
        "ws = Workspace.create('workspace_name', subscription_id='s', resource_group='g')\n"
        "run = Experiment(ws, 'experiment_name').start_logging()\n"
        "run.complete()\n"
        "print(run.id)\n",
    )
    proc = az(
        home,
        project,
        "run",
        "cancel",
        "-r",
        run_id,
        "-w",
        "workspace_name",
        "-e",
        "experiment_name",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"runId": run_id, "status": "Completed"}
    assert (
        proc.stderr
        == f"runner: note: run {run_id} is already Completed; cancel() changed nothing\n"
    )
    wrong = az(home, project, "run", "cancel", "-r", run_id, "-w", "workspace_name", "-e", "other")
    one_line_error(wrong, f"run {run_id} is in experiment 'experiment_name', not 'other'")


def test_an_unknown_workspace_name_is_one_line_naming_how_to_create_it(home, project):
    proc = az(home, project, "run", "list", "-e", "exp", "-w", "nosuchws")
    one_line_error(proc, "no workspace named 'nosuchws'", "runner folder attach -w nosuchws")
    assert not (home / ".runner" / "workspaces" / "nosuchws").exists()


def test_a_workspace_path_still_works_and_subscription_id_is_noted(home, project, tmp_path):
    ws_dir = tmp_path / "team ws"
    python(home, project, f"from runner import Workspace; Workspace.create({str(ws_dir)!r})")
    proc = az(home, project, "experiment", "list", "-w", str(ws_dir), "--subscription-id", "x")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert proc.stderr == (
        "runner: note: ignoring --subscription-id: runner workspaces are local folders, "
        "named by -w\n"
    )


def test_submit_with_a_missing_runconfig_names_both_places(home, project):
    (project / "train.py").write_text("print('hi')\n", encoding="utf-8")
    proc = az(home, project, "run", "submit-script", "-c", "sklearn", "-e", "exp", "train.py")
    one_line_error(
        proc, "no run configuration at", ".runner/sklearn.runconfig", ".azureml/sklearn.runconfig"
    )


@pytest.mark.slow
def test_submit_script_reads_v1_azureml_runconfig(home, project):
    (project / "train.py").write_text(
        "import os\nprint('greeting:', os.environ.get('GREETING'))\n", encoding="utf-8"
    )
    (project / ".azureml").mkdir()
    # a v1 runconfig (the keys runner reads; v1 writes these at the top level)
    (project / ".azureml" / "sklearn.runconfig").write_text(
        "script: train.py\narguments: []\ntarget: local\nframework: Python\n"
        "communicator: None\nenvironmentVariables:\n  GREETING: from-azureml\n",
        encoding="utf-8",
    )
    try:
        proc = az(
            home,
            project,
            "run",
            "submit-script",
            "-c",
            "sklearn",
            "-e",
            "testexperiment",
            "--show-output",
            "train.py",
            timeout_s=180,
        )
    finally:
        az(home, project, "daemon", "stop")
    assert proc.returncode == 0, proc.stderr
    assert "greeting: from-azureml" in proc.stdout
