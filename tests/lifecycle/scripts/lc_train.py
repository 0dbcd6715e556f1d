"""A training script: appends to the ledger as it starts, then does what it is told.

    lc_train.py [--ledger PATH] [--value V] [--say TEXT] [--output TEXT] [--hold MARKERS]

--value logs the metric ``value`` (only then is runner imported, so the plainest run
stays cheap); --say prints a line to the driver log; --output writes
``outputs/result.txt``; --hold waits for the test's release marker (see lc_common).
"""

import argparse
import os

import lc_common


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger")
    parser.add_argument("--value", type=float)
    parser.add_argument("--say")
    parser.add_argument("--output")
    parser.add_argument("--hold")
    args = parser.parse_args()

    lc_common.ledger(args.ledger)
    lc_common.record_pid("train")
    if args.say:
        print(args.say, flush=True)
    if args.value is not None:
        from runner import Run

        Run.get_context().log("value", args.value)
    if args.output is not None:
        os.makedirs("outputs", exist_ok=True)
        with open(os.path.join("outputs", "result.txt"), "w", encoding="utf-8") as f:
            f.write(args.output)
    if args.hold:
        lc_common.hold(args.hold)


if __name__ == "__main__":
    main()
