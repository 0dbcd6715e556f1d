"""The Run section of SPEC.md for interactive runs: identity, lookup, status and details,
complete/fail/cancel, tags and properties, queries, children, files and snapshots."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner import Experiment, Run, RunStatus
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerWarning
from tests.helpers import sql_statements

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


# -- identity -------------------------------------------------------------------------


def test_start_logging_gives_a_running_interactive_run(exp):
    run = exp.start_logging()
    assert run.status == "Running"
    assert run.get_status() == RunStatus.RUNNING
    assert run.type == "azureml.interactive"
    assert run.experiment == exp
    assert run.parent is None
    assert isinstance(run.id, str)
    assert run.id
    assert exp.name in repr(run)
    assert run.id in repr(run)


def test_run_numbers_count_1_2_3_per_experiment(ws):
    a, b = Experiment(ws, "a"), Experiment(ws, "b")
    assert [a.start_logging().number for _ in range(3)] == [1, 2, 3]
    assert [b.start_logging().number for _ in range(2)] == [1, 2]
    assert a.start_logging().number == 4
    assert sorted(r.number for r in a.get_runs()) == [1, 2, 3, 4]


def test_run_ids_are_unique(exp):
    ids = {exp.start_logging().id for _ in range(50)}
    assert len(ids) == 50


def test_display_name_defaults_to_the_id_and_is_settable(ws, exp):
    run = exp.start_logging()
    assert run.display_name == run.id
    run.display_name = "lr=0.1 ; ü"
    assert run.display_name == "lr=0.1 ; ü"
    assert Run.get(ws, run.id).display_name == "lr=0.1 ; ü"
    assert run.name == "lr=0.1 ; ü"
    named = exp.start_logging(display_name="given")
    assert named.display_name == "given"


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_display_name_must_be_a_non_empty_str(exp, bad):
    run = exp.start_logging()
    with pytest.raises(ConfigError, match=r"display_name .* must be a non-empty str"):
        run.display_name = bad
    assert run.display_name == run.id


def test_description_is_settable(ws, exp):
    run = exp.start_logging()
    assert run.description is None
    run.description = "first try"
    assert Run.get(ws, run.id).description == "first try"
    with pytest.raises(ConfigError, match=r"description must be a str, not int"):
        run.description = 5


# -- lookup ---------------------------------------------------------------------------


def test_lookup_by_experiment_and_by_workspace(ws, exp):
    run = exp.start_logging()
    by_exp = Run(exp, run.id)
    by_ws = Run.get(ws, run.id)
    assert by_exp == run
    assert by_ws == run
    assert hash(by_ws) == hash(run)
    assert by_ws.experiment == exp
    assert by_ws.number == run.number


def test_lookup_in_a_reopened_workspace(ws, exp):
    from runner import Workspace

    run = exp.start_logging()
    run.complete()
    again = Run.get(Workspace(ws.path), run.id)
    assert again.id == run.id
    assert again.status == "Completed"


def test_unknown_ids_are_not_found(ws, exp):
    with pytest.raises(NotFoundError, match=r"no run 'missing' in experiment 'test'"):
        Run(exp, "missing")
    with pytest.raises(NotFoundError, match=r"no run 'missing' in workspace ws"):
        Run.get(ws, "missing")


def test_not_found_is_a_lookup_error(ws):
    with pytest.raises(LookupError, match=r"no run 'x'"):
        Run.get(ws, "x")


# -- status and details ---------------------------------------------------------------


def test_get_detailed_status_shape(exp):
    run = exp.start_logging()
    assert run.get_detailed_status() == {"status": "Running", "details": None}


def test_get_details_of_a_running_run(exp):
    run = exp.start_logging()
    run.add_properties({"p": "1"})
    details = run.get_details()
    for key in ("runId", "target", "status", "startTimeUtc", "properties", "runDefinition"):
        assert key in details, key
    assert "logFiles" in details
    assert "submittedBy" in details
    assert details["runId"] == run.id
    assert details["target"] == "sdk"  # as azureml records interactive runs
    assert details["status"] == "Running"
    assert ISO_UTC.match(details["startTimeUtc"])
    assert "endTimeUtc" not in details
    assert "error" not in details
    assert details["properties"] == {"p": "1"}
    assert isinstance(details["runDefinition"], dict)
    assert isinstance(details["logFiles"], dict)
    assert isinstance(details["submittedBy"], str)


def test_get_details_of_a_completed_run_has_its_end_time(exp):
    run = exp.start_logging()
    run.complete()
    details = run.get_details()
    assert details["status"] == "Completed"
    assert ISO_UTC.match(details["endTimeUtc"])
    assert _utc(details["endTimeUtc"]) >= _utc(details["startTimeUtc"])
    assert "error" not in details


def test_fail_records_the_error(exp):
    run = exp.start_logging()
    run.fail(error_details="the data was bad", error_code="BadData")
    details = run.get_details()
    assert details["status"] == "Failed"
    assert "endTimeUtc" in details
    assert details["error"]["error"]["code"] == "BadData"
    assert details["error"]["error"]["message"] == "the data was bad"


def test_fail_with_an_exception_and_no_arguments(exp):
    run = exp.start_logging()
    run.fail(ValueError("wrong shape"))
    assert run.get_details()["error"]["error"]["message"] == "ValueError: wrong shape"
    other = exp.start_logging()
    other.fail()
    assert other.status == "Failed"
    assert other.get_details()["error"]["error"]["message"]


def test_get_details_with_logs_has_the_same_keys(exp):
    run = exp.start_logging()
    run.complete()
    details = run.get_details_with_logs()
    assert details["runId"] == run.id
    assert isinstance(details["logFiles"], dict)


def test_wait_for_completion_of_a_finished_interactive_run(exp):
    run = exp.start_logging()
    run.complete()
    assert run.wait_for_completion()["status"] == "Completed"


def test_wait_for_completion_raises_for_a_failed_run(exp):
    from runner.errors import RunFailedError

    run = exp.start_logging()
    run.fail("it broke")
    with pytest.raises(RunFailedError, match=rf"run {run.id} failed: it broke"):
        run.wait_for_completion()
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


# -- complete / fail / cancel / context manager ---------------------------------------


def test_context_manager_completes_on_normal_exit(exp):
    with exp.start_logging() as run:
        run.log("x", 1)
        assert run.status == "Running"
    assert run.status == "Completed"
    assert run.get_metrics() == {"x": 1}


def _crash_inside_a_run(exp, error: BaseException) -> list:
    """Log one value inside ``with exp.start_logging()``, then raise ``error``."""
    started = []

    def body() -> None:
        with exp.start_logging() as run:
            started.append(run)
            run.log("before", 1)
            raise error

    return [started, body]


def test_context_manager_fails_with_the_error_and_reraises(exp):
    started, body = _crash_inside_a_run(exp, ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError, match=r"division by zero"):
        body()
    (run,) = started
    assert run.status == "Failed"
    error = run.get_details()["error"]["error"]
    assert "ZeroDivisionError" in error["message"]
    assert "division by zero" in error["message"]
    assert run.get_metrics() == {"before": 1}


def test_context_manager_on_keyboard_interrupt_is_canceled(exp):
    started, body = _crash_inside_a_run(exp, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt, match=r"^$"):
        body()
    (run,) = started
    assert run.status == "Canceled"
    assert run.get_metrics() == {"before": 1}


def test_cancel_a_running_run_and_its_children(exp):
    run = exp.start_logging()
    child = run.child_run()
    grandchild = child.child_run()
    done = run.child_run()
    done.complete()
    run.cancel()
    assert run.status == "Canceled"
    assert child.status == "Canceled"
    assert grandchild.status == "Canceled"
    assert done.status == "Completed"
    assert "endTimeUtc" in run.get_details()


def test_cancel_of_a_finished_run_is_a_no_op_that_says_so(exp):
    run = exp.start_logging()
    run.complete()
    with pytest.warns(
        RunnerWarning, match=rf"run {run.id} is already Completed; cancel\(\) changed nothing"
    ):
        run.cancel()
    assert run.status == "Completed"


def test_complete_after_fail_changes_nothing_and_says_so(exp):
    run = exp.start_logging()
    run.fail("first")
    with pytest.warns(RunnerWarning, match=r"is already Failed; complete\(\) changed nothing"):
        run.complete()
    with pytest.warns(RunnerWarning, match=r"is already Failed; fail\(\) changed nothing"):
        run.fail("second")
    assert run.status == "Failed"
    assert run.get_details()["error"]["error"]["message"] == "first"


def test_complete_twice_is_quiet(exp):
    run = exp.start_logging()
    run.complete()
    run.complete()
    assert run.status == "Completed"


def test_start_of_a_running_run_is_quiet_and_of_a_finished_one_says_so(exp):
    run = exp.start_logging()
    run.start()  # v1: start() marks a run started; it is already (issue 14)
    assert run.status == "Running"
    run.complete()
    with pytest.warns(RunnerWarning, match=r"is already Completed; start\(\) changed nothing"):
        run.start()
    assert run.status == "Completed"


def test_flush_returns_and_leaves_the_run_running(exp):
    run = exp.start_logging()
    run.log("a", 1)
    run.flush()
    run.flush(timeout_seconds=1)
    assert run.status == "Running"


# -- tags and properties --------------------------------------------------------------


def test_tags(ws, exp):
    run = exp.start_logging()
    run.tag("flag")
    run.tag("lr", "0.1")
    run.tag("epochs", 10)
    run.set_tags({"a": "1", "b": None})
    run.set_tags("single")
    run.set_tags(["x", "y"])
    expected = {
        "flag": None,
        "lr": "0.1",
        "epochs": "10",
        "a": "1",
        "b": None,
        "single": None,
        "x": None,
        "y": None,
    }
    assert run.get_tags() == expected
    assert run.tags == expected
    assert Run.get(ws, run.id).get_tags() == expected
    run.tag("lr", "0.2")  # tags change freely
    assert run.get_tags()["lr"] == "0.2"
    left = run.remove_tags(["x", "y", "not-there"])
    assert "x" not in left
    assert "y" not in left
    assert run.remove_tags("single") == run.get_tags()
    assert "single" not in run.get_tags()


def test_properties_are_immutable(ws, exp):
    run = exp.start_logging()
    run.add_properties({"author": "me", "seed": 7})
    run.add_properties({"author": "me"})  # the same value again is fine
    assert run.get_properties() == {"author": "me", "seed": "7"}
    with pytest.raises(
        ConflictError,
        match=r"property 'author' of run .* is already 'me'; properties are immutable",
    ):
        run.add_properties({"author": "you"})
    assert run.properties == {"author": "me", "seed": "7"}
    assert Run.get(ws, run.id).get_properties()["author"] == "me"


# -- queries --------------------------------------------------------------------------


@pytest.fixture
def three_runs(exp):
    a = exp.start_logging()
    a.tag("team", "red")
    a.tag("flag")
    a.add_properties({"stage": "dev"})
    a.complete()
    b = exp.start_logging()
    b.tag("team", "blue")
    b.add_properties({"stage": "prod"})
    c = exp.start_logging()
    c.tag("team", "red")
    c.tag("best", "yes")
    c.add_properties({"stage": "prod"})
    c.fail("nope")
    return a, b, c


def _ids(runs):
    return [r.id for r in runs]


def test_get_runs_newest_first(exp, three_runs):
    a, b, c = three_runs
    assert _ids(exp.get_runs()) == [c.id, b.id, a.id]
    assert _ids(Run.list(exp)) == [c.id, b.id, a.id]


def test_queries_by_tag(exp, three_runs):
    a, b, c = three_runs
    assert _ids(exp.get_runs(tags="flag")) == [a.id]
    assert _ids(exp.get_runs(tags=["team"])) == [c.id, b.id, a.id]
    assert _ids(exp.get_runs(tags=["team", "best"])) == [c.id]
    assert _ids(exp.get_runs(tags={"team": "red"})) == [c.id, a.id]
    assert _ids(exp.get_runs(tags={"team": "red", "best": "yes"})) == [c.id]
    assert _ids(exp.get_runs(tags={"team": "green"})) == []
    assert _ids(exp.get_runs(tags={"flag": None})) == [a.id]


def test_queries_by_property_and_several_conditions(exp, three_runs):
    a, b, c = three_runs
    assert _ids(exp.get_runs(properties={"stage": "prod"})) == [c.id, b.id]
    assert _ids(exp.get_runs(properties="stage")) == [c.id, b.id, a.id]
    assert _ids(exp.get_runs(tags={"team": "red"}, properties={"stage": "prod"})) == [c.id]
    assert _ids(Run.list(exp, status="Completed")) == [a.id]
    assert _ids(Run.list(exp, status="Running", tags={"team": "blue"})) == [b.id]
    assert _ids(Run.list(exp, status="Failed", properties={"stage": "dev"})) == []


def test_queries_by_type_and_children(exp):
    top = exp.start_logging()
    kid = top.child_run()
    assert _ids(exp.get_runs()) == [top.id]
    assert _ids(exp.get_runs(include_children=True)) == [kid.id, top.id]
    assert _ids(exp.get_runs(type="azureml.childrun", include_children=True)) == [kid.id]
    assert _ids(Run.list(exp, type="azureml.interactive", include_children=True)) == [top.id]


def test_queries_do_not_cross_experiments(ws, exp):
    exp.start_logging().tag("k", "v")
    other = Experiment(ws, "other")
    assert list(other.get_runs(tags="k")) == []


def test_query_with_a_bad_status_is_refused(exp):
    with pytest.raises(
        ConfigError, match=r"status 'Done' is not a run status; use one of .*Completed"
    ):
        list(Run.list(exp, status="Done"))


@pytest.mark.parametrize("bad", [5, {1: "x"}, [None]])
def test_query_with_a_bad_tag_filter_is_refused(exp, bad):
    with pytest.raises(
        ConfigError, match=r"(filter .* must be a key|tag key .* must be a non-empty str)"
    ):
        list(exp.get_runs(tags=bad))


def test_list_by_compute(ws, exp):
    from types import SimpleNamespace

    from runner import ComputeTarget

    run = exp.start_logging()
    # An interactive run ran on no compute target: azureml records it as 'sdk' (issue 14).
    assert run.id not in _ids(Run.list_by_compute(ComputeTarget(ws, "local")))
    sdk = SimpleNamespace(workspace=ws, name="sdk")  # list_by_compute reads these two
    assert run.id in _ids(Run.list_by_compute(sdk))


# -- children -------------------------------------------------------------------------


def test_child_run_is_a_context_manager_and_knows_its_parent(ws, exp):
    parent = exp.start_logging()
    with parent.child_run(name="fold 1") as child:
        assert child.status == "Running"
        assert child.parent.id == parent.id
        assert child.display_name == "fold 1"
        assert child.type == "azureml.childrun"
        child.log("acc", 0.5)
    assert child.status == "Completed"
    assert parent.status == "Running"
    assert Run.get(ws, child.id).parent.id == parent.id


def test_child_run_with_a_given_id(exp):
    parent = exp.start_logging()
    child = parent.child_run(run_id="my-own-id")
    assert child.id == "my-own-id"
    with pytest.raises(ConflictError, match=r"a run with id 'my-own-id' already exists"):
        parent.child_run(run_id="my-own-id")
    with pytest.raises(ConfigError, match=r"run_id 5 must be a non-empty str or None"):
        parent.child_run(run_id=5)


def test_child_run_outputs_are_stored_when_it_completes(exp, tmp_path):
    out = tmp_path / "child-out"
    (out / "sub").mkdir(parents=True)
    (out / "model.txt").write_text("weights", encoding="utf-8")
    (out / "sub" / "b.txt").write_text("b", encoding="utf-8")
    parent = exp.start_logging()
    with parent.child_run(outputs=str(out)) as child:
        pass
    assert child.get_file_names() == ["outputs/model.txt", "outputs/sub/b.txt"]


def test_create_children_by_count_is_one_batch(ws, exp):
    parent = exp.start_logging()
    with sql_statements(ws) as statements:
        children = parent.create_children(count=25)
    assert len(children) == 25
    assert len({c.id for c in children}) == 25
    writes = [s for s in statements if s.startswith("BEGIN")]
    assert writes == ["BEGIN IMMEDIATE"], "create_children must be one write transaction"
    assert all(c.status == "Running" for c in children)
    assert all(c.parent.id == parent.id for c in children)
    assert sorted(_ids(parent.get_children())) == sorted(c.id for c in children)


def test_create_children_with_tag_values(exp):
    parent = exp.start_logging()
    children = parent.create_children(tag_key="lr", tag_values=["0.1", "0.01"])
    assert [c.get_tags() for c in children] == [{"lr": "0.1"}, {"lr": "0.01"}]
    assert _ids(parent.get_children(tags={"lr": "0.01"})) == [children[1].id]
    assert parent.create_children(count=0) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"create_children: count=None; pass a count >= 0, or tag_key and tag_values"),
        ({"count": -1}, r"count=-1; pass a count >= 0"),
        ({"count": True}, r"count=True; pass a count >= 0"),
        ({"tag_key": "k"}, r"pass tag_key and tag_values together"),
        ({"tag_values": ["a"]}, r"pass tag_key and tag_values together"),
        ({"count": 3, "tag_key": "k", "tag_values": ["a"]}, r"count=3 but 1 tag_values"),
        ({"tag_key": 1, "tag_values": ["a"]}, r"tag key 1 must be a non-empty str"),
    ],
)
def test_create_children_refuses_bad_arguments_and_creates_nothing(exp, kwargs, match):
    parent = exp.start_logging()
    with pytest.raises(ConfigError, match=match):
        parent.create_children(**kwargs)
    assert list(parent.get_children()) == []


def test_get_children_filters_and_recursion(exp):
    parent = exp.start_logging()
    a = parent.child_run()
    a.tag("kind", "cv")
    a.add_properties({"fold": "1"})
    a.complete()
    b = parent.child_run()
    b.tag("kind", "final")
    grand = a.child_run()
    grand.tag("kind", "cv")
    assert _ids(parent.get_children()) == [b.id, a.id]
    assert _ids(parent.get_children(recursive=True)) == [grand.id, b.id, a.id]
    assert _ids(parent.get_children(tags={"kind": "cv"})) == [a.id]
    assert _ids(parent.get_children(recursive=True, tags={"kind": "cv"})) == [grand.id, a.id]
    assert _ids(parent.get_children(tags="kind")) == [b.id, a.id]
    assert _ids(parent.get_children(properties={"fold": "1"})) == [a.id]
    assert _ids(parent.get_children(status="Completed")) == [a.id]
    assert _ids(parent.get_children(status="Running", recursive=True)) == [grand.id, b.id]
    assert _ids(parent.get_children(type="azureml.childrun")) == [b.id, a.id]
    assert _ids(parent.get_children(type="azureml.scriptrun")) == []
    assert list(grand.get_children()) == []


# -- files ----------------------------------------------------------------------------


@pytest.fixture
def src_folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a", encoding="utf-8")
    (src / "sub" / "b.txt").write_text("b", encoding="utf-8")
    return src


def test_upload_and_download_a_file(exp, src_folder, tmp_path):
    run = exp.start_logging()
    info = run.upload_file("outputs/a.txt", src_folder / "a.txt")
    assert info["name"] == "outputs/a.txt"
    assert run.upload_file("stream.bin", io.BytesIO(b"\x00\x01"))["size"] == 2
    assert run.get_file_names() == ["outputs/a.txt", "stream.bin"]
    dest = run.download_file("outputs/a.txt", tmp_path / "got.txt")
    assert Path(dest).read_text(encoding="utf-8") == "a"
    into_dir = run.download_file("stream.bin", tmp_path)
    assert Path(into_dir) == tmp_path / "stream.bin"
    assert Path(into_dir).read_bytes() == b"\x00\x01"


def test_download_file_defaults_to_the_current_folder(exp, src_folder, tmp_path):
    run = exp.start_logging()
    run.upload_file("deep/dir/a.txt", src_folder / "a.txt")
    assert Path(run.download_file("deep/dir/a.txt")) == tmp_path / "a.txt"


def test_upload_files_and_folder_then_download_files(exp, src_folder, tmp_path):
    run = exp.start_logging()
    run.upload_files(["x/1.txt", "x/2.txt"], [src_folder / "a.txt", src_folder / "sub" / "b.txt"])
    run.upload_folder("tree", src_folder)
    assert run.get_file_names() == ["tree/a.txt", "tree/sub/b.txt", "x/1.txt", "x/2.txt"]
    written = run.download_files(prefix="tree", output_directory=tmp_path / "out")
    assert sorted(written) == sorted(
        [str(tmp_path / "out" / "tree" / "a.txt"), str(tmp_path / "out" / "tree" / "sub" / "b.txt")]
    )
    flat = run.download_files(
        prefix="tree", output_directory=tmp_path / "flat", append_prefix=False
    )
    assert sorted(flat) == sorted(
        [str(tmp_path / "flat" / "a.txt"), str(tmp_path / "flat" / "sub" / "b.txt")]
    )
    everything = run.download_files(output_directory=tmp_path / "all")
    assert len(everything) == 4
    assert (tmp_path / "all" / "x" / "2.txt").read_text(encoding="utf-8") == "b"


def test_download_files_to_given_paths(exp, src_folder, tmp_path):
    run = exp.start_logging()
    run.upload_folder("t", src_folder)
    targets = [str(tmp_path / "one"), str(tmp_path / "two")]
    assert run.download_files(prefix="t", output_paths=targets) == targets
    assert (tmp_path / "one").read_text(encoding="utf-8") == "a"
    with pytest.raises(ConfigError, match=r"download_files: 1 output_paths for 2 files"):
        run.download_files(prefix="t", output_paths=targets[:1])


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("/etc/passwd", r"name '/etc/passwd' is absolute; artifact names are relative paths"),
        ("../outside.txt", r"name '\.\./outside\.txt' climbs out with '\.\.'"),
        ("a/../../outside.txt", r"climbs out with '\.\.'"),
        ("..\\windows.txt", r"climbs out with '\.\.'"),
        ("C:\\x.txt", r"is absolute"),
        ("", r"name '' is not a file name; pass a relative path"),
        (".", r"name '\.' names no file"),
        (7, r"name 7 is not a file name"),
    ],
)
def test_absolute_and_climbing_names_are_refused(exp, src_folder, tmp_path, name, match):
    run = exp.start_logging()
    with pytest.raises(ConfigError, match=match):
        run.upload_file(name, src_folder / "a.txt")
    with pytest.raises(ConfigError, match=match):
        run.upload_files([name], [src_folder / "a.txt"])
    with pytest.raises(ConfigError, match=match):
        run.upload_folder(name, src_folder)
    with pytest.raises(ConfigError, match=match):
        run.download_file(name, tmp_path / "x")
    if name:  # an empty prefix means every file
        with pytest.raises(ConfigError, match=match):
            run.download_files(prefix=name, output_directory=tmp_path / "d")
    assert run.get_file_names() == []
    assert not (tmp_path.parent / "outside.txt").exists()


def test_names_are_normalised(exp, src_folder):
    run = exp.start_logging()
    run.upload_file("./a//b/./c.txt", src_folder / "a.txt")
    assert run.get_file_names() == ["a/b/c.txt"]


def test_upload_errors_are_clear_and_store_nothing(exp, src_folder, tmp_path):
    run = exp.start_logging()
    with pytest.raises(NotFoundError, match=r"upload_file\('x'\): no file at"):
        run.upload_file("x", tmp_path / "missing")
    with pytest.raises(NotFoundError, match=r"upload_files: no file at .*nothing was uploaded"):
        run.upload_files(["a", "b"], [src_folder / "a.txt", tmp_path / "missing"])
    with pytest.raises(ConfigError, match=r"upload_files: 2 names but 1 paths"):
        run.upload_files(["a", "b"], [src_folder / "a.txt"])
    with pytest.raises(NotFoundError, match=r"upload_folder\('f'\): .* is not a folder"):
        run.upload_folder("f", src_folder / "a.txt")
    assert run.get_file_names() == []


def test_a_name_holds_one_content(exp, src_folder):
    run = exp.start_logging()
    run.upload_file("a.txt", src_folder / "a.txt")
    run.upload_file("a.txt", src_folder / "a.txt")  # the same content again is fine
    with pytest.raises(
        ConflictError, match=r"already has a file named 'a\.txt'; upload under another name"
    ):
        run.upload_file("a.txt", src_folder / "sub" / "b.txt")


def test_download_of_an_unknown_file(exp, tmp_path):
    run = exp.start_logging()
    with pytest.raises(NotFoundError, match=r"has no file 'nope\.txt'; its files are listed by"):
        run.download_file("nope.txt", tmp_path / "x")


def test_files_with_weird_names_and_paths(exp, weird_path):
    src = weird_path / "in ü.txt"
    src.write_text("weird", encoding="utf-8")
    run = exp.start_logging()
    name = "dir with space/quote ' \" ;semi/日本.txt"
    run.upload_file(name, src)
    assert run.get_file_names() == [name]
    out = Path(run.download_file(name, weird_path / "out ;'.txt"))
    assert out.read_text(encoding="utf-8") == "weird"
    run.download_files(output_directory=weird_path / "all")
    assert (weird_path / "all" / name).read_text(encoding="utf-8") == "weird"


# -- snapshots ------------------------------------------------------------------------


def _zip_names(path: str) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return sorted(z.namelist())


def test_take_and_restore_a_snapshot_honouring_amlignore(exp, src_folder, tmp_path):
    (src_folder / "data.bin").write_bytes(b"big")
    (src_folder / "notes.log").write_text("log", encoding="utf-8")
    (src_folder / ".amlignore").write_text("*.bin\n", encoding="utf-8")
    (src_folder / ".gitignore").write_text("*.log\n", encoding="utf-8")  # .amlignore wins
    run = exp.start_logging()
    sid = run.take_snapshot(src_folder)
    assert run.get_snapshot_id() == sid
    assert run.get_properties()["ContentSnapshotId"] == sid
    zipped = run.restore_snapshot(path=tmp_path)
    assert Path(zipped).parent == tmp_path
    names = _zip_names(zipped)
    assert "a.txt" in names
    assert "sub/b.txt" in names
    assert "notes.log" in names
    assert "data.bin" not in names
    with zipfile.ZipFile(zipped) as z:
        assert z.read("sub/b.txt") == b"b"


def test_snapshot_uses_gitignore_without_amlignore(exp, src_folder, tmp_path):
    (src_folder / "notes.log").write_text("log", encoding="utf-8")
    (src_folder / ".gitignore").write_text("*.log\n", encoding="utf-8")
    run = exp.start_logging()
    sid = run.take_snapshot(src_folder)
    names = _zip_names(run.restore_snapshot(sid, tmp_path / "snap.zip"))
    assert "notes.log" not in names
    assert "a.txt" in names


def test_same_content_gives_the_same_snapshot_id(exp, src_folder):
    a = exp.start_logging().take_snapshot(src_folder)
    b = exp.start_logging().take_snapshot(src_folder)
    assert a == b
    (src_folder / "a.txt").write_text("changed", encoding="utf-8")
    assert exp.start_logging().take_snapshot(src_folder) != a


def test_start_logging_with_a_snapshot_directory(exp, src_folder):
    run = exp.start_logging(snapshot_directory=str(src_folder))
    assert run.get_snapshot_id() is not None


def test_snapshot_errors(exp, tmp_path):
    run = exp.start_logging()
    assert run.get_snapshot_id() is None
    with pytest.raises(NotFoundError, match=r"has no snapshot; take one with run\.take_snapshot"):
        run.restore_snapshot()
    with pytest.raises(NotFoundError, match=r"take_snapshot: .* does not exist"):
        run.take_snapshot(tmp_path / "missing")


def test_outputs_folder_of_start_logging_is_stored_on_complete(exp, tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    run = exp.start_logging(outputs=str(out))
    (out / "model.pkl").write_bytes(b"m")
    run.complete()
    assert run.get_file_names() == ["outputs/model.pkl"]


# -- misc -----------------------------------------------------------------------------


def test_portal_url_points_at_the_runs_folder(ws, exp):
    run = exp.start_logging()
    url = run.get_portal_url()
    assert url.startswith("file://")
    assert run.id in url


def test_clean_removes_nothing_stored(exp, src_folder):
    run = exp.start_logging()
    run.upload_file("a.txt", src_folder / "a.txt")
    assert run.clean() == []
    assert run.get_file_names() == ["a.txt"]


def test_get_environment_of_an_interactive_run(exp):
    env = exp.start_logging().get_environment()
    assert env.name
