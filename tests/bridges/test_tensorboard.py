"""runner.tensorboard (v1: azureml.tensorboard), through separate processes (issue 15, item 1).

A script logs metrics inside a real submitted run; another process exports the run with
``export_to_tensorboard``; the test reads the event files back with TensorBoard's own
reader and compares every scalar. ``Tensorboard`` is started by one process, its HTTP API
fetched by another, and it is stopped with no tensorboard process left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.bridges.support import run_without_site_packages, workspace_and_source
from tests.helpers import run_code, script_env, wait_until

if os.environ.get("CI") != "true":
    pytest.importorskip("tensorboard", reason="pip install tensorboard (or the [test] extra)")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TRAIN = """
from runner import Run
run = Run.get_context()
for i in range(25):
    run.log("loss", 1.0 / (i + 1))
for i in range(5):
    run.log("acc", 0.5 + i / 10, step=100 * i)
run.log_list("lr", [0.1, 0.01, 0.001])
run.log_list("lr", [0.0001])
for epoch in range(3):
    run.log_row("epoch", n=epoch, score=epoch * 1.5, note="text is left out")
run.log_table("tbl", {"x": [1, 2], "y": [3.5, 4.5]})
run.log("flag", True)
run.log("name", "a string is left out")
child = run.child_run(name="child")
for i in range(4):
    child.log("child_metric", i * 2)
child.complete()
"""

#: Every numeric scalar TRAIN logs: tag -> [(step, value)].
EXPECTED_PARENT = {
    "loss": [(i, 1.0 / (i + 1)) for i in range(25)],
    "acc": [(100 * i, 0.5 + i / 10) for i in range(5)],
    "lr": [(0, 0.1), (1, 0.01), (2, 0.001), (3, 0.0001)],
    "epoch/n": [(e, e) for e in range(3)],
    "epoch/score": [(e, e * 1.5) for e in range(3)],
    "tbl/x": [(0, 1), (1, 2)],
    "tbl/y": [(0, 3.5), (1, 4.5)],
    "flag": [(0, 1.0)],
}
EXPECTED_CHILD = {"child_metric": [(i, i * 2) for i in range(4)]}

SUBMIT = """
import json, sys
from runner import Experiment, ScriptRunConfig, Workspace
ws = Workspace.create(sys.argv[1], exist_ok=True)
run = Experiment(ws, "tb").submit(ScriptRunConfig(sys.argv[2], "train.py"))
run.wait_for_completion(raise_on_error=True)
print(json.dumps({"id": run.id, "children": [c.id for c in run.get_children()]}))
"""


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def finished_run(tmp_path):
    """A real submitted run of TRAIN (in its own process); yields (ws folder, ids)."""
    with workspace_and_source(tmp_path, TRAIN) as (ws, src):
        out = _ok(run_code(SUBMIT, ws, src, cwd=tmp_path, timeout_s=180))
        yield ws, json.loads(out.strip().splitlines()[-1])


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _same(got, expected):
    assert sorted(got) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


@pytest.mark.slow
def test_export_writes_every_scalar_of_the_run_and_its_children(finished_run, tmp_path):
    ws, ids = finished_run
    out = tmp_path / "exported"
    _ok(
        run_code(
            """
            import sys
            from runner import Run, Workspace
            from runner.tensorboard import export_to_tensorboard
            run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
            export_to_tensorboard(run, sys.argv[3])
            export_to_tensorboard(run, sys.argv[3])  # again: replaces, does not add
            """,
            ws, ids["id"], out, cwd=tmp_path,
        )
    )  # fmt: skip
    [child] = ids["children"]
    assert sorted(p.name for p in out.iterdir()) == sorted([ids["id"], child])
    _same(_scalars(out / ids["id"]), EXPECTED_PARENT)
    _same(_scalars(out / child), EXPECTED_CHILD)
    # Wall times are when runner stored the values, not when they were exported.
    acc = EventAccumulator(str(out / ids["id"]))
    acc.Reload()
    exported_at = (out / ids["id"]).stat().st_mtime
    assert all(e.wall_time <= exported_at for e in acc.Scalars("loss"))

    # recursive=False leaves the children out
    flat = tmp_path / "flat"
    _ok(
        run_code(
            """
            import sys
            from runner import Run, Workspace
            from runner.tensorboard.export import export_to_tensorboard  # v1's module path
            export_to_tensorboard([Run.get(Workspace(sys.argv[1]), sys.argv[2])], sys.argv[3],
                                  recursive=False)
            """,
            ws, ids["id"], flat, cwd=tmp_path,
        )
    )  # fmt: skip
    assert [p.name for p in flat.iterdir()] == [ids["id"]]


SERVE = """
import sys, time
from pathlib import Path
import runner.tensorboard
from runner import Run, Workspace
from runner.tensorboard import Tensorboard
runner.tensorboard.FOLLOW_S = 0.2
tb = Tensorboard([Run.get(Workspace(sys.argv[1]), sys.argv[2])], local_root=sys.argv[3],
                 port=int(sys.argv[4]))
url = tb.start()
Path(sys.argv[5]).write_text(url)
while not Path(sys.argv[6]).exists():
    time.sleep(0.05)
if tb._follower is not None:  # it ends by itself once the runs have ended
    tb._follower.join(timeout=30)
following = tb._follower is not None and tb._follower.is_alive()
tb.stop()
print("stopped; following until stop():", following)
"""

#: What TensorBoard's HTTP API serves: {run: {tag: [[step, value], ...]}}.
FETCH = """
import json, sys, urllib.parse, urllib.request
base = sys.argv[1].rstrip("/")
tags = json.load(urllib.request.urlopen(base + "/data/plugin/scalars/tags"))
out = {}
for run, run_tags in tags.items():
    for tag in run_tags:
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        points = json.load(urllib.request.urlopen(base + "/data/plugin/scalars/scalars?" + query))
        out.setdefault(run, {})[tag] = [[step, value] for _, step, value in points]
print(json.dumps(out))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def _tensorboards() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "tensorboard.main" in cmd:
            found.append(p)
    return found


def _served(url: str, tmp_path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    got = json.loads(_ok(run_code(FETCH, url, cwd=tmp_path)))
    return {
        run: {t: [tuple(p) for p in pts] for t, pts in tags.items()} for run, tags in got.items()
    }


@contextmanager
def _serving(ws: Path, run_id: str, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A process serving the run with Tensorboard; yields (its URL, what it printed when
    stopped, filled in on exit) and checks that stop() left no tensorboard process."""
    root, url_file, stop_file = tmp_path / "tb", tmp_path / "url", tmp_path / "stop"
    before = {p.pid for p in _tensorboards()}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, ws, run_id, root, str(_free_port()), url_file, stop_file],
        env=script_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    printed: list[str] = []
    try:
        url = wait_until(lambda: url_file.exists() and url_file.read_text(), timeout_s=120)
        assert len([p for p in _tensorboards() if p.pid not in before]) == 1
        yield url, printed
    finally:
        stop_file.write_text("")
        out, err = server.communicate(timeout=60)
        printed.append(out)
    assert server.returncode == 0, err
    assert url in out  # start() prints the URL, as v1 does
    assert {p.pid for p in _tensorboards()} == before
    with pytest.raises(OSError, match=r"Connection refused|urlopen error"):
        urllib.request.urlopen(url, timeout=5)  # noqa: S310 - the http URL start() returned


@pytest.mark.slow
def test_tensorboard_serves_the_run_and_stops(finished_run, tmp_path):
    ws, ids = finished_run
    with _serving(ws, ids["id"], tmp_path) as (url, printed):
        served = _served(url, tmp_path)
        assert list(served) == [ids["id"]]  # children are not served, as in v1
        _same(served[ids["id"]], EXPECTED_PARENT)
    assert "following until stop(): False" in printed[0]  # the run had ended


FOLLOWED = """
import os, sys, time
from runner import Run
run = Run.get_context()
run.log("loss", 1.0)
run.flush()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
run.log("loss", 0.5)
run.log("late", 3.0)
"""

SUBMIT_AND_LEAVE = """
import sys, time
from runner import Experiment, ScriptRunConfig, Workspace
ws = Workspace.create(sys.argv[1], exist_ok=True)
run = Experiment(ws, "tb").submit(ScriptRunConfig(sys.argv[2], "train.py", arguments=[sys.argv[3]]))
while run.get_metrics().get("loss") != 1.0:
    time.sleep(0.05)
print(run.id)
"""


@pytest.mark.slow
def test_tensorboard_follows_a_running_run_until_it_ends(tmp_path):
    go = tmp_path / "go"
    with workspace_and_source(tmp_path, FOLLOWED) as (ws, src):
        run_id = _ok(run_code(SUBMIT_AND_LEAVE, ws, src, go, cwd=tmp_path, timeout_s=180)).strip()
        with _serving(ws, run_id, tmp_path) as (url, printed):
            assert wait_until(lambda: _served(url, tmp_path), timeout_s=60) == {
                run_id: {"loss": [(0, 1.0)]}
            }
            go.write_text("")
            wait_until(
                lambda: (
                    _served(url, tmp_path)
                    == {run_id: {"loss": [(0, 1.0), (1, 0.5)], "late": [(0, 3.0)]}}
                ),
                timeout_s=60,
                message="TensorBoard serving what the run logged after start()",
            )
            wait = "import sys; from runner import Run, Workspace; Run.get(Workspace(sys.argv[1]), sys.argv[2]).wait_for_completion(raise_on_error=True)"
            _ok(run_code(wait, ws, run_id, cwd=tmp_path, timeout_s=120))
        assert "following until stop(): False" in printed[0]  # it stopped when the run ended


def test_without_tensorboard_the_error_names_the_package(tmp_path):
    """The real interpreter with only the repository on its path (no site-packages)."""
    proc = run_without_site_packages(
        """
        from runner import Run
        from runner.errors import ConfigError
        from runner.tensorboard import export_to_tensorboard, Tensorboard
        run = Run.get_context()  # an offline run: no workspace needed
        for call in (lambda: export_to_tensorboard(run, "x"), lambda: Tensorboard([run]).start()):
            try:
                call()
            except ConfigError as exc:
                print("ERROR", exc)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    errors = [x for x in proc.stdout.splitlines() if x.startswith("ERROR")]
    assert len(errors) == 2, proc.stdout
    for line in errors:
        assert "pip install tensorboard" in line
        assert "No module named 'tensorboard'" in line
    assert not list(tmp_path.iterdir())  # nothing written, no process started
