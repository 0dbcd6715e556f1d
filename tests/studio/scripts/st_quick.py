"""A short run: tags itself lr=LR, logs ``loss`` (3 points ending at LR * 10) and
``acc``, and ends.

    st_quick.py MARKERS LR
"""

import sys

from runner import Run

lr = float(sys.argv[2])
run = Run.get_context()
run.tag("lr", str(lr))
for i in range(3):
    run.log("loss", lr * 10 * (3 - i))
run.log("acc", 1 - lr)
print(f"trained with lr={lr}")
