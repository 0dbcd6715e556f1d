"""Submit runs from a short process that exits without waiting for them.

    lc_submit.py -e EXP -s SOURCE SCRIPT [--count N] [--grace S] [--wait] [-- ARGS...]

Uses ``Workspace.from_config()`` (so ``$RUNNER_WORKSPACE``), submits SCRIPT from SOURCE
COUNT times in order, and prints one JSON object: ``{"runs": [{"id", "number"}],
"seconds": [time each submit took]}``. ``{i}`` in ARGS becomes the 1-based index of the
run. ``$LC_LEDGER`` and ``$LC_PIDS`` are handed to each run as environment variables.
With --wait, each run is waited for (``wait_for_completion``) before the process exits.
"""

import argparse
import json
import os
import time

from runner import Experiment, ScriptRunConfig, Workspace


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", "--experiment", required=True)
    parser.add_argument("-s", "--source", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--grace", type=float)
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    script_args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args

    ws = Workspace.from_config()
    exp = Experiment(ws, opts.experiment)
    passed = {k: os.environ[k] for k in ("LC_LEDGER", "LC_PIDS") if os.environ.get(k)}
    runs, seconds = [], []
    for i in range(1, opts.count + 1):
        cfg = ScriptRunConfig(
            source_directory=opts.source,
            script=opts.script,
            arguments=[a.replace("{i}", str(i)) for a in script_args],
        )
        cfg.run_config.environment_variables = dict(passed)
        if opts.grace is not None:
            cfg.run_config.cancel_grace_seconds = opts.grace
        started = time.monotonic()
        runs.append(exp.submit(cfg))
        seconds.append(round(time.monotonic() - started, 3))
    if opts.wait:
        for run in runs:
            run.wait_for_completion(raise_on_error=False)
    print(
        json.dumps({"runs": [{"id": r.id, "number": r.number} for r in runs], "seconds": seconds})
    )


if __name__ == "__main__":
    main()
