"""An interactive run in a process of its own.

    lc_interactive.py -e EXP --info PATH [--release PATH]

Starts ``Experiment(ws, EXP).start_logging()``, logs ``m`` = 1, flushes, then writes
``{"id": run id, "pid": this pid}`` to PATH (atomically) and prints it. Then it blocks:
until it is killed, or, with --release, until that file exists; then the run is
completed and the process exits 0.
"""

import argparse
import json
import os
import time

from runner import Experiment, Workspace

WAIT_S = 120.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", "--experiment", required=True)
    parser.add_argument("--info", required=True)
    parser.add_argument("--release")
    opts = parser.parse_args()

    run = Experiment(Workspace.from_config(), opts.experiment).start_logging()
    run.log("m", 1)
    run.flush()
    info = json.dumps({"id": run.id, "pid": os.getpid()})
    tmp = f"{opts.info}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(info)
    os.replace(tmp, opts.info)
    print(info, flush=True)

    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if opts.release and os.path.exists(opts.release):
            run.complete()
            return
        time.sleep(0.02)
    raise SystemExit(3)


if __name__ == "__main__":
    main()
