"""Run.get_context(): the live run inside a run, else an offline run kept in memory."""

from __future__ import annotations

import io
import json
import signal

import pytest

from runner import Run
from runner import context as run_context
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerError
from tests.helpers import run_script, start_script, wait_until


@pytest.fixture
def fresh_context(monkeypatch):
    """Forget the process's cached context run, so each test starts as a new script."""
    monkeypatch.setattr(run_context, "_context", {})


@pytest.fixture
def offline(fresh_context, capsys):
    run = Run.get_context()
    capsys.readouterr()
    return run


def test_a_plain_script_gets_an_offline_run_that_answers_in_process(tmp_path, isolated_runner_home):
    proc = run_script("offline_train.py", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result["type"] == "OfflineRun"
    assert result["same_object"] is True
    assert result["metrics"] == {"loss": [1.0, 0.5, 1 / 3], "acc": 0.9}
    assert result["tags"] == {"stage": "try"}
    assert result["properties"] == {"author": "me"}
    assert len(result["children"]) == 1
    assert result["recursive"] == {
        result["id"]: {"loss": [1.0, 0.5, 1 / 3], "acc": 0.9},
        result["children"][0]: {"fold_acc": 0.8},
    }
    printed = "\n".join(lines)
    assert "log('loss', 1.0)" in printed
    assert "tag('stage', 'try')" in printed
    assert "add_properties({'author': 'me'})" in printed
    assert "child_run('fold-0')" in printed
    assert "log('fold_acc', 0.8)" in printed
    assert "complete()" in printed
    assert proc.stderr == ""
    assert not isolated_runner_home.exists(), "an offline run writes no workspace"


def test_offline_run_prints_each_call(offline, capsys):
    offline.log("loss", 0.25, step=1)
    offline.tag("k", "v")
    offline.log_row("row", a=1)
    out = capsys.readouterr().out
    assert f"[runner offline run {offline.id}] log('loss', 0.25, step=1)" in out
    assert "tag('k', 'v')" in out
    assert "log_row('row', a=1)" in out


def test_offline_run_prints_nothing_for_a_refused_call(offline, capsys):
    with pytest.raises(ConfigError, match=r"metric 'x': value \[1\] is a list"):
        offline.log("x", [1])
    assert capsys.readouterr().out == ""


def test_offline_get_context_is_the_same_run_each_time(offline):
    assert Run.get_context() is offline
    assert Run.get_context(allow_offline=True) is offline


def test_offline_metrics_tags_children_properties(offline):
    offline.log("a", 1)
    offline.log("a", 2)
    offline.log_list("l", [1, 2])
    offline.log_table("t", {"x": [1]})
    offline.set_tags({"s": None})
    offline.add_properties({"p": "1"})
    kids = offline.create_children(count=2)
    with offline.child_run() as c:
        c.log("inner", True)
    assert offline.get_metrics() == {"a": [1, 2], "l": [1, 2], "t": {"x": [1]}}
    assert offline.get_tags() == {"s": None}
    assert offline.get_properties() == {"p": "1"}
    assert sorted(r.id for r in offline.get_children()) == sorted([k.id for k in kids] + [c.id])
    assert offline.get_metrics(recursive=True)[c.id] == {"inner": True}
    assert c.status == "Completed"
    assert c.parent.id == offline.id


def test_offline_run_validates_like_a_real_one(offline):
    offline.log("a", 1)
    with pytest.raises(ConfigError, match=r"metric 'a': value \[1\] is a list"):
        offline.log("a", [1])
    with pytest.raises(ConfigError, match=r"tag key 1 must be a non-empty str"):
        offline.tag(1, "x")
    offline.add_properties({"p": "1"})
    with pytest.raises(ConflictError, match=r"property 'p' .* is already '1'"):
        offline.add_properties({"p": "2"})
    assert offline.get_metrics() == {"a": 1}


def test_offline_files_work_in_memory(offline, tmp_path):
    offline.upload_file("a.txt", io.BytesIO(b"abc"))
    assert offline.get_file_names() == ["a.txt"]
    dest = offline.download_file("a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == b"abc"
    assert dest == str(tmp_path / "a.txt")


def test_offline_status_complete_and_fail(offline, fresh_context):
    assert offline.get_status() == "Running"
    offline.complete()
    assert offline.get_status() == "Completed"


def test_offline_secrets_come_from_the_environment(offline, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    assert offline.get_secret("DB_PASSWORD") == "hunter2"
    assert offline.get_secrets(["DB_PASSWORD", "NOPE_X"]) == {
        "DB_PASSWORD": "hunter2",
        "NOPE_X": None,
    }
    with pytest.raises(NotFoundError, match=r"offline run: no environment variable 'NOPE_X'"):
        offline.get_secret("NOPE_X")


def test_allow_offline_false_outside_a_run_raises(fresh_context):
    with pytest.raises(
        RunnerError, match=r"get_context\(allow_offline=False\) outside a submitted run"
    ):
        Run.get_context(allow_offline=False)


def test_allow_offline_false_raises_even_after_an_offline_run_was_made(offline):
    with pytest.raises(
        RunnerError, match=r"get_context\(allow_offline=False\) outside a submitted run"
    ):
        Run.get_context(allow_offline=False)


# -- the live run ---------------------------------------------------------------------


def test_inside_a_run_get_context_is_the_live_run(ws, exp, tmp_path):
    run = exp.start_logging()
    out = tmp_path / "ctx.json"
    env = {"RUNNER_RUN_ID": run.id, "RUNNER_WORKSPACE": str(ws.path), "RUNNER_EXPERIMENT": exp.name}
    run_script("live_context.py", out, env=env)
    seen = json.loads(out.read_text(encoding="utf-8"))
    assert seen == {"id": run.id, "type": "Run", "parent": None}
    assert run.get_metrics() == {"from_script": 42}
    assert run.get_tags() == {"seen": "yes"}


def test_inside_a_child_the_context_knows_its_parent(ws, exp, tmp_path):
    parent = exp.start_logging()
    child = parent.child_run()
    out = tmp_path / "ctx.json"
    run_script(
        "live_context.py", out, env={"RUNNER_RUN_ID": child.id, "RUNNER_WORKSPACE": str(ws.path)}
    )
    assert json.loads(out.read_text(encoding="utf-8"))["parent"] == parent.id
    assert child.get_metrics() == {"from_script": 42}


def test_in_process_live_context(ws, exp, fresh_context, monkeypatch):
    run = exp.start_logging()
    monkeypatch.setenv("RUNNER_RUN_ID", run.id)
    monkeypatch.setenv("RUNNER_WORKSPACE", str(ws.path))
    live = Run.get_context()
    assert live.id == run.id
    assert type(live) is Run
    assert Run.get_context(allow_offline=False) is live


def test_an_unknown_run_id_in_the_environment_is_not_found(ws, fresh_context, monkeypatch):
    monkeypatch.setenv("RUNNER_RUN_ID", "no-such-run")
    monkeypatch.setenv("RUNNER_WORKSPACE", str(ws.path))
    with pytest.raises(NotFoundError, match=r"no run 'no-such-run' in workspace"):
        Run.get_context()


def test_a_run_id_without_a_workspace_is_a_clear_error(fresh_context, monkeypatch):
    monkeypatch.setenv("RUNNER_RUN_ID", "some-run")
    monkeypatch.delenv("RUNNER_WORKSPACE")
    with pytest.raises(RunnerError, match=r"RUNNER_RUN_ID is set but RUNNER_WORKSPACE is not"):
        Run.get_context()


def test_a_live_run_terminated_with_sigterm_keeps_what_it_logged(ws, exp, tmp_path):
    """Cancel sends SIGTERM: the context flushes before the process dies."""
    run = exp.start_logging()
    logged = tmp_path / "logged"
    env = {"RUNNER_RUN_ID": run.id, "RUNNER_WORKSPACE": str(ws.path)}
    proc = start_script("log_until_term.py", 20_000, logged, env=env)
    try:
        wait_until(logged.exists, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGTERM
    assert run.get_metrics()["v"] == list(range(20_000))
