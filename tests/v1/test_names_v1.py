"""v1 names that imports and except lines reach for (issue 14 items 1, 7, 11), each
pattern run as its own process, the way a v1 notebook or script spells it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from tests.helpers import REPO, run_cli, run_code, script_env

PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")
#: The v1 alias modules are part of the in-run client: standard library only.
ALIAS_MODULES = ("exceptions", "compute_target", "runconfig", "model", "script_run_config")


def v1(code: str, cwd: Path, python: str = sys.executable) -> list[str]:
    proc = run_code(code, cwd=cwd, python=python)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_version_as_the_first_notebook_cell_prints_it(tmp_path):
    out = v1(
        """
        import runner
        from runner import VERSION
        print("SDK version:", runner.VERSION)
        print(VERSION == runner.__version__)
        """,
        tmp_path,
    )
    assert out == [f"SDK version: {runner.__version__}", "True"]
    cli = run_cli("--version", cwd=tmp_path)
    assert cli.stdout.strip() == f"runner {runner.__version__}"


def test_compute_target_exception_catches_a_missing_target(tmp_path):
    out = v1(
        """
        from runner import Workspace
        from runner.compute import ComputeTarget
        from runner.compute_target import ComputeTargetException
        from runner.exceptions import ComputeTargetException as FromExceptions
        ws = Workspace.from_config()
        try:
            cpu_cluster = ComputeTarget(workspace=ws, name="cpu-cluster")
        except ComputeTargetException as exc:
            print("creating a new compute target...", type(exc).__name__)
        try:
            ws.compute_targets["gpu-cluster"]
        except KeyError as exc:
            print(isinstance(exc, FromExceptions), exc)
        print("local" in ws.compute_targets, ws.compute_targets.get("gpu-cluster"))
        """,
        tmp_path,
    )
    assert out[0] == "creating a new compute target... TargetNotFoundError"
    assert out[1].startswith("True no compute target 'gpu-cluster' in workspace default; ")
    assert "its targets: 'local'; attach one with" in out[1]
    assert out[2] == "True None"


def test_user_error_exception_catches_bad_input(tmp_path):
    out = v1(
        """
        from runner import ScriptRunConfig
        from runner.exceptions import AzureMLException, UserErrorException
        try:
            ScriptRunConfig(source_directory=".", script="missing.py")
        except UserErrorException as exc:
            print(isinstance(exc, AzureMLException), "missing.py" in str(exc))
        """,
        tmp_path,
    )
    assert out == ["True True"]


@pytest.mark.slow
def test_activity_failed_exception_from_wait_for_completion(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "fail.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    try:
        out = v1(
            """
            from runner import Workspace, Experiment, ScriptRunConfig
            from runner.exceptions import ActivityFailedException
            ws = Workspace.from_config()
            run = Experiment(ws, "fails").submit(ScriptRunConfig("src", "fail.py"))
            try:
                run.wait_for_completion()
            except ActivityFailedException as exc:
                print("caught", run.get_status())
            """,
            tmp_path,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "runner", "daemon", "stop"],
            cwd=tmp_path,
            env=script_env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert out[-1] == "caught Failed"


def test_runconfig_module_path_and_default_images(tmp_path):
    out = v1(
        """
        import runner
        from runner.runconfig import (RunConfiguration, CondaDependencies,
                                      DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE)
        from runner import Environment
        from runner.model import Model
        from runner.script_run_config import ScriptRunConfig
        print(RunConfiguration is runner.RunConfiguration,
              CondaDependencies is runner.CondaDependencies,
              Model is runner.Model, ScriptRunConfig is runner.ScriptRunConfig)
        env = Environment("gpu")
        env.docker.enabled = True
        env.docker.base_image = DEFAULT_GPU_IMAGE
        print(DEFAULT_CPU_IMAGE, env.docker.base_image)
        """,
        tmp_path,
    )
    assert out == [
        "True True True True",
        "python:3.11-slim pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    ]


def test_experiment_list(tmp_path):
    v1(
        """
        from runner import Workspace, Experiment
        ws = Workspace.from_config()
        for name in ("first", "second"):
            Experiment(ws, name).start_logging().complete()
        """,
        tmp_path,
    )
    out = v1(
        """
        from runner import Workspace, Experiment, ConfigError
        ws = Workspace.from_config()
        print([e.name for e in Experiment.list(ws)])
        print([e.name for e in Experiment.list(ws, experiment_name="second")])
        print(Experiment.list(ws, view_type="ArchivedOnly"))
        try:
            Experiment.list(ws, tags={"a": "b"})
        except ConfigError as exc:
            print(exc)
        """,
        tmp_path,
    )
    assert out[:3] == ["['first', 'second']", "['second']", "[]"]
    assert out[3].startswith("Experiment.list(tags=...): runner's experiments have no tags")


def test_model_get_model_path_url_and_model_not_found(tmp_path):
    trained = tmp_path / "trained"
    trained.mkdir()
    v1(
        """
        import os
        from runner import Workspace, Experiment
        ws = Workspace.from_config()
        run = Experiment(ws, "train").start_logging()
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/model.pkl", "w") as f:
            f.write("weights")
        run.upload_file("outputs/model.pkl", "outputs/model.pkl")
        run.register_model(model_name="sklearn_mnist", model_path="outputs/model.pkl")
        run.complete()
        """,
        trained,
    )
    scoring = tmp_path / "scoring"
    scoring.mkdir()
    out = v1(
        """
        from runner import Workspace
        from runner.model import Model
        from runner.exceptions import ModelNotFoundException, WebserviceException
        ws = Workspace.from_config()
        path = Model.get_model_path("sklearn_mnist", _workspace=ws)
        print(path, open(path).read())
        print(Model.get_model_path("sklearn_mnist"), Model.get_model_path("sklearn_mnist", 1))
        print(Model(ws, "sklearn_mnist").url)
        try:
            Model.get_model_path("sklearn_mnist", version=2, _workspace=ws)
        except ModelNotFoundException as exc:
            print("no version 2:", exc)
        try:
            Model(ws, "nope")
        except WebserviceException as exc:
            print(type(exc).__name__)
        """,
        scoring,
    )
    path = str(Path("azureml-models", "sklearn_mnist", "1", "model.pkl"))
    assert out[0] == f"{path} weights"
    assert out[1] == f"{path} {path}"
    assert out[2] == "runner://default/models/sklearn_mnist/versions/1"
    assert out[3].startswith("no version 2: no model 'sklearn_mnist' version 2 in workspace")
    assert out[4] == "ModelNotFoundError"
    assert (scoring / path).read_text(encoding="utf-8") == "weights"


PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
import runner.exceptions, runner.compute_target, runner.runconfig, runner.model
import runner.script_run_config
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"docker", "psutil", "filelock",
                "watchdog", "yaml", "jmespath"}})
print(json.dumps(loaded))
"""


@pytest.mark.parametrize("python", [sys.executable, str(PY39)])
def test_v1_alias_modules_are_standard_library_only(tmp_path, python):
    if not Path(python).exists():
        pytest.skip(f"no interpreter at {python}")
    proc = subprocess.run(
        [python, "-I", "-c", PROBE.format(repo=str(REPO))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert all((REPO / "runner" / f"{m}.py").is_file() for m in ALIAS_MODULES)
