"""Shared by the training scripts of tests/lifecycle (copied into each source folder).

Standard library only, Python 3.9+. What a training script proves with it:

- ``ledger()`` appends ``"<run id> <pid>\\n"`` to ``$LC_LEDGER`` (or a path given) with
  O_APPEND as the script starts: the ledger's lines say how many times, and in which
  order, each run executed.
- ``record_pid(role, pid)`` writes ``'<start ticks> <role>'`` to ``$LC_PIDS/<pid>`` so that
  the test's teardown finds (and kills) any process of a run that outlived it, even one
  with an empty environment.
- ``hold(markers)`` writes ``MARKERS/<run id>.started`` and blocks until
  ``MARKERS/<run id>.release`` or ``MARKERS/all.release`` exists.
"""

import os
import sys
import time

#: How long a script waits for a marker before giving up (exit 3), so that a broken
#: test fails instead of leaving a run behind for ever.
WAIT_S = 120.0


def run_id():
    """The run's id, as runner hands it to the script."""
    return os.environ.get("RUNNER_RUN_ID", "no-run-id")


def start_ticks(pid):
    """Field 22 of /proc/PID/stat: the process's start time in clock ticks since boot."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def write_text(path, text):
    """Write a file atomically (tmp + rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def ledger(path=None):
    """Append '<run id> <pid>' to the ledger in one O_APPEND write."""
    path = path or os.environ.get("LC_LEDGER")
    if not path:
        sys.stderr.write("lc_common: no ledger (LC_LEDGER is not set)\n")
        sys.exit(4)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id()} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def record_pid(role, pid=None):
    """Write '<ticks> <role>' to $LC_PIDS/<pid>; a no-op when LC_PIDS is not set."""
    folder = os.environ.get("LC_PIDS")
    if not folder:
        return
    pid = os.getpid() if pid is None else pid
    write_text(os.path.join(folder, str(pid)), f"{start_ticks(pid)} {role}")


def wait_for(*paths, timeout_s=WAIT_S):
    """Block until one of ``paths`` exists; exit 3 if none ever does."""
    deadline = time.monotonic() + timeout_s
    while not any(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline:
            sys.stderr.write(f"lc_common: gave up waiting for {paths}\n")
            sys.exit(3)
        time.sleep(0.01)


def hold(markers):
    """Say this run started, then wait until the test releases it (or all runs)."""
    me = run_id()
    write_text(os.path.join(markers, f"{me}.started"), str(os.getpid()))
    wait_for(os.path.join(markers, f"{me}.release"), os.path.join(markers, "all.release"))
