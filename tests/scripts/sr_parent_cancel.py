"""Inside a submitted run: a submitted child and an interactive child, then wait.

usage: sr_parent_cancel.py READY   (child_src/sr_probe.py in the snapshot; the child
       waits for SR_GO, which never comes: only cancel ends it)
"""

import sys
import time

from sr_common import record_pid, touch, wait_for

from runner import Run, ScriptRunConfig

record_pid("parent")
ready = sys.argv[1]
run = Run.get_context(allow_offline=False)
src = ScriptRunConfig("child_src", "sr_probe.py")
started = ready + ".child"
src.run_config.environment_variables = {
    "SR_STARTED": started,
    "SR_GO": ready + ".never",
}
src.run_config.cancel_grace_seconds = 1
child = run.submit_child(src)
inner = run.child_run(name="interactive")
wait_for(started)
touch(ready)
while True:
    time.sleep(0.02)
