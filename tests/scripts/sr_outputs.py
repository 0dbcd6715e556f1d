"""Inside a submitted run: write ./outputs, then end as asked.

usage: sr_outputs.py MODE READY   MODE: ok | fail | wait (until canceled)
"""

import os
import sys
import time

from sr_common import record_pid, touch

record_pid("outputs")
mode, ready = sys.argv[1], sys.argv[2]
os.makedirs("outputs/sub dir", exist_ok=True)
with open("outputs/result.txt", "w") as f:
    f.write("result of " + mode)
with open("outputs/sub dir/deep.bin", "wb") as f:
    f.write(bytes(range(256)))
touch(ready)
if mode == "fail":
    sys.exit(2)
if mode == "wait":
    while True:
        time.sleep(0.02)
