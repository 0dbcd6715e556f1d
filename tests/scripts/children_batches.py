"""Create B parent runs with SIZE children each (create_children), as fast as possible.

usage: children_batches.py WORKSPACE EXPERIMENT B SIZE DONE_FILE
"""

import sys
from pathlib import Path

from runner import Experiment, Workspace

ws_path, exp_name, b, size, done = sys.argv[1:]
exp = Experiment(Workspace(ws_path), exp_name)
for _ in range(int(b)):
    parent = exp.start_logging()
    parent.create_children(count=int(size))
    parent.complete()
Path(done).touch()
