"""Log N values into a run of its own and into a child of a shared parent, at a signal.

usage: log_values.py WORKSPACE EXPERIMENT PARENT_ID N INDEX READY_FILE GO_FILE OUT_JSON

Also logs INDEX * N + i into the shared parent's metric "all", from every process.
"""

import sys

from history_common import wait_for_file, write_json

from runner import Experiment, Run, Workspace

ws_path, exp_name, parent_id, n, index, ready, go, out = sys.argv[1:]
n, index = int(n), int(index)
ws = Workspace(ws_path)
exp = Experiment(ws, exp_name)
own = exp.start_logging()
shared = Run.get(ws, parent_id)
child = shared.child_run()
write_json(ready, {"own": own.id, "child": child.id})
wait_for_file(go)
for i in range(n):
    own.log("v", i)
    child.log("v", i * 0.5, step=i)
    shared.log("all", index * n + i)
    if i % 1000 == 0:
        own.log_row("progress", i=i, done=i / n)
own.complete()
child.complete()
shared.flush()
write_json(out, {"own": own.id, "child": child.id})
