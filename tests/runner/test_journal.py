"""The journal of a remote run's store, and its replay here (runner/journal.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from runner import Experiment, Model, Run, ScriptRunConfig, Workspace
from runner.definition import RunDefinition
from runner.errors import UserError
from runner.journal import applied_offset, apply, complete_lines
from runner.store import JOURNAL_ENV, NewRun


def remote_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_id: str
) -> tuple[Run, Path]:
    """A workspace like the one runner makes on a host: the run exists, a journal is kept."""
    journal = tmp_path / "journal"
    monkeypatch.setenv(JOURNAL_ENV, str(journal))
    ws = Workspace.create(tmp_path / "remote")
    store = ws._store
    store.journal = None  # the agent's own records are not journaled
    exp_id = store.ensure_experiment("exp")
    store.create_runs(
        exp_id, [NewRun(id=run_id, type="azureml.scriptrun", status="Running", target="box")]
    )
    store.journal = str(journal)
    return Run.get(ws, run_id), journal


@pytest.fixture
def local_run(ws: Workspace) -> Run:
    """The run as the submitting machine knows it."""
    exp = Experiment(ws, "exp")
    (run_id,) = ws._store.create_runs(
        exp._id,
        [NewRun(type="azureml.scriptrun", status="Running", target="box")],
        id_prefix="exp_",
    )
    return Run(exp, run_id)


def test_everything_a_script_records_is_replayed(
    local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, journal = remote_workspace(tmp_path, monkeypatch, local_run.id)
    for i in range(3):
        remote.log("loss", 1.0 / (i + 1), step=i)
    remote.log_row("table", a=1, b="x")
    remote.tag("t", "1")
    remote.set_tags({"u": "2", "gone": "3"})
    remote.remove_tags(["gone"])
    remote.add_properties({"p": "v"})
    remote.display_name = "renamed"
    child = remote.child_run("kid")
    child.log("c", 5)
    child.tag("fold", "0")
    child.complete()
    src = tmp_path / "f.txt"
    src.write_text("content")
    remote.upload_file("files/f.txt", str(src))
    remote.flush()

    ws = local_run.experiment.workspace
    data = journal.read_bytes()
    # Contents travel beside the journal (the agent sends the blobs it names).
    for _, digest, _ in remote._store.list_files(remote.id):
        ws._blobs.put_bytes(remote.experiment.workspace._blobs.read_bytes(digest))
    assert apply(ws._store, local_run.id, 0, data) == len(data)

    run = Run.get(ws, local_run.id)
    assert run.get_metrics_with_steps("loss") == {"steps": [0, 1, 2], "values": [1.0, 0.5, 1 / 3]}
    assert run.get_metrics()["table"] == remote.get_metrics()["table"]
    assert run.get_tags() == {"t": "1", "u": "2"}
    assert run.get_properties() == {"p": "v"}
    assert run.display_name == "renamed"
    assert run.get_status() == "Running"  # the supervisor owns the run's own status
    (kid,) = run.get_children()
    assert kid.id == f"{run.id}_0"
    assert kid.get_status() == "Completed"
    assert kid.get_metrics() == {"c": 5}
    assert kid.get_tags() == {"fold": "0"}
    assert kid.experiment.name == "exp"
    run.download_file("files/f.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "content"
    assert applied_offset(ws._store, run.id) == len(data)


def test_a_replay_resumes_after_the_last_whole_line_and_never_applies_twice(
    local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, journal = remote_workspace(tmp_path, monkeypatch, local_run.id)
    for i in range(50):
        remote.log("i", i)
        remote.flush()
    data = journal.read_bytes()
    store = local_run.experiment.workspace._store
    cut = len(data) // 2 + 7  # mid-line: the partial line waits for the rest
    offset = apply(store, local_run.id, 0, data[:cut])
    assert offset == len(complete_lines(data[:cut])) < cut
    # The same chunk again (resent after a reconnect) is ignored.
    assert apply(store, local_run.id, 0, data[:cut]) == offset
    assert apply(store, local_run.id, offset, data[offset:]) == len(data)
    assert apply(store, local_run.id, offset, data[offset:]) == len(data)
    assert Run.get(local_run.experiment.workspace, local_run.id).get_metrics()["i"] == list(
        range(50)
    )


def test_a_status_the_remote_side_could_not_set_is_not_set_here(
    local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, journal = remote_workspace(tmp_path, monkeypatch, local_run.id)
    child = remote.child_run("kid")
    child.fail(error_details="boom")
    store = local_run.experiment.workspace._store
    data = journal.read_bytes()
    apply(store, local_run.id, 0, data)
    kid = Run.get(local_run.experiment.workspace, child.id)
    assert kid.get_status() == "Failed"
    # Seen here as NotResponding (link lost): to the remote side that is Running.
    store.set_status(local_run.id, "NotResponding")
    remote.fail(error_details="script gave up")
    more = journal.read_bytes()[len(data) :]
    apply(store, local_run.id, len(data), more)
    assert Run.get(local_run.experiment.workspace, local_run.id).get_status() == "Failed"


def test_without_the_variable_no_journal_is_written(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(JOURNAL_ENV, raising=False)
    run = Experiment(ws, "exp").start_logging()
    run.log("x", 1)
    run.flush()
    assert ws._store.journal is None


def _ship_blobs(remote: Run, ws: Workspace, data: bytes) -> None:
    """What the host's agent does: send every blob a journal line names."""
    for line in data.splitlines():
        for digest in json.loads(line).get("blobs") or []:
            ws._blobs.put_bytes(remote.experiment.workspace._blobs.read_bytes(digest))


def test_models_snapshots_and_submitted_runs_are_replayed_once(
    local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, journal = remote_workspace(tmp_path, monkeypatch, local_run.id)
    ws = local_run.experiment.workspace
    Model.register(ws, _file(tmp_path / "mine.txt", "mine"), "mnist")  # version 1 here already
    remote.upload_file("outputs/model.pkl", _file(tmp_path / "model.pkl", "weights"))
    on_host = remote.register_model("mnist", "outputs/model.pkl", tags={"a": "1"})
    assert on_host.version == 1  # the host's private registry
    Model.register(remote.experiment.workspace, _file(tmp_path / "plain.txt", "p"), "plain")
    code = tmp_path / "code"
    code.mkdir()
    for i in range(40):  # enough small files to be packed: blobs come from packs too
        _file(code / f"f{i}.py", f"print({i})\n")
    snap_id = remote.take_snapshot(code)
    child = remote.submit_child(
        ScriptRunConfig(str(code), "f1.py", arguments=["x"]), tags={"k": "v"}
    )
    assert child.id == f"{remote.id}_0"
    assert child.get_status() == "Starting"  # never launched on the host
    data = journal.read_bytes()
    _ship_blobs(remote, ws, data)

    cut = data.index(b'"e":"snapshot"')  # a link cut before the snapshot's line
    submitted: list[str] = []
    offset = apply(ws._store, local_run.id, 0, data[:cut], submitted)
    assert apply(ws._store, local_run.id, 0, data[:cut], submitted) == offset  # resent: ignored
    assert apply(ws._store, local_run.id, offset, data[offset:], submitted) == len(data)
    assert apply(ws._store, local_run.id, offset, data[offset:], submitted) == len(data)
    assert submitted == [child.id]

    # Numbered here, after this workspace's own version; nothing registered twice.
    assert [(m.id, m.run_id, m.tags) for m in Model.list(ws, name="mnist")] == [
        ("mnist:2", local_run.id, {"a": "1"}),
        ("mnist:1", None, {}),
    ]
    assert Path(Model(ws, "mnist").download(tmp_path / "dl")).read_text() == "weights"
    assert Model(ws, "plain").run_id is None
    run = Run.get(ws, local_run.id)
    assert run.get_snapshot_id() == snap_id
    with zipfile.ZipFile(run.restore_snapshot(path=str(tmp_path / "zips"))) as z:
        assert z.read("f7.py") == b"print(7)\n"
    (kid,) = run.get_children()
    assert kid.id == child.id
    assert kid.type == "azureml.scriptrun"
    assert kid.get_tags() == {"k": "v"}
    assert kid.get_properties()["ContentSnapshotId"] == snap_id
    row = ws._store.get_run(kid.id)
    assert row is not None
    assert row.status == "Starting"
    definition = RunDefinition.from_json(row.definition)
    assert definition.target == "box"  # none given: the host's own target
    assert definition.snapshot_id == snap_id
    assert definition.arguments == ("x",)


def test_on_the_host_a_handed_over_run_takes_tags_and_cancel_but_no_waiting(
    local_run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, journal = remote_workspace(tmp_path, monkeypatch, local_run.id)
    monkeypatch.setenv("RUNNER_RUN_ID", remote.id)
    code = tmp_path / "code"
    code.mkdir()
    _file(code / "c.py", "")
    child = remote.submit_child(ScriptRunConfig(str(code), "c.py", compute_target="other"))
    assert RunDefinition.from_json(child._row.definition).target == "other"
    with pytest.raises(UserError, match="runs in the workspace that submitted this run"):
        child.wait_for_completion()
    child.tag("seen", "yes")
    child.cancel()  # no daemon on the host to tell: the request goes through the journal
    ws = local_run.experiment.workspace
    apply(ws._store, local_run.id, 0, journal.read_bytes())
    here = Run.get(ws, child.id)
    assert here.get_tags() == {"seen": "yes"}
    assert ws._store.get_run(child.id).status == "CancelRequested"  # type: ignore[union-attr]


def test_events_of_unknown_kinds_are_skipped(local_run: Run) -> None:
    store = local_run.experiment.workspace._store
    lines = b'{"e":"from-the-future","id":"x","blobs":["00"]}\n{"e":"tags","id":"%s","tags":{"a":"b"}}\n'
    data = lines % local_run.id.encode()
    assert apply(store, local_run.id, 0, data) == len(data)
    assert Run.get(local_run.experiment.workspace, local_run.id).get_tags() == {"a": "b"}


def _file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
