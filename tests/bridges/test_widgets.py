"""runner.widgets.RunDetails (v1: azureml.widgets), through separate processes (issue 15, item 3).

A script inside a real submitted run logs, prints and then waits for a go file, so the
observer (its own process) sees the run mid-way and at its end: the text mode prints the
summary and returns at once; the ipywidgets mode (the real ipywidgets package, no Jupyter
front end: the widget's values are read) changes as the run progresses and its thread stops
when the run ends.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.bridges.support import run_without_site_packages, workspace_and_source
from tests.helpers import run_code

TRAIN = """
import os, sys, time
from runner import Run
run = Run.get_context()
run.log("loss", 0.5)
print("epoch one done", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
run.log("loss", 0.25)
run.log("acc", 0.9)
print("epoch two done", flush=True)
"""

#: Submits TRAIN, shows the run once it is mid-way, lets it finish, shows it again.
OBSERVE = """
import json, sys, time
from pathlib import Path
from runner import Experiment, ScriptRunConfig, Workspace
from runner.widgets import RunDetails
ws = Workspace.create(sys.argv[1], exist_ok=True)
go = Path(sys.argv[3])
run = Experiment(ws, "widgets").submit(
    ScriptRunConfig(sys.argv[2], "train.py", arguments=[str(go)]))

def wait(pred, what):
    deadline = time.monotonic() + 120
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)

wait(lambda: "epoch one done" in run._log_tail(), "the first log line")
wait(lambda: run.get_metrics().get("loss") == 0.5, "the first metric")
"""

TEXT_MODE = (
    OBSERVE
    + """
t0 = time.monotonic()
RunDetails(run).show()
print("SHOWN_IN", time.monotonic() - t0, flush=True)
go.write_text("")
run.wait_for_completion(raise_on_error=True)
print("=== final", flush=True)
RunDetails(run).show()
data = RunDetails(run).get_widget_data()
print("DATA " + json.dumps(data))
"""
)


@pytest.fixture
def ws_and_source(tmp_path):
    with workspace_and_source(tmp_path, TRAIN) as paths:
        yield paths


@pytest.mark.slow
def test_text_mode_prints_the_summary_and_returns_at_once(ws_and_source, tmp_path):
    ws, src = ws_and_source
    proc = run_code(TEXT_MODE, ws, src, tmp_path / "go", cwd=tmp_path, timeout_s=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mid, final = proc.stdout.split("=== final\n")
    assert "): Running" in mid
    assert "loss  0.5" in mid
    assert "epoch one done" in mid
    assert "epoch two done" not in mid
    shown_in = float(next(x for x in mid.splitlines() if x.startswith("SHOWN_IN")).split()[1])
    assert shown_in < 2.0  # show() never waits for the run
    assert "): Completed" in final
    assert "loss  0.25 (last of 2)" in final
    assert "acc   0.9" in final
    assert "epoch two done" in final
    data = json.loads(next(x for x in final.splitlines() if x.startswith("DATA "))[5:])
    assert data["status"] == "Completed"
    assert data["experimentName"] == "widgets"
    assert data["metrics"] == {"loss": [0.5, 0.25], "acc": 0.9}
    assert data["logLines"][-1] == "epoch two done"
    assert {"runId", "startTimeUtc", "endTimeUtc"} <= set(data)


WIDGET_MODE = (
    OBSERVE
    + """
import threading
import runner.widgets
runner.widgets.REFRESH_S = 0.1
details = RunDetails(run)
widget = details.widget()
assert details.widget() is widget
status, metrics, logs = widget.children
seen = []  # every distinct content the widget showed, in order
def values():
    return (status.value, metrics.value, logs.value)
def record():
    if not seen or seen[-1] != values():
        seen.append(values())
record()
mid = values()
go.write_text("")
run.wait_for_completion(raise_on_error=True)
deadline = time.monotonic() + 30
while details.refreshing and time.monotonic() < deadline:
    record()
    time.sleep(0.02)
record()
threads = [t.name for t in threading.enumerate() if t.name.startswith("RunDetails")]
print("RESULT " + json.dumps({"mid": mid, "final": values(), "refreshing": details.refreshing,
                              "threads": threads, "distinct": len(seen)}))
"""
)


@pytest.mark.slow
def test_widget_refreshes_as_the_run_progresses_and_its_thread_stops(ws_and_source, tmp_path):
    if os.environ.get("CI") != "true":
        pytest.importorskip("ipywidgets", reason="pip install ipywidgets (or the [test] extra)")
    ws, src = ws_and_source
    proc = run_code(WIDGET_MODE, ws, src, tmp_path / "go", cwd=tmp_path, timeout_s=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    mid_status, mid_metrics, mid_logs = out["mid"]
    status, metrics, logs = out["final"]
    assert ">Running<" in mid_status
    assert "<td>loss</td><td>0.5</td>" in mid_metrics
    assert "acc" not in mid_metrics
    assert "epoch one done" in mid_logs
    assert "epoch two done" not in mid_logs
    assert ">Completed<" in status
    assert "<td>loss</td><td>0.25 (last of 2)</td>" in metrics
    assert "<td>acc</td><td>0.9</td>" in metrics
    assert "epoch two done" in logs
    assert out["distinct"] >= 2
    assert out["refreshing"] is False
    assert out["threads"] == []


def test_show_outside_a_notebook_never_needs_ipywidgets(tmp_path):
    """Without site-packages (no ipywidgets, no IPython): text mode; widget() names the fix."""
    proc = run_without_site_packages(
        """
        from runner import Run
        from runner.errors import ConfigError
        from runner.widgets import RunDetails
        run = Run.get_context()  # an offline run
        run.log("m", 3)
        RunDetails(run).show()
        try:
            RunDetails(run).widget()
        except ConfigError as exc:
            print("ERROR", exc)
        try:
            RunDetails("run-id")
        except ConfigError as exc:
            print("ERROR", exc)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Metrics:\n  m  3" in proc.stdout
    errors = [x for x in proc.stdout.splitlines() if x.startswith("ERROR")]
    assert "pip install ipywidgets" in errors[0]
    assert "No module named 'ipywidgets'" in errors[0]
    assert "RunDetails takes a Run, got str" in errors[1]
