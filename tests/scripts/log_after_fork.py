"""Log into a run from a forked child through Run objects made before the fork.

usage: log_after_fork.py WORKSPACE EXPERIMENT OUT_JSON

The parent logs, forks, and waits; the child logs more values (also of a metric with
steps and a new metric), calls flush() and leaves with os._exit as multiprocessing's
forked workers do (no atexit handlers). A second child logs only values of an
existing metric and ends normally, relying on the interpreter-exit flush.
"""

import os
import sys

from history_common import write_json

from runner import Experiment, Workspace

ws_path, exp_name, out = sys.argv[1:]
run = Experiment(Workspace(ws_path), exp_name).start_logging()
run.log("v", 0)
run.log("s", 0.0, step=0)
run.log("pending_in_parent", 1)  # not flushed before the fork: the parent writes it
pid = os.fork()
if pid == 0:
    code = 0
    try:
        for i in range(1, 1001):
            run.log("v", i)
            run.log("s", float(i), step=i)
        run.log_row("child_row", i=1)
        run.log("child_only", 7)
        run.flush()
    except BaseException as exc:
        sys.stderr.write(f"child failed: {exc!r}\n")
        code = 1
    os._exit(code)
_, status = os.waitpid(pid, 0)
second = os.fork()
if second == 0:  # a plain fork that ends normally: interpreter exit flushes
    for i in range(100):
        run.log("v", 2000 + i)
    sys.exit(0)
_, second_status = os.waitpid(second, 0)
run.complete()
write_json(
    out,
    {
        "id": run.id,
        "child_exit": os.waitstatus_to_exitcode(status),
        "second_exit": os.waitstatus_to_exitcode(second_status),
    },
)
