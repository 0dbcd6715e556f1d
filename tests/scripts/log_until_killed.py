"""Log forever; after each flush() say how many values are durable (for a SIGKILL test).

usage: log_until_killed.py WORKSPACE EXPERIMENT STATE_JSON
"""

import sys

from history_common import write_json

from runner import Experiment, Workspace

ws_path, exp_name, state = sys.argv[1:]
run = Experiment(Workspace(ws_path), exp_name).start_logging()
i = 0
while True:
    for _ in range(5000):
        run.log("v", i)
        i += 1
    run.flush()
    write_json(state, {"id": run.id, "flushed": i})
