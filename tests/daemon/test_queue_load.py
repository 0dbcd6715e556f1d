"""1,000 queued trivial runs through the daemon: every one completes, exactly once.

Each run creates ``MARKERS/<run id>`` exclusively (gb_once.py), so a run executed twice
fails; a run lost would leave no file and never reach Completed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from runner import daemon_client
from tests.daemon.conftest import Box, configure, daemon_log, daemon_status
from tests.helpers import wait_until

RUNS = 1000


@pytest.mark.slow
def test_a_thousand_queued_runs_all_complete_exactly_once(box: Box, tmp_path: Path) -> None:
    configure(box.ws, max_concurrent=4, system_metrics_s=0)
    daemon_client.ensure_daemon(box.ws.path)
    cfg = box.config("gb_once.py")
    t0 = time.monotonic()
    runs = [box.exp.submit(cfg) for _ in range(RUNS)]
    submitted_s = time.monotonic() - t0
    # The daemon keeps at most four running; the rest wait in the queue.
    status = daemon_status(box.ws.path)
    assert len(status["slots"]) <= 4

    store = box.ws._store
    marks = ",".join("?" * len(runs))

    def all_done() -> bool:
        ((done,),) = store.query(
            f"SELECT COUNT(*) FROM runs WHERE status IN ('Completed', 'Failed', 'Canceled') "  # noqa: S608
            f"AND id IN ({marks})",
            [r.id for r in runs],
        )
        return bool(done == RUNS)

    wait_until(
        all_done, 240, interval_s=0.2, message="1,000 runs to end\n" + daemon_log(box.ws.path)
    )
    total_s = time.monotonic() - t0

    statuses = Counter(
        status
        for (status,) in store.query(
            "SELECT status FROM runs WHERE experiment_id = ?", (box.exp._id,)
        )
    )
    assert statuses == {"Completed": RUNS}, statuses
    ran = sorted(os.listdir(box.markers))
    assert ran == sorted(r.id for r in runs), "a run was lost, or something else ran"
    numbers = sorted(r.number for r in runs)
    assert numbers == list(range(1, RUNS + 1))
    assert daemon_status(box.ws.path)["queue"] == []
    print(f"\n{RUNS} runs: submitted in {submitted_s:.1f} s, all ended after {total_s:.1f} s")
