"""Interactive runs (``exp.start_logging()``) whose process dies, or lives on quietly.

A run is never left in an active status for ever: when the process that owns an
interactive run is killed, any other process sees it Failed, saying which pid died. A
live but quiet owner keeps it Running.
"""

from __future__ import annotations

import json

from tests.helpers import wait_until
from tests.lifecycle.conftest import Lifecycle

#: Heartbeats every 0.2 s (for every process: the owner and the readers), so that a few
#: intervals pass quickly.
FAST = {"RUNNER_HEARTBEAT_S": "0.2"}


def start_interactive(lc: Lifecycle, *args: object) -> tuple[object, str, int]:
    """Start scripts/lc_interactive.py; (its Popen, the run id, its pid) once it runs."""
    info = lc.tmp / "interactive.json"
    proc = lc.start("lc_interactive.py", "-e", "i", "--info", info, *args, env=FAST)
    try:
        wait_until(info.exists, 30, message="the interactive run to start")
    except AssertionError:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"lc_interactive.py did not start:\n{out}\n{err}") from None
    data = json.loads(info.read_text())
    return proc, data["id"], data["pid"]


def test_killed_interactive_run_ends_failed_naming_the_pid(lc: Lifecycle) -> None:
    """SIGKILL the process of an interactive run: a fresh process sees the run Failed
    (within a few seconds), and the error message names the pid that died; what was
    logged and flushed before is kept."""
    proc, run_id, pid = start_interactive(lc)
    proc.kill()
    proc.communicate(timeout=10)

    seen = lc.read(run_id, wait_s=10, env=FAST)[run_id]
    assert seen["status"] == "Failed", (
        f"the run of killed pid {pid} is {seen['status']} (timed out: {seen['timedOut']})"
    )
    message = ((seen["error"] or {}).get("error") or {}).get("message", "")
    assert f"pid {pid}" in message, seen["error"]
    assert seen["metrics"] == {"m": 1}, seen["metrics"]


def test_quiet_interactive_run_stays_running_then_completes(lc: Lifecycle) -> None:
    """A live owner that only sleeps: another process sees the run Running, and still
    Running after several heartbeat intervals; once the owner completes it, Completed."""
    release = lc.marker("interactive.release")
    proc, run_id, _ = start_interactive(lc, "--release", release)

    seen = lc.read(run_id, watch_s=1.5, env=FAST)[run_id]
    assert seen["watched"] == ["Running"], seen["watched"]

    release.touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"lc_interactive.py exited {proc.returncode}:\n{out}\n{err}"
    assert lc.read(run_id, env=FAST)[run_id]["status"] == "Completed"
