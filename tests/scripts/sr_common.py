"""Shared by the sr_* scripts that tests/submit runs inside submitted runs (Python 3.9+).

- ``record_pid(role)`` writes this process's identity (pid, kernel start time) into
  ``$SR_PIDS`` so the test can check that nothing of the run outlives it.
- ``wait_for(path)`` blocks until a marker file exists (exit 3 after a long timeout, so
  a broken test fails instead of hanging).
- ``write_json`` / ``touch`` write files atomically.
"""

import json
import os
import sys
import time

#: How long a script waits for a marker the test should create before giving up.
WAIT_S = 120.0


def start_ticks(pid):
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data.rsplit(")", 1)[1].split()[19]


def record_pid(role, pid=None):
    """Write '<ticks> <role>' to $SR_PIDS/<pid>; a no-op outside the tests."""
    folder = os.environ.get("SR_PIDS")
    if not folder:
        return
    pid = os.getpid() if pid is None else pid
    write_text(os.path.join(folder, str(pid)), f"{start_ticks(pid)} {role}")


def write_text(path, text):
    """Write a file atomically (tmp + rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path, obj):
    """Write JSON atomically."""
    write_text(path, json.dumps(obj))


def touch(path):
    """Create a marker file (atomically)."""
    write_text(path, str(time.time()))


def wait_for(path, timeout_s=WAIT_S):
    """Block until ``path`` exists; exit 3 if it never does."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.stderr.write(f"sr_common: gave up waiting for {path}\n")
            sys.exit(3)
        time.sleep(0.01)
