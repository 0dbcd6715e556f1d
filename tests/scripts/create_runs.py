"""At a signal, open the default workspace (zero config) and create N runs in it.

usage: create_runs.py EXPERIMENT N READY_FILE GO_FILE OUT_JSON
"""

import sys
from pathlib import Path

from history_common import wait_for_file, write_json

from runner import Experiment, Workspace

exp_name, n, ready, go, out = sys.argv[1:]
Path(ready).touch()
wait_for_file(go)
ws = Workspace.from_config()
exp = Experiment(ws, exp_name)
made = []
for _ in range(int(n)):
    run = exp.start_logging()
    run.log("pid_marker", 1)
    run.complete()
    made.append({"id": run.id, "number": run.number})
write_json(out, {"workspace": str(ws.path), "runs": made})
