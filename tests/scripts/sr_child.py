"""A child submitted from inside a run (run.submit_child): report its identity."""

import os
import sys

from sr_common import record_pid

from runner import Run

record_pid("submitted-child")
run = Run.get_context(allow_offline=False)
run.log("child_loss", 0.125)
run.tag("parent_seen", run.parent.id)
run.tag("argv", " | ".join(sys.argv[1:]))
run.tag("var", os.environ.get("SR_VAR_CHILD"))
print("child of", run.parent.id)
