"""flush() while the background writer has values in flight, then die at once.

usage: flush_then_die.py WORKSPACE EXPERIMENT N OUT_JSON

Logs N values, waits until the background writer has taken them out of the buffers
and is still writing them (read from the store's drain lock: that window is what this
script is about), calls flush(), records that it returned, and leaves with os._exit,
as a killed process would: whatever flush() returned on must already be stored.
"""

import os
import sys
import time

from history_common import write_json

from runner import Experiment, Workspace

ws_path, exp_name, n, out = sys.argv[1:]
ws = Workspace(ws_path)
run = Experiment(ws, exp_name).start_logging()
store = ws._store
for i in range(int(n)):
    run.log("v", i)
deadline = time.monotonic() + 10
caught = False
while time.monotonic() < deadline:
    if store._drain_lock.locked() and not store.has_pending():
        caught = True
        break
run.flush()
write_json(out, {"id": run.id, "caught_writer_mid_drain": caught})
os._exit(0)
