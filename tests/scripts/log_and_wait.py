"""Log N values, say so, and stay alive (no flush) until told to stop.

usage: log_and_wait.py WORKSPACE EXPERIMENT N LOGGED_JSON STOP_FILE
"""

import sys
import time

from history_common import wait_for_file, write_json

from runner import Experiment, Workspace

ws_path, exp_name, n, logged, stop = sys.argv[1:]
run = Experiment(Workspace(ws_path), exp_name).start_logging()
for i in range(int(n)):
    run.log("v", i)
run.tag("phase", "logged")
write_json(logged, {"id": run.id, "n": int(n), "time": time.time()})
wait_for_file(stop)
run.complete()
