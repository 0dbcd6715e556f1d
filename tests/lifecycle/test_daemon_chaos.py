"""The daemon stopped, started and killed (-9) between and during submits.

Runs live in their own sessions and outlive their daemon; the next daemon re-adopts
what still runs, keeps the queue, and starts what waits. Whatever happens to daemons,
every run ends, and the ledger proves each executed exactly once.
"""

from __future__ import annotations

from tests.lifecycle.conftest import Lifecycle

EXP = "chaos"


def test_stop_start_and_kill_between_and_during_submits(lc: Lifecycle) -> None:
    """submit; daemon stop; submit; daemon start --max-concurrent 1; a held run C and two
    queued runs D, E; kill -9 while C runs and D, E wait; submit F (a new daemon starts
    on demand, re-adopts C, keeps D, E, F queued); release C; kill -9 again while D runs;
    `runner daemon start`; release the rest: all six Completed, each executed once."""
    src = lc.source("lc_train.py")
    hold = ["--hold", lc.markers]

    (a,) = lc.submit(src, "lc_train.py", experiment=EXP)
    lc.cli("daemon", "stop")
    (b,) = lc.submit(src, "lc_train.py", experiment=EXP)
    lc.cli_json("daemon", "start", "--max-concurrent", 1)

    (c,) = lc.submit(src, "lc_train.py", *hold, experiment=EXP)
    lc.wait_started(c)
    d, e = lc.submit(src, "lc_train.py", *hold, experiment=EXP, count=2)
    lc.wait_statuses(EXP, {c: "Running", d: "Queued", e: "Queued"})

    first = lc.kill_daemon()  # C running, D and E queued
    (f,) = lc.submit(src, "lc_train.py", experiment=EXP)
    assert lc.daemon_pid() not in (None, first), "the submit started no new daemon"
    lc.wait_statuses(EXP, {c: "Running", d: "Queued", e: "Queued", f: "Queued"})
    assert not lc.marker(f"{d}.started").exists(), "D started while C held the only slot"

    lc.release(c)
    lc.wait_started(d)
    lc.kill_daemon()  # D running, E and F queued
    lc.cli_json("daemon", "start", "--max-concurrent", 1)
    lc.release(d, e)

    ids = [a, b, c, d, e, f]
    lc.wait_completed(*ids, wait_s=30)
    lc.assert_each_executed_once(ids)
    order = lc.ledger_lines()
    assert order.index(c) < order.index(d) < order.index(e) < order.index(f), order
