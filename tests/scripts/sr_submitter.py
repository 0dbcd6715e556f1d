"""Outside any run: submit a script to a workspace, print the run id, exit at once.

usage: sr_submitter.py WORKSPACE SOURCE_DIR SCRIPT GO_MARKER
"""

import sys

from runner import Experiment, ScriptRunConfig, Workspace

ws_path, source, script, go = sys.argv[1:5]
exp = Experiment(Workspace(ws_path), "from-subprocess")
src = ScriptRunConfig(source, script)
src.run_config.environment_variables = {"SR_GO": go}
run = exp.submit(src)
print(run.id)
