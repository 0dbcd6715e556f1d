"""A run that logs COUNT points of ``big`` (a slow ramp with one spike of 1000 at the
middle) and prints numbered lines.

    st_big.py MARKERS COUNT
"""

import sys

from runner import Run

count = int(sys.argv[2])
run = Run.get_context()
for i in range(count):
    run.log("big", 1000.0 if i == count // 2 else i / count)
for line in range(50):
    print(f"line {line:03d} é")
