"""The ``runner`` CLI: in-process ``cli.main(argv)``, plus two real ``python -m runner`` calls.

Data is made through the Python API; the tests check stdout JSON (or table/tsv), that a
user mistake is exactly one stderr line with exit code 2 and no traceback. They pass
``-w`` (or set RUNNER_WORKSPACE themselves) and so need nothing from conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner import cli
from runner.config import RunConfiguration
from runner.environment import Environment
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import Workspace
from tests.helpers import CliResult, call_cli

REPO = Path(__file__).resolve().parents[2]

SUMMARY_KEYS = [
    "runId",
    "number",
    "displayName",
    "status",
    "statusDetails",
    "type",
    "target",
    "startTimeUtc",
    "endTimeUtc",
    "tags",
    "properties",
    "parentRunId",
]


Result = CliResult
call = call_cli


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, one stderr line 'runner: error: ...' with the fragments."""
    assert result.code == 2, result
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("runner: error: ")
    for fragment in fragments:
        assert fragment in line


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    # Whatever a test forgets to pass, it never touches the user's default workspace.
    monkeypatch.setenv("RUNNER_WORKSPACE", str(tmp_path / "default-ws"))
    monkeypatch.chdir(tmp_path)
    return Workspace.create(tmp_path / "ws")


@dataclass
class Runs:
    ws: Workspace
    first: Run  # Completed, lr=0.01
    best: Run  # Completed, best + lr=0.02, property algo=sgd
    running: Run  # Running, lr=0.03, one child
    child: Run


@pytest.fixture
def runs(workspace: Workspace) -> Runs:
    exp = Experiment(workspace, "mnist")
    first = exp.start_logging()
    first.tag("lr", "0.01")
    first.log("accuracy", 0.90)
    first.complete()
    best = exp.start_logging(display_name="the best")
    best.set_tags({"best": None, "lr": "0.02"})
    best.add_properties({"algo": "sgd"})
    best.log("accuracy", 0.97)
    best.log("loss", 0.5)
    best.log("loss", 0.25)
    best.complete()
    running = exp.start_logging()
    running.tag("lr", "0.03")
    child = running.child_run(name="fold-1")
    Experiment(workspace, "other").start_logging().complete()
    return Runs(workspace, first, best, running, child)


def ids(result: Result) -> list[str]:
    return [r["runId"] for r in result.json]


# -- experiment list ----------------------------------------------------------------------


def test_experiment_list(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "experiment", "list")
    assert result.code == 0
    assert result.json == [{"name": "mnist"}, {"name": "other"}]
    assert result.err == ""


# -- run list -------------------------------------------------------------------------------


def test_run_list_gives_summaries_newest_first(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist")
    assert result.code == 0
    listed = result.json
    assert [r["runId"] for r in listed] == [runs.running.id, runs.best.id, runs.first.id]
    assert all(list(r) == SUMMARY_KEYS for r in listed)
    best = listed[1]
    assert best["number"] == 2
    assert best["displayName"] == "the best"
    assert best["status"] == "Completed"
    assert best["type"] == "azureml.interactive"
    assert best["target"] == "sdk"  # interactive runs, as azureml records them
    assert best["startTimeUtc"].endswith("Z")
    assert best["endTimeUtc"].endswith("Z")
    assert best["tags"] == {"best": None, "lr": "0.02"}
    assert best["properties"] == {"algo": "sgd"}
    assert best["parentRunId"] is None
    assert listed[0]["endTimeUtc"] is None  # still running


def test_run_list_filters_by_status(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--status", "Completed")
    assert ids(result) == [runs.best.id, runs.first.id]


def test_run_list_rejects_an_unknown_status_naming_the_valid_ones(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--status", "Done")
    assert_user_error(result, "'Done' is not a run status", "Completed", "NotResponding")


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (["lr=0.02"], ["best"]),
        (["best"], ["best"]),
        (["lr"], ["running", "best", "first"]),
        (["best", "lr=0.02"], ["best"]),
        (["best", "lr=0.01"], []),
        (["lr=0.01", "lr"], ["first"]),
        (["nope"], []),
    ],
)
def test_run_list_filters_by_tags(capsys, runs: Runs, conditions, expected) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--tags", *conditions)
    assert result.code == 0
    assert ids(result) == [getattr(runs, name).id for name in expected]


def test_run_list_filters_by_properties(capsys, runs: Runs) -> None:
    base = ["-w", runs.ws.path, "run", "list", "-e", "mnist"]
    assert ids(call(capsys, *base, "--properties", "algo=sgd")) == [runs.best.id]
    assert ids(call(capsys, *base, "--properties", "algo")) == [runs.best.id]
    assert ids(call(capsys, *base, "--properties", "algo=adam")) == []


def test_run_list_rejects_two_values_for_one_key(capsys, runs: Runs) -> None:
    result = call(
        capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--tags", "lr=1", "lr=2"
    )
    assert_user_error(result, "--tags asks for lr=1 and lr=2")


def test_run_list_rejects_a_condition_without_key(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--tags", "=x")
    assert_user_error(result, "--tags '=x' has no key")


def test_run_list_include_children(capsys, runs: Runs) -> None:
    base = ["-w", runs.ws.path, "run", "list", "-e", "mnist"]
    assert runs.child.id not in ids(call(capsys, *base))
    listed = call(capsys, *base, "--include-children").json
    child = next(r for r in listed if r["runId"] == runs.child.id)
    assert child["parentRunId"] == runs.running.id
    assert child["displayName"] == "fold-1"


def test_run_list_last(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--last", "2")
    assert ids(result) == [runs.running.id, runs.best.id]
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--last", "0")
    assert_user_error(result, "--last", "must be 1 or more")


def test_run_list_query(capsys, runs: Runs) -> None:
    base = ["-w", runs.ws.path, "run", "list", "-e", "mnist"]
    result = call(capsys, *base, "--query", "[?status=='Completed'].runId")
    assert result.json == [runs.best.id, runs.first.id]
    result = call(capsys, *base, "--query", "[?tags.lr=='0.03'] | [0].{id: runId, n: number}")
    assert result.json == {"id": runs.running.id, "n": 3}
    result = call(capsys, *base, "--query", "length(@)")
    assert result.json == 3


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("[?status==", "is not a valid JMESPath expression"),
        ("runId runId", "is not a valid JMESPath expression"),
        ("nosuchfunction(@)", "failed: Unknown function"),
        ("length(@, `1`)", "failed: Expected 1 argument"),
    ],
)
def test_a_bad_query_is_one_line_and_exit_2(capsys, runs: Runs, expression, fragment) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnist", "--query", expression)
    assert_user_error(result, f"--query {expression!r}", fragment)


def test_run_list_table(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "-o", "table", "run", "list", "-e", "mnist")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "Number",
        "RunId",
        "Status",
        "Target",
        "StartTimeUtc",
        "EndTimeUtc",
        "Tags",
    ]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + 3
    # aligned: every column starts where its header starts
    status_at = lines[0].index("Status")
    assert [line[status_at:].split()[0] for line in lines[2:]] == [
        "Running",
        "Completed",
        "Completed",
    ]
    assert "best, lr=0.02" in lines[3]


def test_table_of_an_object_is_key_value_rows(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "show", "-r", runs.best.id, "-o", "table")
    assert result.code == 0
    rows = {line.split()[0]: line for line in result.out.splitlines()[2:]}
    assert rows["status"].split()[1] == "Completed"
    assert "accuracy=0.97" in rows["metrics"]


def test_tsv(capsys, runs: Runs) -> None:
    result = call(
        capsys,
        "-w",
        runs.ws.path,
        "run",
        "list",
        "-e",
        "mnist",
        "--status",
        "Completed",
        "-o",
        "tsv",
        "--query",
        "[].[runId, number, tags]",
    )
    assert result.out.splitlines() == [
        f'{runs.best.id}\t2\t{{"best":null,"lr":"0.02"}}',
        f'{runs.first.id}\t1\t{{"lr":"0.01"}}',
    ]


def test_run_list_of_an_unknown_experiment_is_an_error_listing_the_known(
    capsys, runs: Runs
) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list", "-e", "mnsit")
    assert_user_error(result, "no experiment 'mnsit'", "mnist, other")
    assert "mnsit" not in runs.ws.experiments  # looking did not create it


def test_run_list_without_experiment(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "list")
    assert_user_error(result, "no experiment given", "-e EXPERIMENT", "runner folder attach -e")


def test_global_options_go_before_or_after_the_command(capsys, runs: Runs) -> None:
    before = call(capsys, "-w", runs.ws.path, "-o", "tsv", "run", "list", "-e", "mnist")
    after = call(capsys, "run", "list", "-e", "mnist", "-w", runs.ws.path, "-o", "tsv")
    assert before.code == after.code == 0
    assert before.out == after.out
    assert len(after.out.splitlines()) == 3


# -- run show -------------------------------------------------------------------------------


def test_run_show(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "show", "-r", runs.best.id)
    assert result.code == 0
    shown = result.json
    assert shown["runId"] == runs.best.id
    assert shown["experimentName"] == "mnist"
    assert shown["status"] == "Completed"
    assert shown["displayName"] == "the best"
    assert shown["properties"] == {"algo": "sgd"}
    assert shown["tags"] == {"best": None, "lr": "0.02"}
    assert shown["metrics"] == {"accuracy": 0.97, "loss": [0.5, 0.25]}
    for key in ("target", "startTimeUtc", "endTimeUtc", "runDefinition", "logFiles", "submittedBy"):
        assert key in shown


def test_run_show_of_a_child(capsys, runs: Runs) -> None:
    result = call(
        capsys, "-w", runs.ws.path, "run", "show", "-r", runs.child.id, "--query", "parentRunId"
    )
    assert result.json == runs.running.id


def test_run_show_unknown_run(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "show", "-r", "nope")
    assert_user_error(result, "no run 'nope'")


# -- run update -----------------------------------------------------------------------------


def test_run_update_adds_and_removes_tags(capsys, runs: Runs) -> None:
    result = call(
        capsys,
        "-w",
        runs.ws.path,
        "run",
        "update",
        "-r",
        runs.first.id,
        "--add-tag",
        "stage=tuning",
        "--add-tag",
        "keep",
        "--add-tag",
        "expr=a=b",
        "--remove-tag",
        "lr",
    )
    assert result.code == 0
    expected = {"stage": "tuning", "keep": None, "expr": "a=b"}
    assert result.json == expected
    assert runs.first.get_tags() == expected
    assert result.err == ""


def test_run_update_notes_a_tag_it_could_not_remove(capsys, runs: Runs) -> None:
    result = call(
        capsys, "-w", runs.ws.path, "run", "update", "-r", runs.first.id, "--remove-tag", "ghost"
    )
    assert result.code == 0
    assert result.json == {"lr": "0.01"}
    assert result.err_lines == [
        f"runner: note: run {runs.first.id} had no tag 'ghost'; nothing to remove"
    ]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--add-tag", "=v"], "--add-tag '=v' has no key"),
        (["--add-tag", ""], "--add-tag '' has no key"),
        ([], "nothing to update"),
        (["--add-tag", "a=1", "--remove-tag", "a"], "tag 'a' is both added and removed"),
    ],
)
def test_run_update_mistakes(capsys, runs: Runs, options, fragment) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "update", "-r", runs.first.id, *options)
    assert_user_error(result, fragment)
    assert runs.first.get_tags() == {"lr": "0.01"}  # nothing changed


def test_run_update_unknown_run(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "update", "-r", "nope", "--add-tag", "a")
    assert_user_error(result, "no run 'nope'")


# -- run cancel -----------------------------------------------------------------------------


def test_run_cancel_a_running_run(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "cancel", "-r", runs.running.id)
    assert result.code == 0
    assert result.json == {"runId": runs.running.id, "status": "Canceled"}
    assert runs.running.get_status() == "Canceled"
    assert runs.child.get_status() == "Canceled"


def test_run_cancel_a_finished_run_is_a_note_and_exit_0(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "cancel", "-r", runs.first.id)
    assert result.code == 0
    assert result.json == {"runId": runs.first.id, "status": "Completed"}
    assert len(result.err_lines) == 1
    assert result.err_lines[0].startswith("runner: note: ")
    assert "already Completed" in result.err


# -- run logs -------------------------------------------------------------------------------


def test_run_logs_prints_the_log_files(capsys, runs: Runs, tmp_path: Path) -> None:
    log = tmp_path / "driver.txt"
    log.write_text("epoch 1\nepoch 2 ü\n", encoding="utf-8")
    runs.first.upload_file("azureml-logs/70_driver_log.txt", log)
    result = call(capsys, "-w", runs.ws.path, "run", "logs", "-r", runs.first.id)
    assert result.code == 0
    assert result.out == "epoch 1\nepoch 2 ü\n"


def test_run_logs_with_several_files_names_each(capsys, runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("prep\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("train\n", encoding="utf-8")
    runs.first.upload_files(
        ["logs/55_environment_prep_log.txt", "logs/70_driver_log.txt"],
        [tmp_path / "a.txt", tmp_path / "b.txt"],
    )
    result = call(capsys, "-w", runs.ws.path, "run", "logs", "-r", runs.first.id)
    assert result.out == (
        "==> logs/55_environment_prep_log.txt <==\nprep\n\n==> logs/70_driver_log.txt <==\ntrain\n"
    )


def test_run_logs_of_a_run_without_logs(capsys, runs: Runs) -> None:
    result = call(capsys, "-w", runs.ws.path, "run", "logs", "-r", runs.first.id)
    assert result.code == 0
    assert result.out == ""
    assert result.err_lines == [
        f"runner: note: run {runs.first.id} has no log files yet (status Completed)"
    ]


def test_run_logs_unknown_run(capsys, runs: Runs) -> None:
    assert_user_error(
        call(capsys, "-w", runs.ws.path, "run", "logs", "-r", "nope"), "no run 'nope'"
    )


def test_run_logs_follow_streams_until_the_run_ends(capsys, runs: Runs) -> None:
    pytest.importorskip("runner.logstream")
    live = runs.ws.path / "runs" / runs.running.id / "logs"
    live.mkdir(parents=True)
    (live / "70_driver_log.txt").write_text("step 1\nstep 2\n", encoding="utf-8")
    # Whether the run ends before or while the CLI follows it, the whole log is printed.
    ender = threading.Timer(0.3, runs.running.complete)
    ender.start()
    try:
        result = call(capsys, "-w", runs.ws.path, "run", "logs", "-r", runs.running.id, "--follow")
    finally:
        ender.join()
    assert result.code == 0
    assert result.out == "step 1\nstep 2\n"


def test_run_logs_follow_of_a_finished_run_prints_its_logs(capsys, runs: Runs, tmp_path) -> None:
    (tmp_path / "d.txt").write_text("done\n", encoding="utf-8")
    runs.first.upload_file("azureml-logs/70_driver_log.txt", tmp_path / "d.txt")
    result = call(capsys, "-w", runs.ws.path, "run", "logs", "-r", runs.first.id, "-f")
    assert (result.code, result.out) == (0, "done\n")


# -- run download ---------------------------------------------------------------------------


def test_run_download(capsys, runs: Runs, tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"weights")
    runs.best.upload_files(["outputs/model.bin", "outputs/sub/notes.txt", "other.txt"], [src] * 3)
    dest = tmp_path / "dl"
    result = call(
        capsys,
        "-w",
        runs.ws.path,
        "run",
        "download",
        "-r",
        runs.best.id,
        "-p",
        "outputs",
        "-d",
        dest,
    )
    assert result.code == 0
    assert sorted(result.json) == sorted(
        [str(dest / "outputs" / "model.bin"), str(dest / "outputs" / "sub" / "notes.txt")]
    )
    assert (dest / "outputs" / "model.bin").read_bytes() == b"weights"
    assert not (dest / "other.txt").exists()


def test_run_download_defaults_to_every_file_into_the_current_folder(
    capsys, runs: Runs, tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "x").write_text("x", encoding="utf-8")
    runs.best.upload_file("outputs/x.txt", tmp_path / "x")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = call(capsys, "-w", runs.ws.path, "run", "download", "-r", runs.best.id)
    assert result.json == [str(Path("outputs") / "x.txt")]
    assert (here / "outputs" / "x.txt").read_text(encoding="utf-8") == "x"


def test_run_download_nothing_matches(capsys, runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x", encoding="utf-8")
    runs.best.upload_file("outputs/x.txt", tmp_path / "x")
    result = call(
        capsys,
        "-w",
        runs.ws.path,
        "run",
        "download",
        "-r",
        runs.best.id,
        "-p",
        "logs",
        "-d",
        tmp_path,
    )
    assert result.code == 0
    assert result.json == []
    assert len(result.err_lines) == 1
    assert "has no files under 'logs'; its files: outputs/x.txt" in result.err


def test_run_download_refuses_a_prefix_that_climbs_out(capsys, runs: Runs, tmp_path) -> None:
    result = call(
        capsys,
        "-w",
        runs.ws.path,
        "run",
        "download",
        "-r",
        runs.best.id,
        "-p",
        "../etc",
        "-d",
        tmp_path,
    )
    assert_user_error(result, "'..'")


# -- run submit-script ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "head", "tail"),
    [
        (
            ["run", "submit-script", "train.py", "--lr", "0.1", "-e", "exp"],
            ["run", "submit-script", "train.py"],
            ["--lr", "0.1", "-e", "exp"],
        ),
        (
            [
                "-w",
                "W",
                "run",
                "submit-script",
                "-e",
                "x",
                "-c",
                "local",
                "--show-output",
                "t.py",
                "--",
                "a",
            ],
            ["-w", "W", "run", "submit-script", "-e", "x", "-c", "local", "--show-output", "t.py"],
            ["--", "a"],
        ),
        (
            ["run", "submit-script", "--experiment-name=x", "-ex", "--", "-odd.py", "-e"],
            ["run", "submit-script", "--experiment-name=x", "-ex", "--", "-odd.py"],
            ["-e"],
        ),
        (["run", "submit-script", "-e", "x"], ["run", "submit-script", "-e", "x"], []),
        (["run", "list", "-e", "x"], ["run", "list", "-e", "x"], None),
    ],
)
def test_the_script_arguments_are_cut_off_before_argparse(argv, head, tail) -> None:
    assert cli._split_script_args(argv) == (head, tail)


def test_runner_options_after_the_script_belong_to_the_script(capsys, workspace: Workspace) -> None:
    Path("train.py").write_text("print('hi')\n", encoding="utf-8")
    result = call(
        capsys, "-w", workspace.path, "run", "submit-script", "train.py", "--lr", "0.1", "-e", "exp"
    )
    assert_user_error(result, "'-e' came after the script", "put runner's options before SCRIPT")
    assert workspace.experiments == {}  # nothing was submitted


def test_submit_script_without_experiment(capsys, workspace: Workspace) -> None:
    Path("train.py").write_text("print('hi')\n", encoding="utf-8")
    result = call(capsys, "-w", workspace.path, "run", "submit-script", "train.py")
    assert_user_error(result, "no experiment given")


def test_submit_script_missing_script(capsys, workspace: Workspace) -> None:
    result = call(capsys, "-w", workspace.path, "run", "submit-script", "-e", "exp", "nope.py")
    assert_user_error(result, "script 'nope.py' not found")
    result = call(capsys, "-w", workspace.path, "run", "submit-script", "-e", "exp")
    assert_user_error(result, "required: SCRIPT")


def test_submit_script_unknown_target(capsys, workspace: Workspace) -> None:
    Path("train.py").write_text("print('hi')\n", encoding="utf-8")
    result = call(
        capsys, "-w", workspace.path, "run", "submit-script", "-e", "exp", "-t", "gpu", "train.py"
    )
    assert_user_error(result, "no compute target 'gpu'")


def test_submit_script_unknown_runconfig(capsys, workspace: Workspace) -> None:
    Path("train.py").write_text("print('hi')\n", encoding="utf-8")
    result = call(
        capsys, "-w", workspace.path, "run", "submit-script", "-e", "exp", "-c", "gpu", "train.py"
    )
    assert_user_error(result, "no run configuration at", "gpu.runconfig")


@pytest.fixture
def stop_daemon(workspace: Workspace):
    """Submitting starts the workspace's daemon; stop it after the test."""
    yield
    from runner import daemon_client

    daemon_client.stop_daemon(workspace.path)


def test_submit_script_passes_the_arguments_verbatim(
    capsys, workspace: Workspace, stop_daemon
) -> None:
    pytest.importorskip("runner.submit")
    Path("train.py").write_text("print('hi')\n", encoding="utf-8")
    result = call(
        capsys,
        "-w",
        workspace.path,
        "run",
        "submit-script",
        "-e",
        "exp",
        "train.py",
        "--lr",
        "0.1",
        "-e",
        "exp",
        "--",
        "x y",
    )
    assert result.code == 0, result.err
    submitted = result.json
    assert list(submitted) == SUMMARY_KEYS
    assert submitted["type"] == "azureml.scriptrun"
    run = Run.get(workspace, submitted["runId"])
    assert run.experiment.name == "exp"
    definition = run.get_details()["runDefinition"]
    assert definition["arguments"] == ["--lr", "0.1", "-e", "exp", "--", "x y"]
    assert definition["script"] == "train.py"


def test_submit_script_uses_the_folder_defaults(
    capsys, workspace: Workspace, tmp_path: Path, stop_daemon
) -> None:
    pytest.importorskip("runner.submit")
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n", encoding="utf-8")
    assert call(capsys, "-w", workspace.path, "folder", "attach", "-e", "mnist").code == 0
    result = call(capsys, "run", "submit-script", "-c", "local", "-d", "src", "train.py")
    assert result.code == 0, result.err
    run = Run.get(workspace, result.json["runId"])
    assert run.experiment.name == "mnist"
    assert run.get_details()["runDefinition"]["sourceDirectory"] == str(src.resolve())


def run_cli_process(
    *argv: str, cwd: Path, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.slow
def test_submit_script_show_output_waits_and_exits_by_the_status(
    workspace: Workspace, tmp_path: Path, stop_daemon
) -> None:
    pytest.importorskip("runner.submit")
    pytest.importorskip("runner.logstream")
    (tmp_path / "ok.py").write_text("print('hello from the run')\n", encoding="utf-8")
    (tmp_path / "bad.py").write_text(
        "import sys\nprint('about to fail')\nsys.exit(3)\n", encoding="utf-8"
    )
    base = ["-w", str(workspace.path), "run", "submit-script", "-e", "exp", "--show-output"]
    ok = run_cli_process(*base, "ok.py", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "hello from the run" in ok.stdout
    bad = run_cli_process(*base, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1
    assert "about to fail" in bad.stdout
    assert bad.stderr.splitlines()[-1].startswith("runner: run ")
    assert "ended Failed" in bad.stderr


# -- folder attach --------------------------------------------------------------------------


def test_folder_attach(capsys, workspace: Workspace, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    result = call(capsys, "-w", workspace.path, "folder", "attach", "-e", "mnist", "-p", project)
    assert result.code == 0, result.err
    shown = result.json
    assert shown["workspacePath"] == str(workspace.path)
    assert shown["experimentName"] == "mnist"
    runner_dir = project / ".runner"
    assert shown["files"] == [
        {"path": str(runner_dir / "config.json"), "action": "created"},
        {"path": str(runner_dir / "local.runconfig"), "action": "created"},
        {"path": str(runner_dir / "docker.runconfig"), "action": "created"},
    ]
    config = json.loads((runner_dir / "config.json").read_text(encoding="utf-8"))
    assert config["experiment_name"] == "mnist"
    assert Workspace.from_config(project) == workspace
    local = RunConfiguration.load(path=str(project), name="local")
    assert local.target == "local"
    assert not local.environment.docker.enabled
    docker = RunConfiguration.load(path=str(project), name="docker")
    assert docker.environment.docker.enabled
    docker.environment.validate()

    # Attaching again keeps the default experiment and the (maybe edited) runconfigs.
    result = call(capsys, "-w", workspace.path, "folder", "attach", "--path", project)
    assert result.json["experimentName"] == "mnist"
    assert [f["action"] for f in result.json["files"]] == ["updated", "kept", "kept"]


def test_folder_attach_default_experiment_is_used_below_the_folder(
    capsys, workspace: Workspace, tmp_path: Path, monkeypatch
) -> None:
    Experiment(workspace, "mnist").start_logging().complete()
    assert call(capsys, "-w", workspace.path, "folder", "attach", "-e", "mnist").code == 0
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    result = call(capsys, "run", "list")  # workspace and experiment from .runner/config.json
    assert result.code == 0, result.err
    assert len(result.json) == 1


def test_folder_attach_bad_experiment_name(capsys, workspace: Workspace, tmp_path: Path) -> None:
    result = call(capsys, "-w", workspace.path, "folder", "attach", "-e", "no spaces")
    assert_user_error(result, "experiment name 'no spaces' is not valid")
    assert not (tmp_path / ".runner").exists()


# -- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--address", "h", "--username", "u"], "--private-key-file FILE or --password-stdin"),
        (
            ["--address", "h", "--username", "u", "--private-key-file", "/no/such/key"],
            "no file at /no/such/key",
        ),
        (["--username", "u", "--private-key-file", "k"], "required: --address"),
        (["--address", "h", "--username", "u", "--ssh-port", "70000"], "between 1 and 65535"),
    ],
)
def test_target_attach_mistakes(capsys, workspace: Workspace, options, fragment) -> None:
    result = call(capsys, "-w", workspace.path, "target", "attach", "box", *options)
    assert_user_error(result, fragment)


# -- environments ---------------------------------------------------------------------------


def test_env_list_and_show(capsys, workspace: Workspace) -> None:
    env = Environment("sklearn-env")
    env.python.user_managed_dependencies = True
    env.register(workspace)
    env.environment_variables = {"MODE": "fast"}
    env.register(workspace)
    base = ["-w", workspace.path, "env"]
    assert call(capsys, *base, "list").json == [
        {
            "name": "sklearn-env",
            "version": "2",
            "userManagedDependencies": True,
            "dockerEnabled": False,
            "baseImage": Environment("x").docker.base_image,
        }
    ]
    latest = call(capsys, *base, "show", "sklearn-env").json
    assert latest["version"] == "2"
    assert latest["environmentVariables"] == {"MODE": "fast"}
    assert latest == Environment.get(workspace, "sklearn-env").to_dict()
    first = call(capsys, *base, "show", "sklearn-env", "--version", "1").json
    assert first["environmentVariables"] == {}
    assert_user_error(call(capsys, *base, "show", "nope"), "no environment 'nope'")
    assert_user_error(call(capsys, *base, "show", "sklearn-env", "--version", "x"), "--version")


def test_env_list_empty(capsys, workspace: Workspace) -> None:
    result = call(capsys, "-w", workspace.path, "env", "list")
    assert (result.code, result.json) == (0, [])
    assert call(capsys, "-w", workspace.path, "env", "list", "-o", "table").out == ""


# -- usage, help, workspaces ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND; see 'runner --help'"),
        (["run"], "required: COMMAND; see 'runner run --help'"),
        (["deploy"], "invalid choice: 'deploy'"),
        (["-o", "xml", "experiment", "list"], "invalid choice: 'xml'"),
        (["run", "show"], "required: -r/--run; see 'runner run show --help'"),
        (["run", "list", "-e", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "list", "--exp", "x"], "unrecognized arguments: --exp"),  # no abbreviations
        (["studio", "--port", "x"], "'x' is not a port number"),
    ],
)
def test_usage_errors_are_one_line(capsys, workspace: Workspace, argv, fragment) -> None:
    result = call(capsys, "-w", workspace.path, *argv) if argv else call(capsys)
    assert_user_error(result, fragment, "--help")
    assert "usage:" not in result.err


COMMANDS = [
    [],
    ["experiment"],
    ["run"],
    ["folder"],
    ["target"],
    ["env"],
    ["experiment", "list"],
    ["run", "list"],
    ["run", "show"],
    ["run", "update"],
    ["run", "cancel"],
    ["run", "logs"],
    ["run", "download"],
    ["run", "submit-script"],
    ["folder", "attach"],
    ["target", "list"],
    ["target", "attach"],
    ["target", "detach"],
    ["env", "list"],
    ["env", "show"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "runner")
def test_every_command_has_help_with_an_example(capsys, command) -> None:
    result = call(capsys, *command, "--help")
    assert result.code == 0
    assert result.err == ""
    assert "example" in result.out
    assert f"runner {' '.join(command)}".strip() in result.out


def test_workspace_that_does_not_exist(capsys, tmp_path: Path) -> None:
    result = call(capsys, "-w", tmp_path / "nowhere", "experiment", "list")
    assert_user_error(result, "no runner workspace at")


def test_default_workspace_comes_from_runner_workspace(capsys, tmp_path: Path, monkeypatch) -> None:
    default = tmp_path / "default-ws"
    monkeypatch.setenv("RUNNER_WORKSPACE", str(default))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    Experiment(Workspace.from_config(), "hello").start_logging().complete()
    result = call(capsys, "experiment", "list")
    assert result.json == [{"name": "hello"}]


def test_version(capsys) -> None:
    result = call(capsys, "--version")
    assert result.code == 0
    assert result.out.startswith("runner ")


def test_render_table_shapes() -> None:
    assert cli.render_table([]) == ""
    assert cli.render_table("text") == "text"
    assert cli.render_table(["a", "bb"]).splitlines() == ["Result", "------", "a", "bb"]
    wide = cli.render_table([{"k": "x" * 100, "n": None, "t": "a\tb\nc"}])
    row = wide.splitlines()[2]
    assert "x" * 57 + "..." in row
    assert "a b c" in row


# -- real processes -------------------------------------------------------------------------


def test_python_dash_m_runner_help(tmp_path: Path) -> None:
    result = run_cli_process("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "runner run submit-script" in result.stdout
    assert result.stderr == ""


def test_python_dash_m_runner_user_error_is_one_line(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    result = run_cli_process("run", "show", "-r", "nope", "-w", str(ws.path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "runner: error: no run 'nope' in workspace ws; list runs with `runner run list -e EXPERIMENT`"
    ]
