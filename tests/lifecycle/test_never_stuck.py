"""A submitted run is never left waiting for a daemon that will not come.

Runs submitted while the only daemon was stopped (SIGSTOP) are in the database, claimed
by no daemon. When that daemon is killed and no new one can start, the next process that
looks at the runs records them Failed with the reason, instead of leaving them Starting.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

from tests.lifecycle.conftest import Lifecycle


def test_runs_no_daemon_can_take_end_failed_with_the_reason(lc: Lifecycle) -> None:
    lc.cli_json("daemon", "start")
    pid = lc.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        src = lc.source("lc_train.py")
        proc = lc.py("lc_submit.py", "-e", "stuck", "-s", src, "lc_train.py", timeout_s=45)
        (run_id,) = (r["id"] for r in json.loads(proc.stdout.splitlines()[-1])["runs"])
    finally:
        lc.kill_daemon()
    # No daemon can start any more: its folder is a file now.
    shutil.rmtree(lc.ws / "daemon")
    (lc.ws / "daemon").write_text("not a folder\n")

    seen = lc.read(run_id)[run_id]
    assert seen["status"] == "Failed", seen
    message = seen["error"]["error"]["message"]
    assert "no runner daemon could be started" in message, message
    assert lc.ledger_lines() == [], "the run must not have started"
    (lc.ws / "daemon").unlink()  # so that teardown finds a normal workspace
