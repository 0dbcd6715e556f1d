"""A run's working folder is kept for the next run (runner.service.workcopy): made by a rename,
never linked to the blob store, and put back in line with the snapshot after a run that
changed it every way a script can (as root, as these tests run in CI). Each step is its
own process: submit and exit, then read from another.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.lifecycle.conftest import Lifecycle

CHECK = """
import json, sys
from runner import Run, Workspace
from runner.snapshot import load_snapshot
ws = Workspace(sys.argv[1])
out = {}
for run_id in sys.argv[2:]:
    run = Run.get(ws, run_id)
    snap = load_snapshot(ws._blobs, run.get_snapshot_id())
    bad = [e.path for e in snap.entries if ws._blobs.digest_of_stored(e.digest) != e.digest]
    run.download_file("outputs/hashes.json", sys.argv[1] + f"/../{run_id}.json")
    run.download_file("azureml-logs/55_environment_prep_log.txt", sys.argv[1] + f"/../{run_id}.log")
    prep = open(sys.argv[1] + f"/../{run_id}.log").read()
    out[run_id] = {
        "damaged": bad,
        "hashes": json.load(open(sys.argv[1] + f"/../{run_id}.json")),
        "how": [l.split(": ")[1].split(" ")[0] for l in prep.splitlines() if l.startswith("working folder")],
    }
print(json.dumps(out))
"""


def _project(lc: Lifecycle) -> Path:
    src = lc.source("lc_workcopy.py")
    (src / "config.txt").write_text("learning_rate = 0.01\n")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(os.urandom(3 << 20))
    (src / "data" / "small.bin").write_bytes(os.urandom(3000))
    (src / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (src / "tool.sh").chmod(0o755)
    (src / "pkg").mkdir()
    for name in ("mod.py", "gone.py", "linked.py"):
        (src / "pkg" / name).write_text(f"# {name}\n")
    return src


def _expected(src: Path) -> dict[str, list[Any]]:
    return {
        str(p.relative_to(src)): [
            hashlib.sha256(p.read_bytes()).hexdigest(),
            bool(p.stat().st_mode & 0o100),
        ]
        for p in src.rglob("*")
        if p.is_file()
    }


def _check(lc: Lifecycle, *ids: str) -> dict[str, Any]:
    proc = lc.run([sys.executable, "-c", CHECK, str(lc.ws), *ids])
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_a_vandal_run_changes_nothing_outside_its_own_folder(lc: Lifecycle) -> None:
    src = _project(lc)
    expected = _expected(src)
    outside = lc.tmp / "outside"
    outside.mkdir()
    (first,) = lc.submit(src, "lc_workcopy.py", "vandal", outside, experiment="wc")
    lc.wait_completed(first)
    (outside / "linked.py").write_text("written through a link the run made\n")
    (second,) = lc.submit(src, "lc_workcopy.py", "hashes", experiment="wc")
    lc.wait_completed(second)
    (third,) = lc.submit(src, "lc_workcopy.py", "hashes", experiment="wc")
    lc.wait_completed(third)
    seen = _check(lc, first, second, third)
    for run_id in (first, second, third):
        assert seen[run_id]["damaged"] == [], "a blob of the snapshot changed"
        assert seen[run_id]["hashes"] == expected, run_id
    assert [seen[r]["how"] for r in (first, second, third)] == [["copied"], ["kept"], ["kept"]]
    kept = [p for p in (lc.ws / "work").iterdir() if p.is_dir()]
    assert len(kept) == 1
    assert (kept[0] / "pkg" / "mod.py").read_text() == "# mod.py\n"
    assert not (kept[0] / "outputs").exists()  # the run's outputs are stored, not kept


def test_an_edited_project_adapts_the_kept_folder(lc: Lifecycle) -> None:
    src = _project(lc)
    ids = []
    for version in range(5):
        (src / "config.txt").write_text(f"learning_rate = 0.0{version}\n")
        (src / f"added_{version}.py").write_text("x = 1\n")
        (run_id,) = lc.submit(src, "lc_workcopy.py", "hashes", experiment="wc")
        lc.wait_completed(run_id)
        ids.append(run_id)
        assert _check(lc, run_id)[run_id]["hashes"] == _expected(src)
    hows = [_check(lc, r)[r]["how"] for r in ids]
    assert hows == [["copied"]] + [["adapted"]] * 4
    kept = sorted(p.name for p in (lc.ws / "work").iterdir() if p.is_dir())
    assert len(kept) == 1  # each run took the last one: nothing piles up
