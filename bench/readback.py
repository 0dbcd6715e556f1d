"""Benchmark reading a metric back: get_metrics() of 1,000,000 floats vs parsing a text file.

Run: ``python bench/readback.py [--n 1000000] [--reps 5]``

Setup (untimed): two runs log the same N floats with run.log (one call per value, as a
training loop does) and flush. The store keeps a metric as packed chunks, one per
background flush, so the layout depends on how fast values arrive: "1 burst" logs all N
at once (a few big chunks); "slow loop" flushes every --chunk values, the layout of a
long training job (the writer flushes every 0.2 s: 1M points over an hour is ~18,000
chunks of ~55). The same values are written to a text file, one repr() per line.
Timed: ``Run.get(ws, run_id).get_metrics()`` with a fresh Run object each time (the
Run.get lookup itself is untimed), vs ``open + [float(x) for x in f.read().split()]``.
Both sides read warm data (SQLite file and text file in the page cache).

Goal: runner time / text-parse time <= 2 for both layouts. The median of --reps runs
counts.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import common

GOAL = 2.0  # runner seconds <= GOAL * baseline seconds


def parse_text(path: Path) -> list[float]:
    """The baseline: read a one-float-per-line text file into a list of floats."""
    with open(path, encoding="ascii") as f:
        return [float(x) for x in f.read().split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="points (default 1000000)")
    parser.add_argument("--reps", type=int, default=5, help="runs per case; the median counts")
    parser.add_argument(
        "--chunk", type=int, default=100, help="values per flush in the slow loop (default 100)"
    )
    args = parser.parse_args()

    from runner import Experiment, Run

    common.print_header(
        f"readback: get_metrics() of one {args.n:,}-point float metric",
        f"median of {args.reps} per case; fresh Run from Run.get() each time (untimed)",
    )
    rng = random.Random(7)
    values = [rng.random() for _ in range(args.n)]

    with common.temp_workspace() as ws, common.temp_dir("runner-bench-text-") as tmp:
        exp = Experiment(ws, "bench-readback")
        layouts: list[tuple[str, str]] = []  # (label, run id)
        run = exp.start_logging()
        for v in values:
            run.log("m", v)
        run.flush()
        run.complete()
        layouts.append(("1 burst", run.id))
        run = exp.start_logging()
        for i in range(0, args.n, args.chunk):
            for v in values[i : i + args.chunk]:
                run.log("m", v)
            run.flush()
        run.complete()
        layouts.append(("slow loop", run.id))

        path = tmp / "values.txt"
        path.write_text("\n".join(map(repr, values)), encoding="ascii")

        # Untimed correctness checks, which also warm both sides' caches.
        if parse_text(path) != values:
            raise SystemExit("FAIL: the text parse did not return the logged values")
        base = common.median_of(args.reps, lambda: parse_text(path))
        rows: list[list[object]] = [
            [
                "baseline: open + read + split + float()",
                f"{base * 1000:.1f}",
                common.rate(args.n, base),
                "1.00",
                "",
            ]
        ]
        ok = True
        for label, run_id in layouts:
            chunks = ws._store.query(
                "SELECT COUNT(*) FROM metrics WHERE run_id = ? AND name = 'm'", (run_id,)
            )[0][0]
            what = f"{label} ({chunks:,} chunk{'s' if chunks != 1 else ''})"
            if Run.get(ws, run_id).get_metrics()["m"] != values:
                raise SystemExit(f"FAIL: get_metrics() of {label} did not return the logged values")
            t_all = common.median_of(
                args.reps,
                lambda r: r.get_metrics(),
                setup=lambda run_id=run_id: Run.get(ws, run_id),
            )
            t_one = common.median_of(
                args.reps,
                lambda r: r.get_metrics("m"),
                setup=lambda run_id=run_id: Run.get(ws, run_id),
            )
            ok &= t_all / base <= GOAL
            rows.append(
                [
                    f"{what}: get_metrics()",
                    f"{t_all * 1000:.1f}",
                    common.rate(args.n, t_all),
                    f"{t_all / base:.2f}",
                    common.verdict(t_all / base <= GOAL),
                ]
            )
            rows.append(
                [
                    f"{what}: get_metrics('m')",
                    f"{t_one * 1000:.1f}",
                    common.rate(args.n, t_one),
                    f"{t_one / base:.2f}",
                    "(info)",
                ]
            )

    common.print_table(["case", "ms", "points/s", "time ratio", f"goal <= {GOAL:.1f}"], rows)
    print(f"overall: {common.verdict(ok)} (get_metrics() takes <= {GOAL:g}x the text parse)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
