"""Workspaces as v1 notebooks spell them (issue 14 item 2), each step its own process.

The first cells of v1 notebooks: ``print("SDK version:", VERSION)``, then
``ws = Workspace.get(name, subscription_id=..., resource_group=...)`` (or the constructor,
or ``Workspace.create(..., exist_ok=True)``) and ``print(ws.name, ws.location,
ws.resource_group, ws.subscription_id, sep='\\n')``. HOME points into tmp_path, so named
workspaces (``~/.runner/workspaces/NAME``) never touch the real home.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_code

WARNING = (
    "RunnerWarning: ignoring the Azure-only workspace arguments {}: a runner workspace is a "
    "folder on this machine (said once per process)"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def v1(code: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a v1 notebook's cells (import line changed) as a fresh process."""
    return run_code(code, cwd=cwd, env={"HOME": str(home)})


def ok(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_notebook_first_cells_create_then_get_by_name(home, tmp_path):
    created = v1(
        """
        import runner
        from runner import Workspace
        print("SDK version:", runner.VERSION)
        ws = Workspace.create(name="myws", subscription_id="0000-sub", resource_group="myrg",
                              location="eastus2", create_resource_group=True, exist_ok=True)
        again = Workspace.create("myws", subscription_id="0000-sub", exist_ok=True)
        print(ws.path, again == ws)
        """,
        home,
        tmp_path,
    )
    version_line, where = ok(created)
    import runner

    assert version_line == f"SDK version: {runner.__version__}"
    assert where == f"{(home / '.runner' / 'workspaces' / 'myws').resolve()} True"
    # accepted, ignored, and said once in the process (not once per call)
    assert created.stderr.count("RunnerWarning") == 1, created.stderr
    assert WARNING.format("subscription_id, resource_group, location") in created.stderr

    got = v1(
        """
        from runner import Workspace
        ws = Workspace.get("myws", subscription_id="0000-sub", resource_group="myrg")
        print(ws.name, ws.location, ws.resource_group, ws.subscription_id, sep="\\n")
        print(ws.get_details()["location"], ws.get_details()["resourceGroup"],
              ws.get_details()["subscriptionId"])
        """,
        home,
        tmp_path,
    )
    assert ok(got) == ["myws", "local", "local", "local", "local local local"]
    assert WARNING.format("subscription_id, resource_group") in got.stderr


def test_v1_constructor_spellings_open_the_named_workspace(home, tmp_path):
    logged = v1(
        """
        from runner import Workspace, Experiment
        Workspace.create("teamws")
        ws = Workspace("0000-sub", "myrg", "teamws")
        with Experiment(ws, "exp").start_logging() as run:
            run.log("acc", 0.5)
        print(run.id)
        """,
        home,
        tmp_path,
    )
    (run_id,) = ok(logged)
    read = v1(
        f"""
        from runner import Workspace, Run
        ws = Workspace(subscription_id="0000-sub", resource_group="myrg",
                       workspace_name="teamws")
        print(ws.name, ws.path)
        print(Run.get(ws, {run_id!r}).get_metrics()["acc"])
        """,
        home,
        tmp_path,
    )
    assert ok(read) == [f"teamws {(home / '.runner' / 'workspaces' / 'teamws').resolve()}", "0.5"]


def test_get_of_a_missing_workspace_says_how_to_create_it(home, tmp_path):
    proc = v1(
        """
        from runner import Workspace, NotFoundError
        from runner.exceptions import WorkspaceException
        try:
            Workspace.get("nope", subscription_id="s", resource_group="rg")
        except WorkspaceException as exc:
            print(type(exc).__name__, isinstance(exc, NotFoundError))
            print(exc)
        """,
        home,
        tmp_path,
    )
    kind, message = ok(proc)
    assert kind == "WorkspaceNotFoundError True"
    assert "no workspace named 'nope'" in message
    assert "Workspace.create('nope')" in message
    assert not (home / ".runner" / "workspaces" / "nope").exists()


def test_default_names_the_default_workspace_and_no_cloud_arguments_no_warning(home, tmp_path):
    proc = v1(
        """
        import os
        from runner import Workspace
        ws = Workspace.get("default")
        print(ws.name, ws.path == Workspace.from_config().path)
        print(ws.path == __import__("pathlib").Path(os.environ["RUNNER_WORKSPACE"]).resolve())
        """,
        home,
        tmp_path,
    )
    assert ok(proc) == ["default True", "True"]
    assert proc.stderr == ""


def test_paths_keep_working_and_an_existing_folder_wins_over_a_name(home, tmp_path):
    proc = v1(
        """
        from runner import Workspace
        here = Workspace.create("./ws")       # a path: made here
        print(here.path)
        print(Workspace("ws") == here)         # ./ws exists: the folder, not a named one
        print(Workspace.create("other").path)  # a name: ~/.runner/workspaces/other
        """,
        home,
        tmp_path,
    )
    assert ok(proc) == [
        str((tmp_path / "ws").resolve()),
        "True",
        str((home / ".runner" / "workspaces" / "other").resolve()),
    ]


def test_a_v1_config_json_opens_its_workspace_name(home, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text(
        json.dumps({"subscription_id": "0000", "resource_group": "rg", "workspace_name": "cfgws"}),
        encoding="utf-8",
    )
    proc = v1(
        """
        from runner import Workspace
        ws = Workspace.from_config()
        print(ws.name, ws.path)
        """,
        home,
        project,
    )
    assert ok(proc) == [f"cfgws {(home / '.runner' / 'workspaces' / 'cfgws').resolve()}"]


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ('Workspace.create("w", exists_ok=True)', "unexpected argument(s) exists_ok"),
        ('Workspace("sub", "rg")', "needs workspace_name"),
        ('Workspace.get("bad name!")', "no runner workspace at"),
        ('Workspace(workspace_name="a/b")', "workspace name 'a/b' is not valid"),
    ],
)
def test_bad_workspace_arguments_are_clear_errors(home, tmp_path, call, fragment):
    proc = v1(
        f"""
        from runner import Workspace, UserError
        try:
            {call}
        except UserError as exc:
            print(exc)
        """,
        home,
        tmp_path,
    )
    (line,) = ok(proc)
    assert fragment in line
