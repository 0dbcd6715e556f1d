"""Submit train.py as a script run on this machine and show what runner recorded.

    python examples/quickstart/submit.py

Uses the embedded default workspace (~/.runner/workspace, or $RUNNER_WORKSPACE):
nothing to set up first.
"""

import json
import os

from runner import Experiment, ScriptRunConfig, Workspace

here = os.path.dirname(os.path.abspath(__file__))
ws = Workspace.from_config()
exp = Experiment(ws, "quickstart")

src = ScriptRunConfig(
    source_directory=here, script="train.py", arguments=["--epochs", 5, "--lr", 0.3]
)
run = exp.submit(src, tags={"example": "quickstart"})
print(f"submitted run {run.id} (number {run.number}) to workspace {ws.path}")
run.wait_for_completion(show_output=True)

print("\nstatus:  ", run.get_status())
print("metrics:")
for name, value in run.get_metrics().items():
    print(f"  {name}: {json.dumps(value)}")
print("children:", [c.display_name for c in run.get_children()])
print("files:   ", run.get_file_names())
print("\nlook again with:")
print(f"  runner run show -r {run.id}")
print("  runner run list -e quickstart -o table")
print(f"  runner run logs -r {run.id}")
