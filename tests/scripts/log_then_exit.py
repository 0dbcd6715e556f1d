"""Log values and leave without flush() or complete(): interpreter exit must flush.

usage: log_then_exit.py WORKSPACE EXPERIMENT N OUT_JSON [raise]

With "raise" the script ends with an unhandled exception instead of falling off the end.
"""

import sys

from history_common import write_json

from runner import Experiment, Workspace

ws_path, exp_name, n, out = sys.argv[1:5]
run = Experiment(Workspace(ws_path), exp_name).start_logging()
write_json(out, {"id": run.id})
for i in range(int(n)):
    run.log("v", i)
run.log("steps", 1.5, step=10)
run.log_row("row", a=1, b="x")
run.log_list("l", [True, False])
run.tag("left", "without flush")
if sys.argv[5:] == ["raise"]:
    raise RuntimeError("the script crashed after logging")
