"""Inside a submitted run: ignore SIGTERM (noting when it came) until SIGKILL.

usage: sr_stubborn.py READY TERMED
"""

import signal
import sys
import time

from sr_common import record_pid, touch

ready, termed = sys.argv[1], sys.argv[2]


def on_term(signum, frame):
    touch(termed)  # and carry on: only SIGKILL ends this


signal.signal(signal.SIGTERM, on_term)
record_pid("stubborn")
touch(ready)
while True:
    time.sleep(0.02)
