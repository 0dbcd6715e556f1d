"""Inside a submitted run: a process tree, each member recording its pid.

usage: sr_tree.py main READY [exit|stay]
  main         starts 'child'; the child starts 'grandchild' (same session), 'setsid'
               (its own session, parent still alive) and 'orphan' (its own session,
               double-forked so that its parent is gone). When all have recorded
               themselves, main touches READY; then it exits 0 ('exit', leaving the
               tree behind) or sleeps until it is terminated ('stay').
"""

import os
import subprocess
import sys
import time

from sr_common import record_pid, touch, wait_for

role = sys.argv[1]
here = os.path.abspath(__file__)
folder = os.path.dirname(here)


def spawn(role, marker, new_session=False):
    return subprocess.Popen(
        [sys.executable, here, role, marker], start_new_session=new_session, cwd=folder
    )


def sleep_forever():
    while True:
        time.sleep(0.05)


if role == "main":
    ready, after = sys.argv[2], sys.argv[3]
    record_pid("main")
    spawn("child", ready + ".child")
    wait_for(ready + ".child")
    touch(ready)
    if after == "exit":
        sys.exit(0)
    sleep_forever()
elif role == "child":
    marker = sys.argv[2]
    record_pid("child")
    spawn("grandchild", marker + ".grandchild")
    spawn("setsid", marker + ".setsid", new_session=True)
    # The orphan: a short-lived middle process starts it in a new session and exits.
    middle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)",
            sys.executable,
            here,
            "orphan",
            marker + ".orphan",
        ],
        cwd=folder,
    )
    middle.wait()
    for name in ("grandchild", "setsid", "orphan"):
        wait_for(marker + "." + name)
    touch(marker)
    sleep_forever()
else:  # grandchild, setsid, orphan
    record_pid(role)
    touch(sys.argv[2])
    sleep_forever()
