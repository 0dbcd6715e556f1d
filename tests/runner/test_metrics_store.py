"""The store (SQLite, WAL, versioned schema, indexes), the content-addressed file store,
the fast metric path, every metric kind, and bad input refused at the call."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner import Experiment, Run, Workspace
from runner.errors import ConfigError, ConflictError, NotFoundError, StoreError
from runner.store import SCHEMA_VERSION, Store
from tests.helpers import (
    finish,
    run_script,
    script_env,
    sql_statements,
    start_script,
    wait_until,
)

# -- the seeds' Run page examples (valid structured metrics) --------------------------

SEED_CONFUSION_MATRIX = {
    "schema_type": "confusion_matrix",
    "schema_version": "1.0.0",
    "data": {
        "class_labels": ["0", "1", "2", "3"],
        "matrix": [[3, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]],
    },
}
SEED_ACCURACY_TABLE = json.loads(
    '{"schema_type": "accuracy_table", "schema_version": "1.0.1", "data": {'
    '"probability_tables": [[[82, 118, 0, 0], [75, 31, 87, 7], [66, 9, 109, 16], '
    "[46, 2, 116, 36], [0, 0, 118, 82]], [[60, 140, 0, 0], [56, 20, 120, 4], "
    "[47, 4, 136, 13], [28, 0, 140, 32], [0, 0, 140, 60]], [[58, 142, 0, 0], "
    "[53, 29, 113, 5], [40, 10, 132, 18], [24, 1, 141, 34], [0, 0, 142, 58]]], "
    '"percentile_tables": [[[82, 118, 0, 0], [82, 67, 51, 0], [75, 26, 92, 7], '
    "[48, 3, 115, 34], [3, 0, 118, 79]], [[60, 140, 0, 0], [60, 89, 51, 0], "
    "[60, 41, 99, 0], [46, 5, 135, 14], [3, 0, 140, 57]], [[58, 142, 0, 0], "
    "[56, 93, 49, 2], [54, 47, 95, 4], [41, 10, 132, 17], [3, 0, 142, 55]]], "
    '"probability_thresholds": [0.0, 0.25, 0.5, 0.75, 1.0], '
    '"percentile_thresholds": [0.0, 0.01, 0.24, 0.98, 1.0], '
    '"class_labels": ["0", "1", "2"]}}'
)
SEED_PREDICTIONS = {
    "schema_type": "predictions",
    "schema_version": "1.0.0",
    "data": {
        "bin_averages": [0.25, 0.75],
        "bin_errors": [0.013, 0.042],
        "bin_counts": [56, 34],
        "bin_edges": [0.0, 0.5, 1.0],
    },
}
SEED_RESIDUALS = {
    "schema_type": "residuals",
    "schema_version": "1.0.0",
    "data": {"bin_edges": [50, 100, 200, 300, 350], "bin_counts": [0.88, 20, 30, 50.99]},
}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _raw(ws: Workspace) -> contextlib.closing[sqlite3.Connection]:
    """A plain SQLite connection of our own: sees only what is committed."""
    return contextlib.closing(sqlite3.connect(ws.path / "runner.db"))


def _stored_count(ws: Workspace, run_id: str, name: str) -> int:
    with _raw(ws) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(count), 0) FROM metrics WHERE run_id = ? AND name = ?",
            (run_id, name),
        ).fetchone()
    return int(row[0])


# -- schema, WAL, migrations, indexes -------------------------------------------------


def test_schema_is_versioned_and_the_database_uses_wal(ws):
    assert SCHEMA_VERSION >= 1
    with _raw(ws) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_new_database_is_migrated_from_version_0(tmp_path):
    db = tmp_path / "runner.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    store = Store(str(db))
    try:
        with _raw_db(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()
    again = Store(str(db))  # opening a current database changes nothing
    again.close()


def test_reopening_keeps_what_was_stored(tmp_path):
    path = tmp_path / "w"
    ws = Workspace.create(path)
    run = Experiment(ws, "e").start_logging()
    run.log("a", 1)
    run.complete()
    ws._store.close()
    reopened = Workspace(path)
    assert reopened._store is not ws._store
    assert Run.get(reopened, run.id).get_metrics() == {"a": 1}


def test_a_newer_schema_is_refused_with_store_error(tmp_path):
    path = tmp_path / "w"
    Workspace.create(path)._store.close()
    with _raw_db(path / "runner.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    with pytest.raises(
        StoreError,
        match=rf"has schema {SCHEMA_VERSION + 1}, newer than this runner understands "
        rf"\({SCHEMA_VERSION}\); upgrade runner",
    ):
        Workspace(path)


def test_a_newer_schema_is_refused_in_a_fresh_process_too(tmp_path):
    path = tmp_path / "w"
    Workspace.create(path)._store.close()
    with _raw_db(path / "runner.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
        conn.commit()
    out = tmp_path / "out.json"
    proc = run_script("log_then_exit.py", path, "e", 1, out, check=False)
    assert proc.returncode != 0
    assert "StoreError" in proc.stderr
    assert "upgrade runner" in proc.stderr
    assert not out.exists()


def test_a_corrupt_database_is_a_store_error(tmp_path):
    path = tmp_path / "w"
    Workspace.create(path)._store.close()
    for leftover in path.glob("runner.db*"):
        leftover.unlink()
    (path / "runner.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"cannot open the workspace database .*runner\.db"):
        Workspace(path)


def _index_columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, ...]]:
    found = []
    for _, index, *_ in conn.execute(f"PRAGMA index_list({table})"):
        cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({index})"))
        found.append(cols)
    return found


@pytest.mark.parametrize(
    ("table", "leading"),
    [
        ("runs", ("experiment_id",)),
        ("runs", ("status",)),
        ("runs", ("parent_id",)),
        ("tags", ("key", "value")),
        ("properties", ("key", "value")),
        ("metrics", ("run_id", "name")),
    ],
)
def test_indexes_exist_for_the_queries_of_the_spec(ws, table, leading):
    with _raw(ws) as conn:
        indexes = _index_columns(conn, table)
    assert any(cols[: len(leading)] == leading for cols in indexes), indexes


def _plans(ws: Workspace, statements: list[str]) -> list[str]:
    lines = []
    with _raw(ws) as conn:
        for sql in statements:
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                lines += [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return lines


@pytest.mark.parametrize(
    "query",
    [
        lambda exp, run: list(exp.get_runs()),
        lambda exp, run: list(exp.get_runs(tags={"k": "v"}, properties=["p"])),
        lambda exp, run: list(exp.get_runs(tags=["k"], properties={"p": "1"})),
        lambda exp, run: list(Run.list(exp, status="Completed")),
        lambda exp, run: list(run.get_children()),
        lambda exp, run: list(run.get_children(recursive=True, tags="k")),
        lambda exp, run: run.get_metrics(),
    ],
    ids=["runs", "tag-kv", "prop-kv", "status", "children", "descendants", "metrics"],
)
def test_queries_search_by_index_and_never_scan_a_table(ws, exp, query):
    run = exp.start_logging()
    run.tag("k", "v")
    run.add_properties({"p": "1"})
    run.child_run().log("x", 1)
    run.log("m", 1)
    run.flush()
    with sql_statements(ws) as statements:
        query(exp, run)
    plans = _plans(ws, statements)
    assert plans
    scans = [p for p in plans if re.match(r"SCAN (r|runs|tags|properties|metrics)\b", p)]
    assert scans == [], plans


# -- content-addressed artifacts ------------------------------------------------------


def test_files_are_stored_once_by_content(ws, exp, tmp_path):
    data = b"same bytes in two runs"
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    a, b = exp.start_logging(), exp.start_logging()
    a.upload_file("x.bin", src)
    b.upload_file("deep/y.bin", src)
    digest = hashlib.sha256(data).hexdigest()
    blobs = [p for p in (ws.path / "blobs").rglob("*") if p.is_file()]
    assert blobs == [ws.path / "blobs" / digest[:2] / digest[2:]]
    assert blobs[0].read_bytes() == data
    assert not stat.S_IMODE(blobs[0].stat().st_mode) & 0o222, "blobs are read-only"


def test_blob_writes_leave_no_temporary_files(ws, exp, tmp_path):
    run = exp.start_logging()
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text(str(i), encoding="utf-8")
    run.upload_folder("many", tmp_path)
    assert not [p for p in (ws.path / "blobs").rglob(".tmp-*")]


def test_downloaded_file_is_a_writable_copy(exp, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("hello", encoding="utf-8")
    run = exp.start_logging()
    run.upload_file("f.txt", src)
    dest = Path(run.download_file("f.txt", tmp_path / "copy.txt"))
    assert dest.read_text(encoding="utf-8") == "hello"
    dest.write_text("changed", encoding="utf-8")
    assert run.download_file("f.txt", tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text(encoding="utf-8") == "hello"


# -- the fast metric path -------------------------------------------------------------


def test_log_never_does_a_database_round_trip(ws, exp):
    run = exp.start_logging()
    run.log("loss", 0.0)  # the first value registers the metric: one write is fine
    run.log("acc", 1, step=0)
    with sql_statements(ws) as statements:
        for i in range(20_000):
            run.log("loss", i * 0.5)
            run.log("acc", i, step=i + 1)
    assert statements == []
    run.flush()
    assert len(run.get_metrics()["loss"]) == 20_001


def test_values_are_written_in_batches_not_one_row_each(ws, exp):
    run = exp.start_logging()
    for i in range(20_000):
        run.log("v", i)
    run.flush()
    with _raw(ws) as conn:
        rows = conn.execute(
            "SELECT COUNT(*) FROM metrics WHERE run_id = ? AND name = 'v'", (run.id,)
        ).fetchone()[0]
    assert 1 <= rows <= 10, f"20,000 values took {rows} rows"
    assert _stored_count(ws, run.id, "v") == 20_000


def test_the_background_writer_makes_values_durable_without_flush(ws, exp):
    run = exp.start_logging()
    for i in range(1000):
        run.log("v", i)
    wait_until(lambda: _stored_count(ws, run.id, "v") == 1000, timeout_s=1.0)


def test_flush_makes_everything_durable_at_once(ws, exp):
    run = exp.start_logging()
    for i in range(5000):
        run.log("v", i)
    run.log_row("r", a=1)
    run.flush()
    assert _stored_count(ws, run.id, "v") == 5000
    assert _stored_count(ws, run.id, "r") == 1


def test_flush_waits_for_values_the_writer_has_in_flight(ws, tmp_path):
    n = 1_000_000
    out = tmp_path / "out.json"
    run_script("flush_then_die.py", ws.path, "in-flight", n, out)
    info = json.loads(out.read_text(encoding="utf-8"))
    assert info["caught_writer_mid_drain"], "the script must flush while the writer writes"
    assert _stored_count(ws, info["id"], "v") == n, "flush() returned before values were stored"


def test_flush_and_get_metrics_return_while_another_thread_keeps_logging(exp):
    run = exp.start_logging()
    run.log("v", 0)
    stop = threading.Event()
    logged = []

    def spin() -> None:
        i = 1
        while not stop.is_set():
            run.log("v", i)
            i += 1
        logged.append(i)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        wait_until(lambda: len(run.get_metrics(name="v").get("v", [])) > 1000)
        started = time.monotonic()
        run.flush()
        values = run.get_metrics()["v"]
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
    assert took < 5, f"flush() and get_metrics() took {took:.1f} s beside a logging thread"
    assert values == list(range(len(values)))
    assert run.get_metrics()["v"] == list(range(logged[0]))


def test_complete_makes_everything_durable(ws, exp):
    run = exp.start_logging()
    for i in range(3000):
        run.log("v", float(i))
    run.complete()
    assert _stored_count(ws, run.id, "v") == 3000


def test_interpreter_exit_flushes_without_flush_or_complete(ws, tmp_path):
    out = tmp_path / "id.json"
    run_script("log_then_exit.py", ws.path, "exiting", 50_000, out)
    run = Run.get(ws, json.loads(out.read_text(encoding="utf-8"))["id"])
    metrics = run.get_metrics()
    assert metrics["v"] == list(range(50_000))
    assert metrics["steps"] == 1.5
    assert run.get_metrics_with_steps("steps") == {"steps": [10], "values": [1.5]}
    assert metrics["row"] == {"a": [1], "b": ["x"]}
    assert metrics["l"] == [True, False]
    assert run.get_tags() == {"left": "without flush"}
    # Nobody completed it and its process is gone: the first look records that (issue 11).
    assert run.status == "Failed"
    assert "ended without complete()" in run.get_details()["error"]["error"]["message"]


def test_exit_by_an_unhandled_exception_flushes_too(ws, tmp_path):
    out = tmp_path / "id.json"
    proc = run_script("log_then_exit.py", ws.path, "crash", 1000, out, "raise", check=False)
    assert proc.returncode == 1
    assert "RuntimeError: the script crashed after logging" in proc.stderr
    run = Run.get(ws, json.loads(out.read_text(encoding="utf-8"))["id"])
    assert run.get_metrics()["v"] == list(range(1000))


def test_another_process_sees_a_live_runs_values_within_1_s(ws, tmp_path):
    logged, stop = tmp_path / "logged.json", tmp_path / "stop"
    proc = start_script("log_and_wait.py", ws.path, "live", 2000, logged, stop)
    try:
        info = json.loads(wait_until(lambda: logged.exists() and logged.read_text("utf-8")))
        seen_at = time.monotonic()
        run = Run.get(ws, info["id"])
        values = wait_until(
            lambda: run.get_metrics().get("v"),
            timeout_s=1.0,
            message="the other process's values to become visible",
        )
        assert time.monotonic() - seen_at < 1.0
        wait_until(lambda: len(run.get_metrics()["v"]) == 2000, timeout_s=1.0)
        assert run.get_metrics()["v"] == list(range(2000))
        assert values == list(range(len(values))), "a visible part is a prefix, in order"
        assert proc.poll() is None, "the writer process is still running"
    finally:
        stop.touch()
        finish(proc)
    assert run.status == "Completed"


# -- metric kinds and get_metrics shapes ----------------------------------------------


def test_scalar_once_is_a_scalar_and_more_is_a_list(exp):
    run = exp.start_logging()
    run.log("once", 0.5)
    run.log("twice", 1)
    run.log("twice", 2)
    assert run.get_metrics() == {"once": 0.5, "twice": [1, 2]}
    assert run.get_metrics(name="twice") == {"twice": [1, 2]}
    assert run.get_metrics(name="never") == {}


def test_scalar_types_come_back_exactly(exp):
    run = exp.start_logging()
    values = [1, 2.5, True, "text", False, 0, 2**70, -(2**63), "é ;\n"]
    for v in values:
        run.log("mixed", v)
    for v in (True, False, True):
        run.log("flags", v)
    run.log("i", 3)
    run.log("f", 3.0)
    got = run.get_metrics()
    assert got["mixed"] == values
    assert [type(v) for v in got["mixed"]] == [type(v) for v in values]
    assert got["flags"] == [True, False, True]
    assert all(type(v) is bool for v in got["flags"])
    assert type(got["i"]) is int
    assert type(got["f"]) is float


def test_types_survive_across_flushes(exp):
    run = exp.start_logging()
    run.log("v", 1)
    run.flush()
    run.log("v", 2.5)
    run.flush()
    run.log("v", "three")
    assert run.get_metrics()["v"] == [1, 2.5, "three"]


def test_nan_and_infinity_are_kept(exp):
    run = exp.start_logging()
    run.log("v", float("nan"))
    run.log("v", float("inf"))
    run.log("v", "x")
    v = run.get_metrics()["v"]
    assert math.isnan(v[0])
    assert v[1:] == [float("inf"), "x"]


def test_log_with_steps(exp):
    run = exp.start_logging()
    for epoch in (0, 5, 10):
        run.log("loss", 1.0 / (epoch + 1), step=epoch)
    assert run.get_metrics()["loss"] == [1.0, 1 / 6, 1 / 11]
    assert run.get_metrics_with_steps("loss") == {
        "steps": [0, 5, 10],
        "values": [1.0, 1 / 6, 1 / 11],
    }


def test_step_rule_holds_for_another_run_object_of_the_same_run(ws, exp):
    run = exp.start_logging()
    run.log("s", 1.0, step=1)
    other = Run.get(ws, run.id)
    with pytest.raises(ConfigError, match=r"metric 's' was logged with step= before"):
        other.log("s", 2.0)
    other.log("s", 3.0, step=3)
    assert run.get_metrics_with_steps("s") == {"steps": [1, 3], "values": [1.0, 3.0]}


def test_step_rule_holds_across_processes(ws, exp):
    run = exp.start_logging()
    run.log("s", 1.0, step=1)
    run.log("plain", 1)
    code = (
        "import sys\n"
        "from runner import Run, Workspace\n"
        "run = Run.get(Workspace(sys.argv[1]), sys.argv[2])\n"
        "for name, step in (('s', None), ('plain', 5)):\n"
        "    try:\n"
        "        run.log(name, 2.0, step=step)\n"
        "    except ValueError as exc:\n"
        "        print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ws.path), run.id],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("metric 's' was logged with step= before, so every value needs one")
    assert lines[1].startswith("metric 'plain' was logged without step= before")
    assert run.get_metrics() == {"s": 1.0, "plain": 1}


def test_log_list(exp):
    run = exp.start_logging()
    run.log_list("one", [7])
    run.log_list("accs", [0.5, 0.6])
    run.log_list("accs", (0.7,))
    run.log_list("empty", [])
    got = run.get_metrics()
    assert got["one"] == [7]
    assert got["accs"] == [0.5, 0.6, 0.7]
    assert got["empty"] == []


def test_log_row_builds_a_table_of_columns(exp):
    run = exp.start_logging()
    run.log_row("Y over X", x=1, y=0.4)
    run.log_row("Y over X", x=2, y=0.5)
    run.log_row("Y over X", x=3, y=0.6, note="late column")
    assert run.get_metrics()["Y over X"] == {
        "x": [1, 2, 3],
        "y": [0.4, 0.5, 0.6],
        "note": [None, None, "late column"],
    }


def test_log_table_is_a_dict_of_columns_and_repeated_calls_append(exp):
    run = exp.start_logging()
    run.log_table("t", {"a": [1, 2], "b": ["x", "y"]})
    assert run.get_metrics()["t"] == {"a": [1, 2], "b": ["x", "y"]}
    run.log_table("t", {"a": [3], "b": ["z"]})
    assert run.get_metrics()["t"] == {"a": [1, 2, 3], "b": ["x", "y", "z"]}


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("log_confusion_matrix", SEED_CONFUSION_MATRIX),
        ("log_accuracy_table", SEED_ACCURACY_TABLE),
        ("log_predictions", SEED_PREDICTIONS),
        ("log_residuals", SEED_RESIDUALS),
    ],
)
def test_structured_metrics_of_the_seeds(exp, method, value):
    run = exp.start_logging()
    getattr(run, method)("m", value)
    assert run.get_metrics()["m"] == value
    getattr(run, method)("from_json", json.dumps(value))
    assert run.get_metrics()["from_json"] == value


def test_log_image_from_a_file(exp, tmp_path):
    img = tmp_path / "plot.png"
    img.write_bytes(PNG_BYTES)
    run = exp.start_logging()
    run.log_image("my plot", path=img)
    ref = run.get_metrics()["my plot"]
    assert isinstance(ref, str)
    stored = [n for n in run.get_file_names() if n.endswith(".png")]
    assert len(stored) == 1
    assert ref.endswith(stored[0])
    assert run.id in ref
    out = run.download_file(stored[0], tmp_path / "back.png")
    assert Path(out).read_bytes() == PNG_BYTES


def test_log_image_many_times_under_one_name(exp, tmp_path):
    run = exp.start_logging()
    images = []
    for i in range(2):
        img = tmp_path / f"{i}.png"
        img.write_bytes(PNG_BYTES + bytes([i]))
        images.append(img)
    for _ in range(20):  # an epoch loop logging its plots
        run.log_image("curve", path=images[0])
        run.log_image("curve", path=images[1])
    assert len(run.get_metrics()["curve"]) == 40


def test_log_image_from_a_matplotlib_figure(exp, tmp_path):
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib renders plot=")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    run = exp.start_logging()
    try:
        run.log_image("curve", plot=fig)
    finally:
        plt.close(fig)
    (name,) = [n for n in run.get_file_names() if n.endswith(".png")]
    data = Path(run.download_file(name, tmp_path / "c.png")).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")


def test_log_image_needs_exactly_one_source(exp, tmp_path):
    run = exp.start_logging()
    with pytest.raises(ConfigError, match=r"pass exactly one of path= .* or plot="):
        run.log_image("img")


def test_get_metrics_recursive_covers_all_descendants(exp):
    run = exp.start_logging()
    run.log("top", 1)
    child = run.child_run("c")
    child.log("mid", 2)
    grandchild = child.child_run("g")
    grandchild.log("low", 3)
    grandchild.log("low", 4)
    quiet = run.child_run("quiet")
    assert run.get_metrics(recursive=True) == {
        run.id: {"top": 1},
        child.id: {"mid": 2},
        grandchild.id: {"low": [3, 4]},
        quiet.id: {},
    }
    assert child.get_metrics(recursive=True) == {
        child.id: {"mid": 2},
        grandchild.id: {"low": [3, 4]},
    }
    assert run.get_metrics(name="low", recursive=True)[grandchild.id] == {"low": [3, 4]}


def test_get_metrics_recursive_by_run_type(exp):
    run = exp.start_logging()
    run.log("top", 1)
    child = run.child_run()
    child.log("c", 2)
    only_children = run.get_metrics(recursive=True, run_type=child.type)
    assert only_children == {child.id: {"c": 2}}


# -- bad input: a clear error at the call, nothing already recorded lost -------------


@pytest.fixture
def run_with_history(exp):
    run = exp.start_logging()
    run.log("v", 1)
    run.log("v", 2)
    run.log("s", 0.5, step=0)
    run.log_row("row", a=1)
    run.tag("t", "x")
    run.add_properties({"p": "1"})
    before = (run.get_metrics(), run.get_tags(), run.get_properties())
    yield run
    after = (run.get_metrics(), run.get_tags(), run.get_properties())
    assert after == before, "a refused call must not lose or change what was recorded"
    assert run.get_status() == "Running"
    run.log("v", 3)  # and the run goes on
    assert run.get_metrics()["v"] == [1, 2, 3]


BAD_INPUT = [
    (lambda r: r.log("v", [1, 2]), ConfigError, r"metric 'v': value \[1, 2\] is a list.*log_list"),
    (lambda r: r.log("v", None), ConfigError, r"metric 'v': value is None.*pass a value"),
    (lambda r: r.log("v", {"a": 1}), ConfigError, r"metric 'v': value .* is a dict.*log_row"),
    (lambda r: r.log("v", b"x"), ConfigError, r"metric 'v': value b'x' is a bytes.*decode"),
    (lambda r: r.log("v", 1j), ConfigError, r"metric 'v': value 1j is a complex.*abs"),
    (lambda r: r.log("new", object()), ConfigError, r"metric 'new': value .* is an object"),
    (lambda r: r.log("", 1), ConfigError, r"metric name '' is empty; pass a name"),
    (lambda r: r.log("   ", 1), ConfigError, r"metric name '   ' is empty"),
    (lambda r: r.log(None, 1), ConfigError, r"metric name None is a NoneType; pass a non-empty"),
    (lambda r: r.log(3, 1), ConfigError, r"metric name 3 is an int; pass a non-empty str"),
    (lambda r: r.log("a\nb", 1), ConfigError, r"contains the control character '\\n'"),
    (lambda r: r.log_list("", [1]), ConfigError, r"metric name '' is empty"),
    (lambda r: r.log_row("", a=1), ConfigError, r"metric name '' is empty"),
    (lambda r: r.log_list("l", "abc"), ConfigError, r"metric 'l': value 'abc' is a str"),
    (lambda r: r.log_list("l", [1, [2]]), ConfigError, r"metric 'l': element 1 \[2\] is a list"),
    (lambda r: r.log_list("l", {1, 2}), ConfigError, r"a set has no order; pass sorted"),
    (lambda r: r.log_row("row", a=[1]), ConfigError, r"metric 'row'.*\[1\] is a list"),
    (
        lambda r: r.log_table("tb", {"a": [1], "b": [1, 2]}),
        ConfigError,
        r"metric 'tb'.*(length|long|rows)",
    ),
    (lambda r: r.log_table("tb", [1, 2]), ConfigError, r"metric 'tb': .*is a list"),
    (
        lambda r: r.log("v", 3, step=3),
        ConfigError,
        r"metric 'v' was logged without step= before; log every value of it with a step",
    ),
    (
        lambda r: r.log("s", 0.7),
        ConfigError,
        r"metric 's' was logged with step= before, so every value needs one; pass step=",
    ),
    (lambda r: r.log("s", 1.0, step="2"), ConfigError, r"step '2' must be an int"),
    (lambda r: r.log("fresh", 1.0, step=True), ConfigError, r"step True must be an int"),
    (lambda r: r.log("fresh", 1.0, step=1.5), ConfigError, r"step 1\.5 must be an int"),
    (
        lambda r: r.log_list("s", [1.0]),
        ConfigError,
        r"metric 's' has steps; log its values one by one",
    ),
    (
        lambda r: r.log_row("v", a=1),
        ConflictError,
        r"metric 'v' of run .* was logged with log\(\); it cannot take log_row\(\) values",
    ),
    (
        lambda r: r.log("row", 1),
        ConflictError,
        r"metric 'row' .* was logged with log_row\(\); it cannot take log\(\) values",
    ),
    (
        lambda r: r.log_confusion_matrix("row", SEED_CONFUSION_MATRIX),
        ConflictError,
        r"was logged with log_row\(\); it cannot take log_confusion_matrix\(\) values",
    ),
    (
        lambda r: r.log_confusion_matrix(
            "cm", {**SEED_CONFUSION_MATRIX, "data": {"class_labels": ["0"], "matrix": [[-1]]}}
        ),
        ConfigError,
        r"metric 'cm': data\.matrix\[0\]\[0\] = -1 is negative",
    ),
    (
        lambda r: r.log_confusion_matrix("cm", SEED_RESIDUALS),
        ConfigError,
        r"metric 'cm'.*residuals.*log_residuals",
    ),
    (lambda r: r.log_confusion_matrix("cm", "{not json"), ConfigError, r"metric 'cm'.*JSON"),
    (
        lambda r: r.log_predictions(
            "p", {**SEED_PREDICTIONS, "data": {**SEED_PREDICTIONS["data"], "bin_counts": [1]}}
        ),
        ConfigError,
        r"metric 'p': .*data\.bin_counts 1; give each of them one value per bin",
    ),
    (
        lambda r: r.log_residuals("res", {"schema_type": "residuals", "data": {}}),
        ConfigError,
        r"metric 'res'.*(schema_version|bin_edges)",
    ),
    (
        lambda r: r.log_accuracy_table("acc", {"schema_type": "accuracy_table"}),
        ConfigError,
        r"metric 'acc'.*(schema_version|data)",
    ),
    (lambda r: r.tag(1, "x"), ConfigError, r"tag key 1 must be a non-empty str"),
    (lambda r: r.tag("", "x"), ConfigError, r"tag key '' must be a non-empty str"),
    (lambda r: r.tag("k", [1]), ConfigError, r"tag 'k': value \[1\] is a list; values are str"),
    (lambda r: r.set_tags({2: "x"}), ConfigError, r"tag key 2 must be a non-empty str"),
    (lambda r: r.set_tags(["ok", None]), ConfigError, r"tag key None must be a non-empty str"),
    (lambda r: r.set_tags(5), ConfigError, r"set_tags takes a dict, a str or a list of str"),
    (lambda r: r.remove_tags([3]), ConfigError, r"tag key 3 must be a non-empty str"),
    (lambda r: r.add_properties({4: "x"}), ConfigError, r"tag key 4 must be a non-empty str"),
    (lambda r: r.add_properties("p"), ConfigError, r"add_properties takes a dict, not str"),
    (
        lambda r: r.add_properties({"q": object()}),
        ConfigError,
        r"property 'q': value .* is a object",
    ),
    (
        lambda r: r.add_properties({"p": "2"}),
        ConflictError,
        r"property 'p' of run .* is already '1'; properties are immutable, so it cannot "
        r"become '2'",
    ),
    (
        lambda r: r.add_properties({"new": "ok", "p": "2"}),
        ConflictError,
        r"property 'p' .* is already '1'",
    ),
]


def _case_id(value: object) -> str:
    if isinstance(value, str):
        return re.sub(r"\W+", "-", value).strip("-")[:48]
    if isinstance(value, type):
        return value.__name__
    return "call"


@pytest.mark.parametrize(("call", "error", "match"), BAD_INPUT, ids=_case_id)
def test_bad_input_is_refused_at_the_call_and_nothing_is_lost(run_with_history, call, error, match):
    with pytest.raises(error, match=match):
        call(run_with_history)


def test_a_refused_batch_of_properties_adds_none_of_them(run_with_history):
    with pytest.raises(ConflictError, match=r"property 'p' .* is already '1'"):
        run_with_history.add_properties({"fresh": "x", "p": "other"})
    assert "fresh" not in run_with_history.get_properties()


def test_bad_metric_errors_are_config_errors_and_value_errors(exp):
    run = exp.start_logging()
    with pytest.raises(ValueError, match=r"metric 'x': value \[1\] is a list"):
        run.log("x", [1])


@pytest.mark.parametrize("bad_id", ["nope", "", "test_0_deadbeef", "x' OR '1'='1"])
def test_unknown_run_ids_are_not_found(ws, exp, bad_id):
    exp.start_logging()
    with pytest.raises(NotFoundError, match=r"no run .* in experiment 'test'.*get_runs"):
        Run(exp, bad_id)
    with pytest.raises(NotFoundError, match=r"no run .* in workspace ws.*runner run list"):
        Run.get(ws, bad_id)


def test_a_run_of_another_experiment_is_not_found_there(ws, exp):
    run = exp.start_logging()
    with pytest.raises(NotFoundError, match=rf"no run '{run.id}' in experiment 'other'"):
        Run(Experiment(ws, "other"), run.id)


def test_get_metrics_with_steps_of_an_unknown_metric(exp):
    run = exp.start_logging()
    with pytest.raises(NotFoundError, match=r"has no metric 'nothing'"):
        run.get_metrics_with_steps("nothing")


def _raw_db(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path))


def test_a_version_1_database_is_migrated_to_the_current_schema(tmp_path):
    """A workspace written by the first schema gains the later columns on open."""
    import sqlite3

    from runner import store as store_module

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for statement in store_module._MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(str(db))
    try:
        cols = [r[1] for r in store.query("PRAGMA table_info(runs)")]
        assert "handle" in cols
        assert store.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    finally:
        store.close()
