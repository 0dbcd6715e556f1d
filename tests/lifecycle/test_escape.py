"""Processes that try to escape their run: a double fork into a new session with an
empty environment, orphaned. No process of a run outlives it, whether the run is
canceled or completes, with cgroup v2 containment and with the subreaper fallback.

Contract (properties are read from a fresh process): a run records how it was contained
as the property ``runner.containment``: ``"cgroup"`` where cgroup v2 is usable (root, a
cgroup2 hierarchy with ``cgroup.kill``), ``"subreaper"`` when the submitting process's
environment (inherited by the daemon it starts and by every run) has
``RUNNER_CGROUPS=off``.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests.helpers import require_cgroups, wait_until
from tests.lifecycle.conftest import Lifecycle, alive

CONTAINMENTS = {"cgroup": {}, "subreaper": {"RUNNER_CGROUPS": "off"}}


@pytest.mark.parametrize("containment", sorted(CONTAINMENTS))
@pytest.mark.parametrize("ending", ["canceled", "completed"])
def test_escaped_grandchild_dies_with_its_run(lc: Lifecycle, containment: str, ending: str) -> None:
    """The script double-forks a ``setsid`` grandchild with an empty environment, then
    blocks (canceled from another process with `runner run cancel`) or exits 0: once the
    run is Canceled / Completed, the escaped process is dead, and the run's properties
    say how it was contained."""
    if containment == "cgroup":
        require_cgroups()
    env = CONTAINMENTS[containment]
    src = lc.source("lc_escape_train.py")
    pidfile = lc.tmp / "escapee.pid"
    mode = "block" if ending == "canceled" else "exit"
    (run_id,) = lc.submit(
        src, "lc_escape_train.py", pidfile, mode, experiment="escape", grace_s=2, env=env
    )
    try:
        wait_until(pidfile.exists, 30, message="the escaped grandchild's pid file")
    except AssertionError:
        raise AssertionError(
            f"the script never wrote {pidfile.name}; ledger {lc.ledger_lines()}\n{lc.daemon_log()}"
        ) from None
    pid_text, ticks = pidfile.read_text().split()
    pid = int(pid_text)
    try:
        if ending == "canceled":
            lc.cli_json("run", "cancel", "-r", run_id, env=env)
        seen = lc.read(run_id, wait_s=20, env=env)[run_id]
        assert seen["status"] == ending.capitalize(), (
            f"the run is {seen['status']} (timed out: {seen['timedOut']})\n{lc.daemon_log()}"
        )
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not alive(pid, ticks), 2)
        assert not alive(pid, ticks), (
            f"escaped pid {pid} is alive after the run ended {seen['status']}"
        )
        shown = lc.cli_json("run", "show", "-r", run_id, env=env)
        assert shown["properties"].get("runner.containment") == containment, shown["properties"]
        lc.assert_each_executed_once([run_id])
    finally:
        if alive(pid, ticks):  # do not leave a `sleep 600` behind a failed check
            os.kill(pid, signal.SIGKILL)
