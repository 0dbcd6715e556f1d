"""v1 code runs unchanged, runs side (issue 14, items 3, 4, 5, 9, 10, 11 (runs), 12).

Every step is its own process, as a notebook cell or a script a migrating user runs:
``python -c`` with the v1 pattern (only the import line changed), and the outcome is
read back by yet another process. The test process opens no workspace; a test that
submits stops the workspace daemon it started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_code, script_env, stop_daemon_of

PY = sys.executable

#: What every step imports: v1's ``from azureml.core import ...``, renamed.
HEAD = (
    "import json, os, sys, warnings\n"
    "from runner import Experiment, Run, ScriptRun, Workspace\n"
    "ws = Workspace(sys.argv[1])\n"
    "exp = Experiment(ws, 'v1')\n"
)

#: A stand-in for a matplotlib Figure (matplotlib is not installed here): an object with
#: ``savefig(buffer, format='png')`` that writes a PNG header, which is all log_image
#: relies on (duck typing; runner never imports matplotlib).
FAKE_FIGURE = (
    "import types\n"
    "class FakeFigureWithSavefig:\n"
    "    def savefig(self, buffer, format='png'):\n"
    "        buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + b'fake figure, not matplotlib')\n"
    "fake_pyplot = types.ModuleType('fake_pyplot')  # a module with gcf(), as pyplot\n"
    "fake_pyplot.gcf = FakeFigureWithSavefig\n"
)


def step(
    code: str,
    ws: Path,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout_s: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``HEAD + code`` as its own process (argv[1] is the workspace folder)."""
    proc = run_code(HEAD + textwrap.dedent(code), ws, *args, cwd=cwd or ws.parent, env=env,
                    timeout_s=timeout_s)  # fmt: skip
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def answer(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a step printed on its last line."""
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_run(ws: Path, run_id: str) -> dict[str, Any]:
    """What another process sees of a run."""
    return answer(
        step(
            """
            run = Run.get(ws, sys.argv[2])
            print(json.dumps({"details": run.get_details(), "files": run.get_file_names(),
                              "metrics": run.get_metrics(), "repr": repr(run),
                              "class": type(run).__name__}))
            """,
            ws,
            run_id,
        )
    )


@pytest.fixture
def wsp(tmp_path: Path) -> Path:
    """A workspace folder, created by a process of its own."""
    path = tmp_path / "ws"
    subprocess.run(
        [PY, "-c", "import sys; from runner import Workspace; Workspace.create(sys.argv[1])", path],
        env=script_env(),
        check=True,
        timeout=60,
    )
    return path


# -- item 3: start_logging's ./outputs, target 'sdk' ---------------------------------------


def test_start_logging_outputs_then_register_model_as_the_official_sample(
    wsp: Path, tmp_path: Path
) -> None:
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    proc = step(
        """
        import pickle
        run = exp.start_logging()
        made = os.path.isdir("outputs")
        with open("outputs/model.pkl", "wb") as f:  # joblib.dump(model, 'outputs/model.pkl')
            pickle.dump({"weights": [1, 2, 3]}, f)
        details = run.get_details()
        run.complete()
        model = run.register_model(model_name="m", model_path="outputs/model.pkl")
        print(json.dumps({"made": made, "run": run.id, "target": details["target"],
                          "model": [model.name, model.version]}))
        """,
        wsp,
        cwd=notebook,
    )
    got = answer(proc)
    assert got["made"] is True
    assert got["target"] == "sdk"
    assert got["model"] == ["m", 1]
    seen = read_run(wsp, got["run"])
    assert seen["details"]["status"] == "Completed"
    assert seen["details"]["target"] == "sdk"
    assert seen["files"] == ["outputs/model.pkl"]
    restored = step(
        """
        import pickle
        from runner import Model
        path = Model(ws, "m").download(target_dir=sys.argv[2])
        with open(path, "rb") as f:
            print(json.dumps(pickle.load(f)))
        """,
        wsp,
        str(tmp_path / "dl"),
    )
    assert answer(restored) == {"weights": [1, 2, 3]}


def test_with_start_logging_stores_outputs_and_outputs_false_makes_none(
    wsp: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = step(
        """
        with exp.start_logging() as run:
            with open("outputs/metrics.txt", "w") as f:
                f.write("0.97")
        print(json.dumps(run.id))
        """,
        wsp,
        cwd=a,
    )
    assert read_run(wsp, answer(first))["files"] == ["outputs/metrics.txt"]
    second = step(
        """
        run = exp.start_logging(outputs=False, snapshot_directory=None)
        run.complete()
        print(json.dumps([run.id, run.get_snapshot_id()]))
        """,
        wsp,
        cwd=b,
    )
    run_id, snapshot = answer(second)
    assert not (b / "outputs").exists()
    assert snapshot is None  # v1: no snapshot unless snapshot_directory is given
    assert read_run(wsp, run_id)["files"] == []


def test_an_outputs_path_that_is_a_file_is_a_clear_error(wsp: Path, tmp_path: Path) -> None:
    (tmp_path / "outputs").write_text("a file, not a folder")
    proc = step("exp.start_logging()\n", wsp, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "ConfigError: start_logging: cannot create the outputs folder" in proc.stderr
    assert "pass outputs= a writable folder, or outputs=False" in proc.stderr


# -- item 4: log_list of any iterable -------------------------------------------------------


def test_log_list_takes_generators_and_map(wsp: Path) -> None:
    proc = step(
        """
        from runner.errors import ConfigError
        run = exp.start_logging(outputs=False)
        run.log_list("squares", (i * i for i in range(4)))
        run.log_list("floats", map(float, [1, 2]))
        try:
            run.log_list("unordered", {1, 2})
        except ConfigError as exc:
            refused = str(exc)
        run.complete()
        print(json.dumps([run.id, refused]))
        """,
        wsp,
    )
    run_id, refused = answer(proc)
    assert "a set has no order; pass sorted(value)" in refused
    assert read_run(wsp, run_id)["metrics"] == {"squares": [0, 1, 4, 9], "floats": [1.0, 2.0]}


# -- item 5: fail() after complete() ---------------------------------------------------------


def test_fail_marks_a_completed_run_failed_keeping_its_end_and_files(
    wsp: Path, tmp_path: Path
) -> None:
    nb = tmp_path / "nb"
    nb.mkdir()
    done = step(
        """
        run = exp.start_logging()
        open("outputs/model.txt", "w").write("m")
        run.complete()
        print(json.dumps([run.id, run.get_details()["endTimeUtc"]]))
        """,
        wsp,
        cwd=nb,
    )
    run_id, ended = answer(done)
    step(  # another process: "that run used the wrong script"
        """
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no 'changed nothing' warning
            Run.get(ws, sys.argv[2]).fail(error_details="trained on the wrong data",
                                          error_code="WrongData")
        """,
        wsp,
        run_id,
    )
    seen = read_run(wsp, run_id)
    assert seen["details"]["status"] == "Failed"
    assert seen["details"]["endTimeUtc"] == ended
    assert seen["details"]["error"]["error"] == {
        "code": "WrongData",
        "message": "trained on the wrong data",
    }
    assert seen["files"] == ["outputs/model.txt"]
    assert "Status: Failed" in seen["repr"]
    again = step(
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Run.get(ws, sys.argv[2]).fail("second")
        print(json.dumps([str(w.message) for w in caught]))
        """,
        wsp,
        run_id,
    )
    assert answer(again) == [f"run {run_id} is already Failed; fail() changed nothing"]
    assert read_run(wsp, run_id)["details"]["error"]["error"]["message"] == (
        "trained on the wrong data"
    )


# -- item 9: restore_snapshot ----------------------------------------------------------------


def test_restore_snapshot_writes_id_zip_into_the_folder_and_returns_it_absolute(
    wsp: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    made = step(
        """
        run = exp.start_logging(outputs=False, snapshot_directory=sys.argv[2])
        run.complete()
        print(json.dumps([run.id, run.get_snapshot_id()]))
        """,
        wsp,
        str(src),
    )
    run_id, sid = answer(made)
    where = tmp_path / "here"
    where.mkdir()
    proc = step(
        """
        run = Run.get(ws, sys.argv[2])
        print(json.dumps([run.restore_snapshot(path="snapshots"), run.restore_snapshot()]))
        """,
        wsp,
        run_id,
        cwd=where,
    )
    into_folder, default = answer(proc)
    assert into_folder == str(where / "snapshots" / f"{sid}.zip")
    assert default == str(where / f"{sid}.zip")
    with zipfile.ZipFile(into_folder) as z:
        assert z.read("train.py") == b"print('hi')\n"
    (where / "taken").write_text("a file")
    refused = step(
        "Run.get(ws, sys.argv[2]).restore_snapshot(path='taken')\n",
        wsp,
        run_id,
        cwd=where,
        check=False,
    )
    assert "ConfigError: restore_snapshot: path" in refused.stderr
    assert "is not a folder" in refused.stderr


# -- item 10: repr -----------------------------------------------------------------------------


def test_repr_shows_the_status_now(wsp: Path) -> None:
    proc = step(
        """
        run = exp.start_logging(outputs=False)
        before = repr(run)
        run.complete()
        print(json.dumps([run.id, before, repr(run)]))
        """,
        wsp,
    )
    run_id, before, after = answer(proc)
    assert before.endswith("Status: Running)")
    assert after.endswith("Status: Completed)")
    assert read_run(wsp, run_id)["repr"] == after


# -- item 11: children, images, type providers --------------------------------------------------


def test_start_of_a_child_made_by_create_children_marks_it_started(wsp: Path) -> None:
    proc = step(
        """
        parent = exp.start_logging(outputs=False)
        kids = parent.create_children(count=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for kid in kids:
                kid.start()  # v1: marks the run started; it is Running already
                kid.complete()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kids[0].start()
        parent.complete()
        print(json.dumps([[k.id for k in kids], [str(w.message) for w in caught]]))
        """,
        wsp,
    )
    ids, said = answer(proc)
    assert [read_run(wsp, i)["details"]["status"] for i in ids] == ["Completed"] * 2
    assert said == [f"run {ids[0]} is already Completed; start() changed nothing"]


def test_log_image_takes_a_figure_or_pyplot_in_the_path_position(wsp: Path) -> None:
    proc = step(
        FAKE_FIGURE
        + """
run = exp.start_logging(outputs=False)
run.log_image("ROC", fake_pyplot)  # the metrics article's run.log_image("ROC", plt)
run.log_image("PR", FakeFigureWithSavefig())
run.complete()
print(json.dumps(run.id))
""",
        wsp,
    )
    seen = read_run(wsp, answer(proc))
    assert seen["metrics"]["ROC"].startswith("aml://artifactId/ExperimentRun/dcid.")
    assert seen["metrics"]["PR"].startswith("aml://artifactId/ExperimentRun/dcid.")
    images = sorted(n for n in seen["files"] if n.endswith(".png"))
    assert [n.split("_")[0] for n in images] == ["PR", "ROC"]
    assert images[1] in seen["metrics"]["ROC"]


def test_type_providers_script_run_and_rehydration(wsp: Path) -> None:
    proc = step(
        """
        from runner.script_run import ScriptRun as FromModule
        from runner.errors import ConfigError
        class TunedRun(Run):
            pass
        run = exp.start_logging(outputs=False)
        run.complete()
        Run.add_type_provider("azureml.interactive", lambda e, dto: TunedRun(e, dto.run_id))
        try:
            Run.add_type_provider("", print)
        except ConfigError as exc:
            refused = str(exc)
        print(json.dumps({
            "same": FromModule is ScriptRun, "type": ScriptRun.RUN_TYPE,
            "listed": [type(r).__name__ for r in Run.list(exp)],
            "got": type(Run.get(ws, run.id)).__name__,
            "plain": [type(r).__name__ for r in Run.list(exp, _rehydrate_runs=False)],
            "scripts": [r.id for r in Run.list(exp, type=ScriptRun.RUN_TYPE)],
            "refused": refused}))
        """,
        wsp,
    )
    got = answer(proc)
    assert got["same"] is True
    assert got["type"] == "azureml.scriptrun"
    assert got["listed"] == ["TunedRun"]
    assert got["got"] == "TunedRun"
    assert got["plain"] == ["Run"]
    assert got["scripts"] == []
    assert "add_type_provider: runtype '' must be a run type" in got["refused"]


TRAIN = """
import os, sys, warnings
from runner import Run
run = Run.get_context()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    submitted = Run.get_submitted_run()  # deprecated in v1, still called
print("SUBMITTED", submitted.id == run.id, caught[0].category.__name__)
import types
class FakeFigureWithSavefig:  # matplotlib is not installed: a duck-typed figure
    def savefig(self, buffer, format="png"):
        buffer.write(b"\\x89PNG\\r\\n\\x1a\\n" + b"fake figure")
plt = types.ModuleType("fake_pyplot")
plt.gcf = FakeFigureWithSavefig
run.log_image("ROC", plt)
with open("outputs/model.txt", "w") as f:
    f.write("trained")
removed = run.clean()
print("REMOVED", sorted(os.path.basename(p) for p in removed), flush=True)
"""


def test_a_submitted_run_is_a_script_run_and_clean_keeps_its_outputs(
    wsp: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TRAIN)
    try:
        proc = step(
            """
            from runner import ScriptRunConfig
            run = exp.submit(ScriptRunConfig(source_directory=sys.argv[2], script="train.py"))
            details = run.wait_for_completion()
            print(json.dumps([run.id, type(run).__name__, details["status"]]))
            """,
            wsp,
            str(src),
        )
    finally:
        stop_daemon_of(wsp)
    run_id, cls, status = answer(proc)
    assert cls == "ScriptRun"
    assert status == "Completed"
    seen = read_run(wsp, run_id)
    assert seen["class"] == "ScriptRun"
    assert "outputs/model.txt" in seen["files"]  # stored before clean() removed it
    assert seen["metrics"]["ROC"].startswith("aml://")
    log = step(
        """
        run = Run.get(ws, sys.argv[2])
        print(json.dumps(run.get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"]))
        """,
        wsp,
        run_id,
    )
    driver = answer(log)
    assert "SUBMITTED True DeprecationWarning" in driver
    assert "REMOVED ['model.txt', 'train.py']" in driver
    assert f"run {run_id} is Running: clean() removed its working folder" in driver
    assert "the 1 file(s) of its ./outputs and ./logs were stored with the run first" in driver
    listed = step(
        "print(json.dumps([type(r).__name__ for r in Run.list(exp, type=ScriptRun.RUN_TYPE)]))\n",
        wsp,
    )
    assert answer(listed) == ["ScriptRun"]


# -- item 12: a failed environment build, said once ----------------------------------------------


def test_a_failed_environment_build_is_one_message_the_log_path_and_the_tail_once(
    wsp: Path, tmp_path: Path
) -> None:
    pytest.importorskip("uv", reason="uv builds pip environments; pip install uv")
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never')\n")
    missing = "runner-v1-test-no-such-package-7d2e"
    env = {"UV_OFFLINE": "1", "RUNNER_ENV_CACHE": str(tmp_path / "envs")}  # fails at once
    try:
        proc = step(
            """
            from runner import CondaDependencies, Environment, ScriptRunConfig
            from runner.errors import RunFailedError
            env = Environment("broken")
            env.python.conda_dependencies = CondaDependencies.create(pip_packages=[sys.argv[3]])
            run = exp.submit(ScriptRunConfig(sys.argv[2], "train.py", environment=env))
            try:
                run.wait_for_completion(show_output=True)
            except RunFailedError as exc:
                print("=====ERROR=====")
                print(json.dumps(str(exc)))
            """,
            wsp,
            str(src),
            missing,
            env=env,
        )
    finally:
        stop_daemon_of(wsp)
    streamed, _, error_json = proc.stdout.partition("=====ERROR=====\n")
    error: str = json.loads(error_json)
    assert "Traceback" not in proc.stdout
    assert "Traceback" not in proc.stderr
    assert streamed.count("runner could not run this: building environment") == 1
    assert missing in streamed  # uv's own words, streamed as the build wrote them
    first, _, tail = error.partition("\n--- last lines of the log ---\n")
    assert "--- last lines of the log ---" not in tail  # the tail once
    assert first.startswith("run v1_")
    assert "failed: building environment venv-" in first
    assert missing in first
    assert first.count("full log: ") == 1
    log_path = first.split("full log: ")[1]
    assert Path(log_path).is_file()
    assert missing in tail
    assert "runner could not run this" not in tail  # the message is not repeated
    assert Path(log_path).read_text().count("runner could not run this") == 1
