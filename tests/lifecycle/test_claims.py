"""Two daemons racing for one workspace cannot both start a run.

The daemon lock keeps a second daemon from serving a workspace; underneath it, every run
is claimed by compare-and-set and its launch recorded once (runner.lifecycle). Two
processes that both play daemon on the same 300 waiting runs at the same moment: each run
may be launched by exactly one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.lifecycle.conftest import Lifecycle


def test_two_claimants_never_launch_the_same_run(lc: Lifecycle) -> None:
    ids = json.loads(lc.py("lc_claim_race.py", "setup", 300).stdout)
    go = lc.tmp / "go"
    racers = [lc.start("lc_claim_race.py", "race", name, go) for name in ("d1", "d2")]
    go.touch()
    won = []
    for proc in racers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        won.append(set(json.loads(out.splitlines()[-1])))
    assert not won[0] & won[1], f"launched by both: {sorted(won[0] & won[1])[:5]}"
    assert won[0] | won[1] == set(ids)


def test_a_daemon_starting_while_a_client_probes_its_lock_still_serves(lc: Lifecycle) -> None:
    """A client asks whether a daemon holds the workspace lock by taking it for an instant
    (daemon_client._lock_held). A daemon starting at that instant used to give up without
    a word, and its starter waited 30 s for nothing (seen once in CI)."""
    lc.py("lc_create.py", lc.ws)
    lock = lc.ws / "daemon" / "daemon.lock"
    lock.parent.mkdir(exist_ok=True)
    probe = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(0.3)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", probe, str(lock)], stdout=subprocess.PIPE, text=True
    )
    lc.background.append(holder)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    lc.run([sys.executable, "-m", "runner.service.daemon", "run", str(lc.ws), "--detach"])
    assert holder.wait(timeout=10) == 0
    status: dict[str, object] = {}
    for _ in range(100):
        status = lc.cli_json("daemon", "status")
        if status["running"]:
            break
        time.sleep(0.05)
    assert status["running"] is True, (status, lc.daemon_log())
