"""Inside a submitted run: log, cancel this very run, then wait to be terminated."""

import time

from sr_common import record_pid

from runner import Run

record_pid("self-cancel")
run = Run.get_context(allow_offline=False)
run.log("before_cancel", 1)
run.cancel()
while True:
    time.sleep(0.02)
