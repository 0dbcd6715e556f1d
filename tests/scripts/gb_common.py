"""Shared by the gb_* scripts that tests/daemon runs inside submitted runs (Python 3.9+).

- ``record(folder, suffix, data)`` writes ``<folder>/<run id>.<suffix>`` as JSON, atomically
  and exclusively: a second execution of the same run fails instead of overwriting.
- ``wait_released(folder)`` blocks until ``<run id>.release`` or ``all.release`` exists
  (exit 3 after a long timeout, so a broken test fails instead of hanging).
"""

import json
import os
import sys
import time

#: How long a script waits for the test's release marker before giving up.
WAIT_S = 120.0


def run_id():
    """The id runner gave this run."""
    return os.environ["RUNNER_RUN_ID"]


def record(folder, suffix, data):
    """Write ``<folder>/<run id>.<suffix>`` once: tmp + link, which fails if it exists."""
    final = os.path.join(folder, f"{run_id()}.{suffix}")
    tmp = f"{final}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    try:
        os.link(tmp, final)  # FileExistsError: this run already ran once
    finally:
        os.unlink(tmp)


def gpu_view():
    """What the run was given: the visible-devices variables as runner set them."""
    return {
        "run_id": run_id(),
        "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
        "order": os.environ.get("CUDA_DEVICE_ORDER"),
        "time": time.time(),
    }


def wait_released(folder, timeout_s=WAIT_S):
    """Block until the test releases this run (or all runs)."""
    mine = os.path.join(folder, f"{run_id()}.release")
    every = os.path.join(folder, "all.release")
    deadline = time.monotonic() + timeout_s
    while not (os.path.exists(mine) or os.path.exists(every)):
        if time.monotonic() > deadline:
            sys.stderr.write(f"gb_common: gave up waiting for {mine}\n")
            sys.exit(3)
        time.sleep(0.01)
