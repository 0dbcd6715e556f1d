"""The queue keeps its promise: with one slot, runs start in the order they were
submitted, also across a daemon that stopped answering and was replaced."""

from __future__ import annotations

import json
import os
import signal

from tests.lifecycle.conftest import Lifecycle


def test_one_slot_runs_start_in_submit_order(lc: Lifecycle) -> None:
    """Three trials, each a fresh workspace and daemon (`runner daemon start
    --max-concurrent 1`): one process submits runs 1, 2, 3 back to back and exits; the
    ledger says they started 1, 2, 3, each once."""
    for trial in range(3):
        ws = lc.for_workspace(f"ws-trial{trial}")
        ws.cli_json("daemon", "start", "--max-concurrent", 1)
        src = ws.source("lc_train.py")
        ids = ws.submit(src, "lc_train.py", experiment="order", count=3)
        ws.wait_completed(*ids)
        assert ws.ledger_lines() == ids, f"trial {trial}: submitted {ids}, started in order"
        ws.assert_each_executed_once(ids)
        ws.cli("daemon", "stop")


def test_submits_to_a_stopped_daemon_start_in_order_under_the_next(lc: Lifecycle) -> None:
    """`runner daemon start --max-concurrent 1`, SIGSTOP the daemon, submit runs 1, 2, 3
    (submit returns although the daemon does not answer: the runs wait in the database),
    SIGKILL the stopped daemon, `runner daemon start --max-concurrent 1` again: the runs
    start in the order 1, 2, 3, each once, and end Completed."""
    lc.cli_json("daemon", "start", "--max-concurrent", 1)
    pid = lc.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        src = lc.source("lc_train.py")
        proc = lc.py(
            "lc_submit.py", "-e", "order", "-s", src, "--count", 3, "lc_train.py", timeout_s=45
        )
        submitted = json.loads(proc.stdout.splitlines()[-1])
        ids = [r["id"] for r in submitted["runs"]]
        assert all(s < 12 for s in submitted["seconds"]), (
            f"seconds each submit took with the daemon stopped: {submitted['seconds']}"
        )
        assert lc.ledger_lines() == [], "a run started while the only daemon was stopped"
    finally:
        lc.kill_daemon()  # SIGKILL ends a stopped process too
    lc.cli_json("daemon", "start", "--max-concurrent", 1)
    lc.wait_completed(*ids)
    assert lc.ledger_lines() == ids, f"submitted {ids}"
    lc.assert_each_executed_once(ids)
