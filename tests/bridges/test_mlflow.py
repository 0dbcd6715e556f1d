"""MLflow's own client (the real ``mlflow-skinny``) on runner's history, through the
``mlflow.tracking_store`` / ``mlflow.artifact_repository`` entry points of pyproject.toml.

Each step is its own process; the test process holds no workspace open.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import tomllib

from tests.helpers import REPO, run_code, stop_daemon_of

if importlib.util.find_spec("mlflow") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs mlflow-skinny: scripts/test.sh installs the test extra")
    pytest.skip(
        "mlflow not installed: pip install mlflow-skinny to run these tests",
        allow_module_level=True,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with runner's MLflow entry points declared (the installed runner, if
    any, may be another tree, without them)."""
    from runner.workspace import declare_mlflow_plugin

    declare_mlflow_plugin(tmp_path / "site")
    return {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "site")]),
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }


def test_pyproject_declares_the_entry_points_runner_writes():
    from runner.workspace import MLFLOW_ENTRY_POINTS, MLFLOW_SCHEME

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {g: project["entry-points"][g] for g in MLFLOW_ENTRY_POINTS}
    assert declared == {g: {MLFLOW_SCHEME: t} for g, t in MLFLOW_ENTRY_POINTS.items()}


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _answer(proc) -> dict:
    out = _ok(proc)
    return json.loads(out.strip().splitlines()[-1])


READ_RUN = """
import json, sys
from runner import Run, Workspace
run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
print(json.dumps({"status": run.get_status(), "metrics": run.get_metrics(),
    "tags": run.get_tags(), "properties": run.get_properties(),
    "files": run.get_file_names(), "experiment": run.experiment.name}))
"""

TRAIN = """
import json, os, mlflow
from runner import Run, Workspace
ws = Workspace.from_config()
if os.environ.get("SET_URI"):
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
with mlflow.start_run() as active:
    mlflow.log_metric("loss", 0.5)
    for step in range(1, 4):
        mlflow.log_metric("loss", 0.5 / (step + 1), step=step)
    mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
    mlflow.log_param("lr", 0.01)
    mlflow.log_params({"epochs": 3, "opt": "sgd"})
    mlflow.set_tag("stage", "dev")
    mlflow.set_tags({"team": "a"})
    with open("model.txt", "w") as f:
        f.write("weights")
    mlflow.log_artifact("model.txt")
    os.makedirs("plots", exist_ok=True)
    with open("plots/p.txt", "w") as f:
        f.write("p")
    mlflow.log_artifacts("plots", artifact_path="plots")
    mlflow.log_dict({"k": 1}, "cfg/config.json")
    mlflow.log_text("hello", "notes.txt")
    print("MLFLOW_RUN", active.info.run_id, Run.get_context().id, mlflow.get_tracking_uri())
"""


@pytest.mark.slow
@pytest.mark.parametrize("set_uri", [True, False], ids=["set_tracking_uri", "env_var"])
def test_mlflow_in_a_submitted_run_records_into_that_run(tmp_path, env, set_uri):
    wsp = tmp_path / "ws"
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TRAIN)
    submit = """
    import json, sys
    from runner import Experiment, ScriptRunConfig, Workspace
    ws = Workspace.create(sys.argv[1])
    src = ScriptRunConfig(source_directory=sys.argv[2], script="train.py")
    if sys.argv[3]:
        src.run_config.environment_variables["SET_URI"] = "1"
    run = Experiment(ws, "mlf").submit(src)
    details = run.wait_for_completion()
    print(json.dumps({"id": run.id, "status": details["status"], "log": run._log_tail(40)}))
    """
    try:
        # No entry points on the submitter's path: the run's copy of runner declares them.
        plain = {"PYTHONPATH": str(REPO), "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
        sub = _answer(run_code(submit, wsp, src, "1" if set_uri else "", env=plain, timeout_s=180))
    finally:
        stop_daemon_of(wsp)
    assert sub["status"] == "Completed", sub["log"]
    line = next(x for x in sub["log"].splitlines() if x.startswith("MLFLOW_RUN"))
    _, mlflow_id, context_id, uri = line.split()
    assert mlflow_id == context_id == sub["id"]  # MLflow's run is the runner run (as in v1)
    assert uri == f"runner://{wsp.resolve()}"
    seen = _answer(run_code(READ_RUN, wsp, sub["id"], env=env))
    assert seen["metrics"]["loss"] == [0.5, 0.25, 0.5 / 3, 0.125]
    assert seen["metrics"]["acc"] == 0.9
    assert seen["metrics"]["f1"] == 0.8
    assert {"lr": "0.01", "epochs": "3", "opt": "sgd"}.items() <= seen["properties"].items()
    assert seen["tags"]["stage"] == "dev"
    assert seen["tags"]["team"] == "a"
    for name in ("model.txt", "plots/p.txt", "cfg/config.json", "notes.txt"):
        assert name in seen["files"]


def test_search_runs_get_run_and_metric_history_answer_from_runner_history(tmp_path, env):
    wsp = tmp_path / "ws"
    write = """
    import json, sys
    from runner import Experiment, Workspace
    ws = Workspace.create(sys.argv[1])
    ids = []
    for i in range(3):
        run = Experiment(ws, "search").start_logging(outputs=False)
        for step in range(3):
            run.log("loss", 1.0 / (i + step + 1), step=step)
        run.add_properties({"alpha": str(i)})
        run.tag("kind", "even" if i % 2 == 0 else "odd")
        run.complete()
        ids.append(run.id)
    print(json.dumps(ids))
    """
    ids = _answer(run_code(write, wsp, env=env))
    read = """
    import json, sys, mlflow
    from mlflow import MlflowClient
    from runner import Workspace
    mlflow.set_tracking_uri(Workspace(sys.argv[1]).get_mlflow_tracking_uri())
    runs = mlflow.search_runs(experiment_names=["search"], output_format="list")
    even = mlflow.search_runs(experiment_names=["search"], filter_string="tags.kind = 'even'",
        order_by=["params.alpha DESC"], output_format="list")
    client = MlflowClient()
    one = mlflow.get_run(sys.argv[2])
    history = client.get_metric_history(sys.argv[2], "loss")
    exp = client.get_experiment_by_name("search")
    print(json.dumps({
        "all": sorted(r.info.run_id for r in runs),
        "even": [r.info.run_id for r in even],
        "status": one.info.status, "params": one.data.params, "metrics": one.data.metrics,
        "history": [(m.step, m.value) for m in history],
        "experiments": [e.name for e in client.search_experiments()],
        "exp": [exp.experiment_id, exp.name], "missing": client.get_experiment_by_name("nope"),
    }))
    """
    seen = _answer(run_code(read, wsp, ids[1], env=env))
    assert seen["all"] == sorted(ids)
    assert seen["even"] == [ids[2], ids[0]]
    assert seen["status"] == "FINISHED"
    assert seen["params"] == {"alpha": "1"}
    assert seen["metrics"] == {"loss": 1.0 / 4}
    assert seen["history"] == [[0, 0.5], [1, 1.0 / 3], [2, 0.25]]
    assert seen["experiments"] == ["search"]
    assert seen["exp"][1] == "search"
    assert seen["missing"] is None


NOTEBOOK = """
# The train-local notebook (how-to-use-azureml/using-mlflow/train-local), import changed;
# scikit-learn's Ridge is replaced by a closed-form 1-D fit and matplotlib by a file, so the
# test needs only mlflow-skinny. mlflow.sklearn.log_model is the one step runner refuses
# (MLflow logged models); the model is stored with log_artifact instead.
import mlflow
import runner
from runner import Workspace

print("SDK version:", runner.VERSION)
ws = Workspace.from_config()
mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
experiment_name = "experiment-with-mlflow"
mlflow.set_experiment(experiment_name)

X = [float(i) for i in range(20)]
y = [2.0 * x + 1.0 for x in X]
model_save_path = "model"
with mlflow.start_run() as run:
    mlflow.log_metric("alpha", 0.03)
    n = len(X)
    mx, my = sum(X) / n, sum(y) / n
    slope = sum((a - mx) * (b - my) for a, b in zip(X, y)) / (sum((a - mx) ** 2 for a in X) + 0.03)
    preds = [my + slope * (a - mx) for a in X]
    mse = sum((p - t) ** 2 for p, t in zip(preds, y)) / n
    print("Mean Squared Error is", mse)
    mlflow.log_metric("mse", mse)
    with open("model.txt", "w") as f:
        f.write(str(slope))
    mlflow.log_artifact("model.txt", model_save_path)
    with open("actuals_vs_predictions.png", "wb") as f:
        f.write(b"\\x89PNG fake")
    mlflow.log_artifact("actuals_vs_predictions.png")
print("EXPERIMENT", ws.experiments[experiment_name].name)
print("RUN", run.info.run_id)
"""


def test_the_train_local_notebook_flow(tmp_path, env):
    wsp = tmp_path / "ws"
    _ok(
        run_code(
            "import sys; from runner import Workspace; Workspace.create(sys.argv[1]).write_config(sys.argv[2])",
            wsp,
            tmp_path,
            env=env,
        )
    )
    out = _ok(run_code(NOTEBOOK, cwd=tmp_path, env=env))
    assert "EXPERIMENT experiment-with-mlflow" in out
    run_id = out.split("RUN ")[-1].strip()
    seen = _answer(run_code(READ_RUN, wsp, run_id, env=env))
    assert seen["experiment"] == "experiment-with-mlflow"
    assert seen["status"] == "Completed"  # mlflow.end_run() completed the interactive run
    assert seen["metrics"]["alpha"] == 0.03
    assert seen["metrics"]["mse"] < 0.1
    assert "model/model.txt" in seen["files"]
    assert "actuals_vs_predictions.png" in seen["files"]


def test_unsupported_operations_raise_mlflow_exception_naming_them(tmp_path, env):
    wsp = tmp_path / "ws"
    code = """
    import json, sys, mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from runner import Workspace
    mlflow.set_tracking_uri(Workspace.create(sys.argv[1]).get_mlflow_tracking_uri())
    with mlflow.start_run() as run:
        pass
    said = []
    for call in (lambda: MlflowClient().delete_run(run.info.run_id),
                 lambda: MlflowClient().rename_experiment(run.info.experiment_id, "x")):
        try:
            call()
        except MlflowException as exc:
            said.append(exc.message)
    print(json.dumps(said))
    """
    said = _answer(run_code(code, wsp, env=env))
    assert said[0].startswith("delete_run is not supported by runner's MLflow tracking store")
    assert said[1].startswith("rename_experiment is not supported")


def test_without_mlflow_the_uri_works_and_the_store_names_the_package(tmp_path, env):
    code = """
    import sys
    sys.modules["mlflow"] = None  # as if mlflow were not installed
    from runner import Workspace
    print(Workspace.create(sys.argv[1]).get_mlflow_tracking_uri())
    try:
        import runner.mlflow_store
    except Exception as exc:
        print(type(exc).__name__, exc)
    """
    out = _ok(run_code(code, tmp_path / "ws", env=env))
    assert out.splitlines()[0] == f"runner://{(tmp_path / 'ws').resolve()}"
    assert "ConfigError" in out
    assert "pip install mlflow-skinny" in out


def test_outside_a_run_mlflow_runs_are_interactive_runs_nested_as_children(tmp_path, env):
    wsp = tmp_path / "ws"
    code = """
    import json, sys, mlflow
    from runner import Workspace
    mlflow.set_tracking_uri(Workspace.create(sys.argv[1]).get_mlflow_tracking_uri())
    with mlflow.start_run(run_name="outer") as outer:  # no set_experiment: "Default"
        mlflow.log_metric("x", 1)
        with mlflow.start_run(nested=True) as inner:
            mlflow.log_metric("y", 2)
    try:
        with mlflow.start_run() as failed:
            raise ValueError("boom")
    except ValueError:
        pass
    print(json.dumps([outer.info.run_id, inner.info.run_id, failed.info.run_id]))
    """
    outer, inner, failed = _answer(run_code(code, wsp, env=env))
    read = """
    import json, sys
    from runner import Run, Workspace
    ws = Workspace(sys.argv[1])
    outer = Run.get(ws, sys.argv[2])
    print(json.dumps({"exp": outer.experiment.name, "name": outer.display_name,
        "status": outer.get_status(), "children": [c.id for c in outer.get_children()],
        "child_metrics": Run.get(ws, sys.argv[3]).get_metrics(),
        "failed": Run.get(ws, sys.argv[4]).get_status()}))
    """
    seen = _answer(run_code(read, wsp, outer, inner, failed, env=env))
    assert seen == {
        "exp": "Default",
        "name": "outer",
        "status": "Completed",
        "children": [inner],
        "child_metrics": {"y": 2.0},
        "failed": "Failed",
    }
