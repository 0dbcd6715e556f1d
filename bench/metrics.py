"""Benchmark metric logging: Run.log / Run.log_list until durable vs a list + one file write.

Run: ``python bench/metrics.py [--n 100000] [--reps 3] [--mlflow-reps 3] [--no-mlflow]``

Timed region of each runner case: from the first log call until ``run.flush()`` returns
(every value committed to the workspace's SQLite database), in a fresh run each time:
  - run.log(name, v) for each of N floats;
  - run.log_list(name, values) once with all N;
  - run.log_list(name, chunk) N/100 times with 100 values each.
Baseline (same N floats, same run of the script): append each to a Python list, then
open a file, write '\\n'.join(map(repr, values)), close. Neither side fsyncs (the store
runs WAL with synchronous=NORMAL; the baseline stops at the page cache).

Goal: each runner case reaches >= 50% of the baseline's values/s. The best of --reps
runs counts, for every case. If mlflow is importable, mlflow.log_metric (sqlite store)
and MlflowClient.log_batch (batches of 1000, mlflow's limit) are measured too.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import common

GOAL = 0.5  # runner values/s >= GOAL * baseline values/s


def baseline_append(values: list[float], path: Path) -> None:
    """The physical baseline: append to a list, write it to a file once."""
    buf: list[float] = []
    for v in values:
        buf.append(v)
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(map(repr, buf)))


def runner_cases(ws, values: list[float], reps: int) -> dict[str, float]:
    """Best times (s) of the three runner cases; checks once that every value landed."""
    from runner import Experiment

    exp = Experiment(ws, "bench-metrics")
    chunks = [values[i : i + 100] for i in range(0, len(values), 100)]

    def log_each(run) -> None:
        log = run.log
        for v in values:
            log("m", v)
        run.flush()

    def log_list_once(run) -> None:
        run.log_list("m", values)
        run.flush()

    def log_list_chunks(run) -> None:
        for c in chunks:
            run.log_list("m", c)
        run.flush()

    results: dict[str, float] = {}
    for label, fn in (
        (f"run.log x {len(values):,}", log_each),
        (f"run.log_list x 1 ({len(values):,} values)", log_list_once),
        (f"run.log_list x {len(chunks):,} (100 values)", log_list_chunks),
    ):
        runs = []

        def fresh_run(runs=runs):
            run = exp.start_logging()
            runs.append(run)
            return run

        results[label] = common.best_of(reps, fn, setup=fresh_run)
        for run in runs:  # untimed: nothing lost, order kept
            got = run.get_metrics("m")["m"]
            if got != values:
                raise SystemExit(
                    f"FAIL: {label} stored {len(got)} values, not the {len(values)} logged"
                )
            run.complete()
    return results


def mlflow_cases(values: list[float], reps: int) -> list[tuple[str, int, float]]:
    """(label, values, best seconds) for mlflow.log_metric and log_batch on a sqlite store."""
    common.quiet_mlflow()
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    out: list[tuple[str, int, float]] = []
    with common.temp_dir("runner-bench-mlflow-") as tmp:
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        # Untimed: creates the schema (alembic migrations) and the experiment.
        exp_id = client.create_experiment("bench", artifact_location=(tmp / "art").as_uri())

        n_calls = min(1000, len(values))
        few = values[:n_calls]

        def log_metric(_: object) -> None:
            for i, v in enumerate(few):
                mlflow.log_metric("m", v, step=i)

        def start(_=None):
            mlflow.end_run()
            return mlflow.start_run(experiment_id=exp_id)

        out.append(
            (f"mlflow.log_metric x {n_calls:,}", n_calls, common.best_of(reps, log_metric, start))
        )
        mlflow.end_run()

        def log_batch(run_id: str) -> None:
            ts = int(time.time() * 1000)
            for s in range(0, len(values), 1000):
                batch = [
                    Metric("m", values[i], ts, i) for i in range(s, min(s + 1000, len(values)))
                ]
                client.log_batch(run_id, metrics=batch)

        out.append(
            (
                f"MlflowClient.log_batch x {(len(values) + 999) // 1000:,} (1000 metrics)",
                len(values),
                common.best_of(reps, log_batch, lambda: client.create_run(exp_id).info.run_id),
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="values per case (default 100000)")
    parser.add_argument("--reps", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--mlflow-reps", type=int, default=3, help="runs per mlflow case")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the mlflow comparison")
    args = parser.parse_args()

    common.print_header(
        f"metrics: {args.n:,} float metric values until durable",
        f"best of {args.reps} per case (fresh run each), from the first log call until "
        "run.flush() returns",
    )
    rng = random.Random(42)
    values = [rng.random() for _ in range(args.n)]

    with common.temp_dir("runner-bench-baseline-") as tmp:
        path = tmp / "values.txt"
        base = common.best_of(args.reps, lambda: baseline_append(values, path))
    with common.temp_workspace() as ws:
        cases = runner_cases(ws, values, args.reps)

    base_rate = args.n / base
    rows: list[list[object]] = [
        [
            "baseline: list.append + one file write",
            f"{base * 1000:.1f}",
            common.rate(args.n, base),
            "1.00",
            "",
        ]
    ]
    ok = True
    for label, t in cases.items():
        ratio = (args.n / t) / base_rate
        ok &= ratio >= GOAL
        rows.append(
            [
                label,
                f"{t * 1000:.1f}",
                common.rate(args.n, t),
                f"{ratio:.2f}",
                common.verdict(ratio >= GOAL),
            ]
        )

    mlflow_rows: list[list[object]] = []
    if args.no_mlflow:
        pass
    elif common.mlflow_available():
        import mlflow

        for label, n, t in mlflow_cases(values, args.mlflow_reps):
            ratio = (n / t) / base_rate
            mlflow_rows.append(
                [
                    f"{label} [mlflow {mlflow.__version__}]",
                    f"{t * 1000:.1f}",
                    common.rate(n, t),
                    f"{ratio:.4f}",
                    "(info)",
                ]
            )
    else:
        mlflow_rows.append([common.MLFLOW_MISSING, "", "", "", ""])

    common.print_table(
        ["case", "ms", "values/s", "vs baseline", f"goal >= {GOAL:.2f}"], rows + mlflow_rows
    )
    print(
        f"overall: {common.verdict(ok)} (every runner case >= {GOAL:.0%} of the baseline's values/s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
