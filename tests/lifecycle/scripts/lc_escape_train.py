"""A training script whose grandchild escapes: new session, empty environment, orphaned.

    lc_escape_train.py PIDFILE block|exit

The script forks an intermediate, which forks the escapee and exits; the escapee calls
``setsid()`` and execs ``sleep 600`` with an empty environment (so neither the run's
session, nor its process tree, nor ``RUNNER_RUN_ID`` leads to it). The intermediate
writes ``'<pid> <start ticks>'`` of the escapee to PIDFILE (atomically) before it exits.
Then the script blocks until it is killed (``block``) or exits 0 at once (``exit``).
"""

import os
import shutil
import sys
import time

import lc_common


def main():
    pidfile, mode = sys.argv[1], sys.argv[2]
    lc_common.ledger()
    lc_common.record_pid("escape-train")
    sleep = shutil.which("sleep") or "/bin/sleep"
    intermediate = os.fork()
    if intermediate == 0:
        try:
            escapee = os.fork()
            if escapee == 0:
                os.setsid()
                os.execve(sleep, ["sleep", "600"], {})  # noqa: S606 - an empty environment on purpose
            # Recorded first, so the test's teardown kills it whatever happens.
            lc_common.record_pid("escapee", escapee)
            ticks = lc_common.start_ticks(escapee)
            lc_common.write_text(pidfile, f"{escapee} {ticks}\n")
        finally:
            os._exit(0)
    os.waitpid(intermediate, 0)
    with open(pidfile) as f:
        print(f"escaped: {f.read().strip()}", flush=True)
    if mode == "block":
        deadline = time.monotonic() + lc_common.WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.1)
        sys.exit(3)


if __name__ == "__main__":
    main()
