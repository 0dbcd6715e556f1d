"""Inside a submitted run: hold resources until the test releases the run.

argv: MARKERS [EXIT_CODE]. Records ``<run id>.started`` (its GPU view) in MARKERS, prints
a line and logs metric ``phase`` = 1, waits for ``<run id>.release`` (or
``all.release``), then prints another line, logs ``phase`` = 2, records
``<run id>.ended`` and exits with EXIT_CODE (default 0).
"""

import sys

from gb_common import gpu_view, record, run_id, wait_released

from runner import Run

folder = sys.argv[1]
code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
run = Run.get_context(allow_offline=False)
print(f"before release {run_id()}", flush=True)
run.log("phase", 1)
run.flush()
record(folder, "started", gpu_view())
wait_released(folder)
print(f"after release {run_id()}", flush=True)
run.log("phase", 2)
run.flush()
record(folder, "ended", gpu_view())
sys.exit(code)
