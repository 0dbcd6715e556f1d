"""The life of a script run on the local target: statuses in order, its own session, a
fresh copy of the snapshot as working folder, the user-managed interpreter (and one
without runner installed), arguments and variables intact, failures as data."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import Environment, Experiment, RunConfiguration, ScriptRunConfig, Workspace
from runner.errors import RunFailedError, TargetUnavailableError
from tests.helpers import daemon_pid
from tests.submit.conftest import (
    Kit,
    StatusRecorder,
    assert_never_backwards,
    user_metrics,
)

#: A Python without runner installed (the in-run client must still import there).
PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")
LIFE = ["NotStarted", "Starting", "Preparing", "Queued", "Running", "Finalizing"]


def _time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def assert_subsequence(history: list[str], canonical: list[str]) -> None:
    it = iter(canonical)
    assert all(s in it for s in history), f"{history} is not in the order {canonical}"


def test_hello_goes_through_every_status_in_order(
    kit: Kit, statuses: StatusRecorder, tmp_path: Path
) -> None:
    out, started, go = tmp_path / "report.json", kit.marker("started"), kit.marker("go")
    run = kit.submit(
        "sr_probe.py", env={"SR_OUT": out, "SR_STARTED": started, "SR_GO": go}, grace_s=1
    )
    assert run.status in ("Starting", "Preparing", "Queued", "Running")
    kit.wait_file(started)
    assert run.get_status() == "Running"
    running = run.get_details()
    assert "endTimeUtc" not in running
    assert running["runDefinition"]["script"] == "sr_probe.py"
    go.touch()
    details = run.wait_for_completion()
    assert details["status"] == "Completed"
    assert run.get_status() == "Completed"
    assert "error" not in details

    history = statuses.history(run.id)
    assert_never_backwards(history)
    assert_subsequence(history, [*LIFE, "Completed"])
    # Starting lasts while the daemon starts; Running while the script waits.
    assert {"Starting", "Running", "Completed"} <= set(history), history
    assert _time(details["startTimeUtc"]) <= _time(details["endTimeUtc"])
    assert details["target"] == "local"
    assert details["properties"]["ContentSnapshotId"]
    assert user_metrics(run) == {"v": [0, 1, 2], "after_go": 1}
    assert "outputs/probe.txt" in run.get_file_names()


def test_own_session_fresh_snapshot_copy_and_the_submitting_interpreter(
    kit: Kit, exp: Experiment, tmp_path: Path
) -> None:
    src = kit.source("sr_probe.py")
    (src / "data").mkdir()
    (src / "data" / "input.txt").write_text("input")
    before = sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    reports = []
    runs = []
    for i in range(2):
        out = tmp_path / f"report{i}.json"
        cfg = kit.config(
            "sr_probe.py", source=src, env={"SR_OUT": out, "SR_SCRATCH": "scratch.txt"}
        )
        run = exp.submit(cfg)
        assert run.wait_for_completion()["status"] == "Completed"
        runs.append(run)
        reports.append(json.loads(out.read_text()))

    for run, report in zip(runs, reports):
        assert report["run_id"] == run.id
        assert report["run_type"] == "Run"
        assert report["parent"] is None
        # a copy of the snapshot, not the source folder, and fresh for every run
        cwd = Path(report["cwd"])
        assert src not in (cwd, *cwd.parents)
        assert exp.workspace.path in cwd.parents
        files = [f for f in report["files"] if "__pycache__" not in f]
        assert files == ["data/input.txt", "sr_common.py", "sr_probe.py"]
        # its own session, led by the keeper that started it; not the daemon's, not ours
        assert report["sid"] == report["pgid"] == report["ppid"]
        assert report["sid"] != os.getsid(0)
        assert report["sid"] != report["pid"]
        assert os.path.realpath(report["executable"]) == os.path.realpath(sys.executable)
        assert report["stdin"] == ""  # nothing of ours leaks into its stdin
        # stdin, stdout, stderr (and the listing's own descriptor): none of the daemon's
        # sockets or database files leak into the run
        assert set(report["fds"]) <= {0, 1, 2, 3}, report["fds"]
    assert reports[0]["sid"] != reports[1]["sid"]
    daemon = daemon_pid(exp.workspace.path)
    assert daemon is not None
    assert os.getsid(daemon) not in (reports[0]["sid"], reports[1]["sid"])
    # what the first run wrote into its working folder did not reach the source folder
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == before


def test_arguments_and_variables_reach_the_script_intact_from_a_weird_path(
    kit: Kit, weird_path: Path, tmp_path: Path
) -> None:
    ws = Workspace.create(weird_path / "ws")
    exp = Experiment(ws, "weird")
    src = kit.source("sr_probe.py", folder=weird_path / "src dir")
    out = tmp_path / "report.json"
    arguments = [
        "two words",
        "ünïcødé 日本語",
        'it\'s "quoted"',
        "semi;colon && echo injected",
        "$HOME `id` $(id)",
        "*",
        "new\nline",
        "",
        "--flag=a b",
        3,
        2.5,
    ]
    env = {
        "SR_OUT": str(out),
        "SR_VAR_SPACES": "value with spaces ü",
        "SR_VAR_EMPTY": "",
        "SR_VAR_WEIRD": "$HOME;'\"\n",
    }
    cfg = kit.config("sr_probe.py", arguments, env=env, source=src)
    run = exp.submit(cfg)
    assert run.wait_for_completion()["status"] == "Completed"
    report = json.loads(out.read_text())
    assert report["argv"] == [str(a) for a in arguments]
    assert report["env"] == {k: v for k, v in env.items() if k.startswith("SR_VAR")}
    assert report["run_id"] == run.id
    assert run.get_details()["runDefinition"]["sourceDirectory"] == str(src)


def test_a_saved_run_configuration_drives_the_run(
    kit: Kit, exp: Experiment, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    rc = RunConfiguration()
    rc.environment_variables = {"SR_OUT": str(out), "SR_VAR_FROM_FILE": "loaded"}
    env = Environment("with-vars")
    env.python.user_managed_dependencies = True
    env.environment_variables = {"SR_VAR_FROM_ENV": "env", "SR_VAR_FROM_FILE": "overridden"}
    rc.environment = env
    rc.save(path=str(tmp_path), name="probe")
    loaded = RunConfiguration.load(str(tmp_path), "probe")
    cfg = ScriptRunConfig(kit.source("sr_probe.py"), "sr_probe.py", run_config=loaded)
    details = exp.submit(cfg).wait_for_completion()
    assert details["status"] == "Completed"
    assert details["runDefinition"]["cancelGraceSeconds"] == 10  # the default grace
    # the environment's variables, and the run configuration's over them
    assert json.loads(out.read_text())["env"] == {
        "SR_VAR_FROM_FILE": "loaded",
        "SR_VAR_FROM_ENV": "env",
    }


def test_an_interpreter_without_runner_installed(kit: Kit, exp: Experiment, tmp_path: Path) -> None:
    if not PY39.exists():
        pytest.skip(f"{PY39} is not on this machine (a Python without runner installed)")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [str(PY39), "-c", "import runner"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        check=False,
    )
    assert probe.returncode != 0, "this interpreter has runner installed: the test proves nothing"

    env = Environment("py39")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = str(PY39)
    out = tmp_path / "report.json"
    cfg = kit.config("sr_probe.py", env={"SR_OUT": out}, environment=env)
    run = exp.submit(cfg)
    assert run.wait_for_completion()["status"] == "Completed"
    report = json.loads(out.read_text())
    assert report["version"] == [3, 9]
    assert os.path.realpath(report["executable"]) == os.path.realpath(PY39)
    # runner's own standard-library client, put there by runner
    assert exp.workspace.path in Path(report["runner_file"]).parents
    assert report["run_id"] == run.id
    assert run.get_metrics()["v"] == [0, 1, 2]


@pytest.mark.parametrize(("mode", "code"), [("raise", 1), ("3", 3)])
def test_a_failing_script_is_data(kit: Kit, statuses: StatusRecorder, mode: str, code: int) -> None:
    run = kit.submit("sr_fail.py", mode)
    with pytest.raises(
        RunFailedError, match=rf"failed: the script exited with code {code}"
    ) as info:
        run.wait_for_completion()
    assert info.value.run_exit_code == code
    assert "about to fail on stderr" in info.value.log_tail
    details = run.get_details()
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["exitCode"] == code
    assert error["kind"] == "script_failed"
    assert "about to fail on stdout" in error["logTail"]
    if mode == "raise":
        assert "ZeroDivisionError: division by zero" in error["logTail"]
    assert _time(details["startTimeUtc"]) <= _time(details["endTimeUtc"])
    # what the script recorded before it crashed survived
    assert user_metrics(run) == {"before_crash": [0, 1, 2, 3, 4]}
    assert run.get_tags()["stage"] == "crashing"
    run.download_file("outputs/partial.txt", str(kit.tmp / "partial.txt"))
    assert (kit.tmp / "partial.txt").read_text() == "written before the crash"
    history = statuses.history(run.id)
    assert_never_backwards(history)
    assert history[-1] == "Failed"
    assert "Running" in history
    # raise_on_error=False hands the details back instead
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_many_runs_at_once(kit: Kit, exp: Experiment, statuses: StatusRecorder) -> None:
    src = kit.source("sr_probe.py")
    runs = [exp.submit(kit.config("sr_probe.py", [i], source=src)) for i in range(6)]
    for run in runs:
        assert run.wait_for_completion()["status"] == "Completed"
        assert run.get_metrics()["v"] == [0, 1, 2]
        assert_never_backwards(statuses.history(run.id))
    assert sorted(r.number for r in runs) == [1, 2, 3, 4, 5, 6]
    assert {json.dumps(r.get_details()["runDefinition"]["arguments"]) for r in runs} == {
        json.dumps([str(i)]) for i in range(6)
    }


def test_a_command_instead_of_a_script(kit: Kit, exp: Experiment) -> None:
    src = kit.source()
    shell = ScriptRunConfig(
        src, command='echo "shell says $1 and $2"; exit 4', arguments=["a b", 5]
    )
    argv = ScriptRunConfig(src, command=[sys.executable, "-c", "import sys; print(sys.argv[1:])"])
    argv.arguments = ["x y", "z"]
    shell_run, argv_run = exp.submit(shell), exp.submit(argv)
    with pytest.raises(RunFailedError, match=r"exited with code 4"):
        shell_run.wait_for_completion()
    logs = shell_run.get_details_with_logs()["logFiles"]
    assert "shell says a b and 5\n" in logs["azureml-logs/70_driver_log.txt"]
    assert argv_run.wait_for_completion()["status"] == "Completed"
    logs = argv_run.get_details_with_logs()["logFiles"]
    assert "['x y', 'z']\n" in logs["azureml-logs/70_driver_log.txt"]


def test_a_daemon_that_cannot_start_leaves_no_run_waiting(
    kit: Kit, exp: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "not-a-number")  # the daemon refuses to start
    with pytest.raises(TargetUnavailableError, match=r"daemon for workspace .* did not start"):
        exp.submit(kit.config("sr_probe.py"))
    # The user was told it failed: the run must not start later, behind their back.
    (run,) = exp.get_runs()
    assert run.get_status() == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["kind"] == "could_not_start"
    assert "could not be handed to the daemon" in error["message"]
