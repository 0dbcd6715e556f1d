"""A training script whose ./outputs hold ARGV[1] MiB: it fits, storing a copy does not.

With ARGV[2] and ARGV[3] it then touches ARGV[2] and waits until ARGV[3] exists.
"""

import os
import sys
import time

from runner import Run

run = Run.get_context()
run.log("epoch", 1)
run.tag("trained", "yes")
mib = int(sys.argv[1])
os.makedirs("outputs", exist_ok=True)
with open("outputs/big.bin", "wb") as f:
    for _ in range(mib):
        f.write(os.urandom(1 << 20))
print(f"wrote {mib} MiB to ./outputs")
if len(sys.argv) > 3:
    open(sys.argv[2], "w").close()
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.05)
