"""Read runs from a fresh process and print them as one JSON object.

    lc_read.py [-e EXP] [--ids ID ...] [--wait S] [--watch S]

Runs: the ids given, else the top-level runs of EXP (by number). With --wait, each run's
``wait_for_completion(raise_on_error=False)`` is called in a thread, all within S
seconds; runs not finished by then are reported with ``"timedOut": true`` (a hang is
reported, not suffered). With --watch, ``get_status()`` is polled for S seconds and every
distinct status seen is listed in order under ``"watched"``.

Each run: id, number, type, status, statusDetails, metrics (without the daemon's
``sys/*`` samples), properties, error (``get_details()["error"]`` or null).
"""

import argparse
import json
import os
import sys
import threading
import time

from runner import Experiment, Run, Workspace

TERMINAL = {"Completed", "Failed", "Canceled"}


def describe(run):
    details = run.get_details()
    metrics = {k: v for k, v in run.get_metrics().items() if not k.startswith("sys/")}
    return {
        "id": run.id,
        "number": run.number,
        "type": run.type,
        "status": details["status"],
        "statusDetails": details.get("statusDetails"),
        "metrics": metrics,
        "properties": details["properties"],
        "error": details.get("error"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", "--experiment")
    parser.add_argument("--ids", nargs="*", default=[])
    parser.add_argument("--wait", type=float)
    parser.add_argument("--watch", type=float)
    opts = parser.parse_args()

    ws = Workspace.from_config()
    if opts.ids:
        runs = [Run.get(ws, run_id) for run_id in opts.ids]
    else:
        runs = sorted(Experiment(ws, opts.experiment).get_runs(), key=lambda r: r.number)

    waited = {}
    if opts.wait is not None:

        def wait_all():
            for run in runs:
                started = time.monotonic()
                run.wait_for_completion(raise_on_error=False)
                waited[run.id] = round(time.monotonic() - started, 3)

        waiter = threading.Thread(target=wait_all, daemon=True)
        waiter.start()
        waiter.join(opts.wait)

    watched = {}
    if opts.watch is not None:
        end = time.monotonic() + opts.watch
        while True:
            for run in runs:
                seen = watched.setdefault(run.id, [])
                status = run.get_status()
                if not seen or seen[-1] != status:
                    seen.append(status)
            if time.monotonic() >= end:
                break
            time.sleep(0.02)

    out = []
    for run in runs:
        item = describe(run)
        if opts.wait is not None:
            item["timedOut"] = run.id not in waited
        if opts.watch is not None:
            item["watched"] = watched[run.id]
        out.append(item)
    sys.stdout.write(json.dumps({"runs": out}) + "\n")
    sys.stdout.flush()
    # A wait that timed out may still be blocked in its thread: leave without it.
    os._exit(0)


if __name__ == "__main__":
    main()
