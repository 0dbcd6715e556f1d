"""The in-run client: Run.get_context() inside a submitted script is the live run, and
every logging, tag, property, file and child call works from there; what the script
recorded survives its crash and its SIGTERM."""

from __future__ import annotations

import json
from pathlib import Path

from runner import Experiment
from tests.helpers import StatusRecorder
from tests.submit.conftest import Kit, assert_never_backwards, user_metrics


def test_every_in_run_call_works_from_the_script(
    kit: Kit, exp: Experiment, statuses: StatusRecorder, tmp_path: Path
) -> None:
    out = tmp_path / "inrun.json"
    token = "a test value"  # noqa: S105 - not a credential
    exp.workspace.get_default_keyvault().set_secret("sr-token", token)
    src = kit.source("sr_inrun.py", sub={"child_src": ["sr_child.py"]})
    run = exp.submit(kit.config("sr_inrun.py", [str(out)], source=src))
    details = run.wait_for_completion()
    assert details["status"] == "Completed"
    report = json.loads(out.read_text())

    assert report["id"] == run.id
    assert report["type"] == "Run"
    assert report["parent"] is None
    metrics = run.get_metrics()
    assert metrics["loss"] == [0.5, 0.25]
    assert metrics["epoch_loss"] == 1.0
    assert metrics["acc"] == [0.1, 0.2, 0.3]
    assert metrics["table"] == {"x": [1, 2], "y": [2, 4]}
    assert metrics["cols"] == {"a": [1, 2], "b": ["p", "q"]}
    assert run.get_tags() == {"stage": "train", "bare": None}
    assert run.get_properties()["prop"] == "value"
    run.download_file("uploads/note.txt", str(tmp_path / "note.txt"))
    expected_files = {
        "uploads/note.txt",
        "many/one.txt",
        "many/two.txt",
        "tree/a.txt",
        "tree/deeper/b.txt",
    }
    assert expected_files <= set(report["files_seen"])  # visible from inside at once
    assert expected_files <= set(run.get_file_names())
    assert report["downloaded"] == "content of folder/deeper/b.txt"
    assert report["secret"] == token
    assert metrics["cm"]["data"]["matrix"] == [[3, 1], [0, 2]]
    assert metrics["res"]["data"]["bin_counts"] == [4, 5]
    assert "picture" in metrics
    assert any(name.startswith("picture_") for name in run.get_file_names())
    assert run.display_name == "shown name"
    assert run.description == "set from inside"
    assert (tmp_path / "note.txt").read_text() == "uploaded from the run"

    children = {c.id: c for c in run.get_children()}
    assert sorted(children) == report["children"]
    assert len(children) == 6  # child_run, 2 + 2 from create_children, submit_child
    assert all(c.get_status() == "Completed" for c in children.values())
    inner = children[report["inner_id"]]
    assert report["inner_parent"] == run.id
    assert inner.display_name == "inner"
    assert user_metrics(inner) == {"inner_metric": 7}
    assert "outputs/c.txt" in inner.get_file_names()
    assert sorted(c.get_tags()["fold"] for c in run.get_children(tags="fold")) == ["0", "1"]

    submitted = children[report["submitted"]["id"]]
    assert report["submitted"]["status"] == "Completed"
    assert submitted.parent is not None
    assert submitted.parent.id == run.id
    assert user_metrics(submitted) == {"child_loss": 0.125}
    tags = submitted.get_tags()
    assert tags["kind"] == "submitted"
    assert tags["parent_seen"] == run.id  # Run.get_context().parent inside the child
    assert tags["argv"] == "--x | 3 | two words"
    assert tags["var"] == "for the child only"
    child_definition = submitted.get_details()["runDefinition"]
    assert child_definition["environmentVariables"] == {"SR_VAR_CHILD": "for the child only"}
    assert (
        "child of " + run.id
        in submitted.get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"]
    )
    assert_never_backwards(statuses.history(run.id))
    assert_never_backwards(statuses.history(submitted.id))


def test_what_the_script_logged_survives_its_sigterm(kit: Kit, tmp_path: Path) -> None:
    started = kit.marker("started")
    run = kit.submit(
        "sr_probe.py",
        env={"SR_LOG_N": 5000, "SR_STARTED": started, "SR_GO": kit.marker("never")},
        grace_s=5,
    )
    kit.wait_file(started)
    run.cancel()
    assert run.wait_for_completion()["status"] == "Canceled"
    assert run.get_metrics()["v"] == list(range(5000))
    assert run.get_tags()["probe"] == "yes"
