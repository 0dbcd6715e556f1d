"""Workspace (SPEC "Workspace"): create, open, from_config, zero config, registries."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from runner import ComputeTarget, Environment, Experiment, Run, Workspace
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerWarning, StoreError
from tests.helpers import REPO, run_script, script_env


def test_create_makes_a_workspace_folder_with_its_database(tmp_path):
    ws = Workspace.create(tmp_path / "new")
    assert ws.path == (tmp_path / "new").resolve()
    assert ws.name == "new"
    assert (ws.path / "runner.db").is_file()
    assert (ws.path / "workspace.json").is_file()
    with sqlite3.connect(ws.path / "runner.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "experiments", "tags", "properties", "metrics", "files"} <= tables


def test_create_twice_is_refused_unless_exist_ok(tmp_path):
    first = Workspace.create(tmp_path / "w")
    with pytest.raises(ConflictError, match=r"a workspace already exists at .*exist_ok=True"):
        Workspace.create(tmp_path / "w")
    again = Workspace.create(tmp_path / "w", exist_ok=True)
    assert again == first


def test_create_accepts_and_ignores_azure_arguments(tmp_path, monkeypatch):
    import runner.workspace

    monkeypatch.setattr(runner.workspace, "_cloud_arguments_said", False)  # said once a process
    with pytest.warns(RunnerWarning, match=r"ignoring the Azure-only workspace arguments "):
        ws = Workspace.create(
            tmp_path / "w",
            subscription_id="sub",
            resource_group="rg",
            location="westeurope",
            create_resource_group=True,
        )
    assert ws.path.is_dir()


def test_open_an_existing_workspace_sees_its_runs(ws, exp):
    run = exp.start_logging()
    run.log("x", 1)
    run.complete()
    reopened = Workspace(ws.path)
    assert reopened == ws
    assert Run.get(reopened, run.id).get_metrics() == {"x": 1}
    assert Workspace(str(ws.path)).path == ws.path


def test_create_where_a_file_is_is_a_clear_error(tmp_path):
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"cannot create a workspace at .*file\.txt: it is a file"
    ):
        Workspace.create(tmp_path / "file.txt")
    with pytest.raises(
        StoreError, match=r"cannot create a workspace at .*file\.txt/sub: .*permissions"
    ):
        Workspace.create(tmp_path / "file.txt" / "sub")
    assert (tmp_path / "file.txt").read_text(encoding="utf-8") == "x"


def test_open_a_missing_workspace_says_how_to_create_one(tmp_path):
    with pytest.raises(NotFoundError, match=r"no runner workspace at .*Workspace\.create\("):
        Workspace(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()


def test_unreadable_workspace_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "workspace.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"workspace.json is not a readable workspace file"):
        Workspace(folder)


def test_from_config_finds_runner_config_upward(tmp_path, monkeypatch):
    project = tmp_path / "project"
    ws = Workspace.create(tmp_path / "team-ws")
    written = ws.write_config(project)
    assert written == project / ".runner" / "config.json"
    deep = project / "src" / "models"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert Workspace.from_config() == ws
    assert Workspace.from_config(path=deep) == ws
    assert Workspace.from_config(path=written) == ws


def test_from_config_finds_a_plain_config_json(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "w")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.json").write_text(
        json.dumps({"workspace_path": str(ws.path)}), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path / "proj")
    assert Workspace.from_config() == ws


def test_from_config_resolves_a_relative_workspace_path_from_the_config_file(tmp_path):
    proj = tmp_path / "proj"
    (proj / ".runner").mkdir(parents=True)
    (proj / ".runner" / "config.json").write_text(
        json.dumps({"workspace_path": "../ws-here"}), encoding="utf-8"
    )
    ws = Workspace.from_config(path=proj)
    assert ws.path == (proj / "ws-here").resolve()


def test_from_config_ignores_config_json_of_other_tools(tmp_path, isolated_runner_home):
    (tmp_path / "config.json").write_text(json.dumps({"eslint": True}), encoding="utf-8")
    ws = Workspace.from_config()
    assert ws.path == isolated_runner_home.resolve()


def test_from_config_with_a_file_that_is_not_a_runner_config(tmp_path):
    bad = tmp_path / "settings.json"
    bad.write_text(json.dumps({"other": 1}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not a runner config file.*workspace_path"):
        Workspace.from_config(path=bad)


def test_zero_config_uses_and_creates_the_default_workspace(isolated_runner_home):
    assert not isolated_runner_home.exists()
    ws = Workspace.from_config()
    assert ws.path == isolated_runner_home.resolve()
    assert (ws.path / "runner.db").is_file()
    run = Experiment(ws, "first").start_logging()
    run.complete()
    assert Workspace.from_config() == ws


def test_zero_config_without_runner_workspace_uses_a_folder_under_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("RUNNER_WORKSPACE")
    monkeypatch.setenv("HOME", str(home))
    ws = Workspace.from_config()
    assert home.resolve() in ws.path.parents
    assert (ws.path / "runner.db").is_file()


def test_zero_config_in_a_fresh_process(tmp_path):
    """A new user: nothing created beforehand, one script, it works."""
    code = (
        "from runner import Workspace, Experiment\n"
        "ws = Workspace.from_config()\n"
        "with Experiment(ws, 'hello').start_logging() as run:\n"
        "    run.log('answer', 42)\n"
        "print(ws.path)\n"
    )
    home = tmp_path / "fresh-home"
    env = script_env({"HOME": str(home)})
    del env["RUNNER_WORKSPACE"]
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ws = Workspace(proc.stdout.strip())
    assert home.resolve() in ws.path.parents
    (run,) = Experiment(ws, "hello").get_runs()
    assert run.get_metrics() == {"answer": 42}
    assert run.status == "Completed"


def test_workspace_in_a_weird_path(weird_path):
    ws = Workspace.create(weird_path / "ws ;'\"")
    run = Experiment(ws, "w").start_logging()
    run.log("v", 1.5)
    run.upload_file("notes/é ;x.txt", _text_file(weird_path / "in.txt", "hi"))
    run.complete()
    again = Workspace(ws.path)
    got = Run.get(again, run.id)
    assert got.get_metrics() == {"v": 1.5}
    assert got.get_file_names() == ["notes/é ;x.txt"]


def test_workspace_in_a_weird_path_from_another_process(weird_path):
    ws = Workspace.create(weird_path / "ws")
    out = weird_path / "out.json"
    run_script("log_then_exit.py", ws.path, "weird", 10, out)
    run = Run.get(ws, json.loads(out.read_text(encoding="utf-8"))["id"])
    assert run.get_metrics()["v"] == list(range(10))


def test_experiments_registry(ws):
    assert ws.experiments == {}
    Experiment(ws, "a")
    Experiment(ws, "b").start_logging().complete()
    exps = ws.experiments
    assert sorted(exps) == ["a", "b"]
    assert exps["b"] == Experiment(ws, "b")
    assert exps["b"].workspace == ws
    assert exps["b"].name == "b"


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 256, 7, "a/b"])
def test_bad_experiment_names_are_refused(ws, name):
    with pytest.raises(ConfigError, match=r"experiment name .* is not valid; use letters"):
        Experiment(ws, name)


def test_experiment_needs_a_workspace():
    with pytest.raises(ConfigError, match=r"needs a Workspace first, got str"):
        Experiment("ws", "x")  # type: ignore[arg-type]


def test_compute_targets_registry_always_has_local(ws):
    targets = ws.compute_targets
    assert "local" in targets
    assert targets["local"].name == "local"
    assert ComputeTarget(ws, "local").name == "local"
    with pytest.raises(NotFoundError, match=r"no compute target 'gpu-box'.*attach one"):
        ComputeTarget(ws, "gpu-box")


def test_environments_registry(ws):
    assert ws.environments == {}
    registered = Environment("train-env").register(ws)
    assert registered.version == "1"
    assert sorted(ws.environments) == ["train-env"]
    assert ws.environments["train-env"].version == "1"


def test_models_registry_starts_empty(ws):
    assert ws.models == {}


def test_workspaces_are_independent(tmp_path):
    a = Workspace.create(tmp_path / "a")
    b = Workspace.create(tmp_path / "b")
    run = Experiment(a, "e").start_logging()
    assert list(Experiment(b, "e").get_runs()) == []
    with pytest.raises(NotFoundError, match=r"no run .* in workspace b"):
        Run.get(b, run.id)


def test_get_details_names_the_workspace(ws):
    details = ws.get_details()
    assert details["name"] == "ws"
    assert details["path"] == str(ws.path)


def test_the_repository_is_never_used_as_a_workspace():
    """The suite's isolation: tests run in tmp_path, not in the repository."""
    assert Path.cwd() != REPO
    assert os.environ["RUNNER_WORKSPACE"] != str(Path.home() / ".runner" / "workspace")


def _text_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
