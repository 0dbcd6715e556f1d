"""Inside a run: log N values through get_context(), say so, then wait to be terminated.

usage: log_until_term.py N LOGGED_FILE   (RUNNER_RUN_ID and RUNNER_WORKSPACE set)
"""

import sys
import time
from pathlib import Path

from runner import Run

n, logged = int(sys.argv[1]), Path(sys.argv[2])
run = Run.get_context(allow_offline=False)
for i in range(n):
    run.log("v", i)
logged.touch()
while True:  # canceled runs get SIGTERM; what was logged must survive it
    time.sleep(0.05)
