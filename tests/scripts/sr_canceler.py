"""Outside any run: cancel a run of a workspace from this (other) process.

usage: sr_canceler.py WORKSPACE RUN_ID
"""

import sys

from runner import Run, Workspace

run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
run.cancel()
print(run.get_status())
