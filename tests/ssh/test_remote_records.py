"""What a script on an SSH host records beyond metrics reaches this workspace (issue 18):
models (numbered here), snapshots, uploads and submitted children, through the journal.

Real sshd, real remote processes; the runs are submitted by one short process and the
outcome read by another, as a user would.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import pytest

from runner import Run, Workspace
from tests.helpers import run_code, wait_until
from tests.ssh.conftest import SshHost
from tests.ssh.test_remote_runs import REMOTE_RUNS, TERMINAL, attach

pytestmark = pytest.mark.ssh

TRAIN = """
import os, sys
from runner import Model, Run, ScriptRunConfig
run = Run.get_context()
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.pkl", "w") as f:
    f.write("weights of " + sys.argv[1])
run.upload_file("outputs/model.pkl", "outputs/model.pkl")
model = run.register_model("mnist", "outputs/model.pkl", tags={"from": sys.argv[1]})
print("registered", model.id, flush=True)
if sys.argv[1] == "first":
    os.makedirs("extra/deep", exist_ok=True)
    open("extra/deep/a.txt", "w").write("a")
    open("extra/b.txt", "w").write("b")
    run.upload_folder("up", "extra")
    plain = Model.register(run.experiment.workspace, "extra/b.txt", "plain")
    print("registered", plain.id, flush=True)
    os.makedirs("code", exist_ok=True)
    open("code/train_more.py", "w").write("print('more')\\n")
    print("snapshot", run.take_snapshot("code"), flush=True)
    child = run.submit_child(
        ScriptRunConfig(".", "child.py", arguments=["7"]), tags={"kind": "child"}
    )
    print("child", child.id, child.get_status(), flush=True)
    try:
        child.wait_for_completion()
    except Exception as exc:
        print("wait:", type(exc).__name__, exc, flush=True)
"""

CHILD = """
import sys
from runner import Run
run = Run.get_context()
run.log("arg", int(sys.argv[1]))
run.upload_file("child_note.txt", __file__)
"""

#: The submitting process: two runs on the host, one after the other; prints their ids.
SUBMIT = """
import sys
from runner import Experiment, ScriptRunConfig, Workspace
ws = Workspace(sys.argv[1])
exp = Experiment(ws, "remote")
ids = []
for which in ("first", "second"):
    run = exp.submit(ScriptRunConfig(sys.argv[2], "train.py", arguments=[which],
                                     compute_target="box"))
    run.wait_for_completion(raise_on_error=False)
    ids.append(run.id)
print(" ".join(ids))
"""

#: Another process reads what arrived in this workspace.
CHECK = """
import json, sys
from pathlib import Path
from runner import Model, Run, Workspace
ws = Workspace(sys.argv[1])
out = Path(sys.argv[2])
first, second = Run.get(ws, sys.argv[3]), Run.get(ws, sys.argv[4])
m1, m2 = Model(ws, "mnist", version=1), Model(ws, "mnist", version=2)
found = {
    "statuses": [first.get_status(), second.get_status()],
    "models": [[m.id, m.run_id, m.tags] for m in (m1, m2)],
    "latest": Model(ws, "mnist").version,
    "downloaded": Path(m1.download(out / "m1")).read_text(),
    "plain": Path(Model(ws, "plain").download(out / "plain")).read_text(),
    "plain_run": Model(ws, "plain").run_id,
    "files": sorted(first.get_file_names()),
    "snapshot": first.get_snapshot_id(),
    "zip": first.restore_snapshot(path=str(out / "snap")),
    "children": [
        [c.id, c.type, c.get_status(), c.get_tags(), c.get_metrics(), c.get_details()["target"],
         sorted(c.get_file_names())]
        for c in first.get_children()
    ],
}
print(json.dumps(found))
"""


def test_a_remote_script_registers_snapshots_uploads_and_submits_here(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(textwrap.dedent(TRAIN))
    (src / "child.py").write_text(textwrap.dedent(CHILD))
    proc = run_code(SUBMIT, ws.path, src, timeout_s=180)
    assert proc.returncode == 0, proc.stderr
    first_id, second_id = proc.stdout.split()
    first = Run.get(ws, first_id)
    log = first.get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"]
    # On the host the script's own registry numbers each run's model 1; here they are 1, 2.
    assert "registered mnist:1" in log
    child_id = f"{first_id}_0"
    assert f"child {child_id} Starting" in log
    assert "wait: UserError" in log
    assert "runs in the workspace that submitted" in log
    children = list(first.get_children())
    assert [c.id for c in children] == [child_id]
    wait_until(lambda: children[0].get_status() in TERMINAL, 90, 0.2, "the child to end")

    check = run_code(CHECK, ws.path, tmp_path / "out", first_id, second_id, timeout_s=60)
    assert check.returncode == 0, check.stderr
    found = json.loads(check.stdout)
    assert found["statuses"] == ["Completed", "Completed"]
    assert found["models"] == [
        ["mnist:1", first_id, {"from": "first"}],
        ["mnist:2", second_id, {"from": "second"}],
    ]
    assert found["latest"] == 2
    assert found["downloaded"] == "weights of first"
    assert found["plain"] == "b"
    assert found["plain_run"] is None
    assert {"outputs/model.pkl", "up/b.txt", "up/deep/a.txt"} <= set(found["files"])
    assert found["snapshot"] is not None
    with zipfile.ZipFile(found["zip"]) as z:
        assert z.read("train_more.py") == b"print('more')\n"
    ((cid, ctype, cstatus, ctags, cmetrics, ctarget, cfiles),) = found["children"]
    assert (cid, ctype, cstatus) == (child_id, "azureml.scriptrun", "Completed")
    assert ctags == {"kind": "child"}
    assert cmetrics == {"arg": 7}  # it ran once
    assert ctarget == "box"  # no target given: the parent's
    assert "child_note.txt" in cfiles
    # It ran as a run of its own on the host, launched from here (and cleaned up after).
    assert not (REMOTE_RUNS / child_id).exists()
