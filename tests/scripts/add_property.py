"""At a signal, add VALUE for property keys key0..keyK-1 of a run; record each outcome.

usage: add_property.py WORKSPACE RUN_ID VALUE K READY_FILE GO_FILE OUT_JSON
"""

import sys
from pathlib import Path

from history_common import wait_for_file, write_json

from runner import Run, Workspace
from runner.errors import ConflictError

ws_path, run_id, value, k, ready, go, out = sys.argv[1:]
run = Run.get(Workspace(ws_path), run_id)
run.get_properties()  # connection open and warm before the race
Path(ready).touch()
wait_for_file(go)
outcomes = {}
for j in range(int(k)):
    try:
        run.add_properties({f"key{j}": value})
        outcomes[f"key{j}"] = "won"
    except ConflictError as exc:
        outcomes[f"key{j}"] = f"ConflictError: {exc}"
write_json(out, outcomes)
