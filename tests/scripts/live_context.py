"""Inside a run (RUNNER_RUN_ID and RUNNER_WORKSPACE set): log through get_context().

usage: live_context.py OUT_JSON
"""

import sys

from history_common import write_json

from runner import Run

run = Run.get_context(allow_offline=False)
run.log("from_script", 42)
run.tag("seen", "yes")
parent = run.parent
write_json(
    sys.argv[1],
    {
        "id": run.id,
        "type": type(run).__name__,
        "parent": None if parent is None else parent.id,
    },
)
