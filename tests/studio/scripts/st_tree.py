"""A run with a process tree: a child, and a grandchild in its own session (setsid), all
waiting forever; their pids go to MARKERS/pids (one a line) once all are started.

    st_tree.py MARKERS
"""

import os
import subprocess
import sys
import time
from pathlib import Path

markers = Path(sys.argv[1])
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
child = subprocess.Popen(sleeper)
grandchild = subprocess.Popen(sleeper, start_new_session=True)
tmp = markers / "pids.tmp"
tmp.write_text(f"{os.getpid()}\n{child.pid}\n{grandchild.pid}\n")
os.replace(tmp, markers / "pids")
print("tree started", flush=True)
while True:
    time.sleep(1)
