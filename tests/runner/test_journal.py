"""The journal of a remote run's store, and its replay here (runner/journal.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import Experiment, Run, Workspace
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
