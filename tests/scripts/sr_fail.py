"""Inside a submitted run: log, write ./outputs, print to both streams, then crash.

usage: sr_fail.py MODE   MODE: 'raise' (ZeroDivisionError) or an exit code such as '3'
"""

import os
import sys

from sr_common import record_pid

from runner import Run

record_pid("fail")
run = Run.get_context(allow_offline=False)
for i in range(5):
    run.log("before_crash", i)
run.tag("stage", "crashing")
os.makedirs("outputs", exist_ok=True)
with open("outputs/partial.txt", "w") as f:
    f.write("written before the crash")
print("about to fail on stdout")
print("about to fail on stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    print(1 / 0)
sys.exit(int(sys.argv[1]))
