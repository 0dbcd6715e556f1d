"""A run the studio tests steer: it prints and logs ``loss``, and waits for marker files.

    st_train.py MARKERS

Writes MARKERS/started, prints a line, logs 5 points, waits for MARKERS/more, prints a
second line, logs 5 more, waits for MARKERS/finish, and ends.
"""

import sys
import time
from pathlib import Path

from runner import Run


def wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.02)


markers = Path(sys.argv[1])
run = Run.get_context()
(markers / "started").write_text(run.id)
print("hello from the driver log", flush=True)
for i in range(5):
    run.log("loss", 1.0 / (i + 1))
wait_for(markers / "more")
print("the second half begins", flush=True)
for i in range(5, 10):
    run.log("loss", 1.0 / (i + 1))
wait_for(markers / "finish")
print("done", flush=True)
