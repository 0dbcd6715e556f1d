"""Submitting processes that exit at once: the runs live on, execute once, and end.

Each submit is its own short process that never waits; every read is a fresh process.
"""

from __future__ import annotations

import json

from tests.lifecycle.conftest import Lifecycle


def test_three_submits_that_exit_then_a_fresh_reader(lc: Lifecycle) -> None:
    """Three processes each submit one run and exit. A fourth process waits for all three
    (within a deadline): Completed, with the metric each script logged; the ledger shows
    each run executed exactly once; `runner run list` agrees."""
    src = lc.source("lc_train.py")
    ids = []
    for value in (1, 2, 3):
        ids += lc.submit(src, "lc_train.py", "--value", value, experiment="exit3")

    seen = lc.wait_completed(*ids)
    assert [seen[i]["metrics"].get("value") for i in ids] == [1, 2, 3], seen
    lc.assert_each_executed_once(ids)

    listed = lc.statuses("exit3")
    assert listed == dict.fromkeys(ids, "Completed"), listed


def test_fifty_submits_from_five_concurrent_processes(lc: Lifecycle) -> None:
    """Five processes at once submit ten runs each and exit: all fifty end Completed and
    the ledger names fifty distinct runs, each once."""
    src = lc.source("lc_train.py")
    argv = ["-e", "many", "-s", src, "--count", 10, "lc_train.py"]
    procs = [lc.start("lc_submit.py", *argv) for _ in range(5)]
    ids: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"a submitter exited {proc.returncode}:\n{out}\n{err}"
        ids += [r["id"] for r in json.loads(out.splitlines()[-1])["runs"]]
    assert len(set(ids)) == 50, ids

    lc.wait_completed(*ids, wait_s=45)
    lc.assert_each_executed_once(ids)
