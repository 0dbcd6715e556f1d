"""Benchmark run queries: exp.get_runs(tags=/properties=) among 10,000 and 100,000 runs.

Run: ``python bench/query.py [--sizes 10000,100000] [--reps 20] [--create 1000]``

Setup (untimed): for each size N, an experiment with N runs created through the store's
batch API (``ws._store.create_runs`` with NewRun specs carrying their tags, in one
transaction, as Run.create_children batches), and properties added in bulk. Every run
has tags idx=<i>, batch=<i % 100>, k=w<i % 1000> and a property seed=<i>; 10 runs have
k=v instead, a value-less tag 'rare' and the property p=x. The experiments of smaller
sizes stay in the workspace, so the larger one is queried among all of them.

Timed: ``list(exp.get_runs(...))``, the median of --reps calls, for
  - a selective tag:  tags={'k': 'v'}   (10 runs; goal <= 10 ms)
  - a key-only tag:   tags='rare'       (10 runs; goal <= 10 ms)
  - a property:       properties={'p': 'x'} (10 runs; goal <= 10 ms)
  - a broad tag:      tags={'batch': '7'} (1% of the runs; shown for scale, no goal);
  - the latest run:   next(exp.get_runs()) (shown for scale, no goal).
Also: interactive run creation, exp.start_logging() x --create (best of 3), in runs/s;
mlflow.start_run + end_run on a sqlite store for comparison when mlflow is importable.
"""

from __future__ import annotations

import argparse
import sys
import time

import common

GOAL_MS = 10.0
SELECTIVE = 10  # runs holding each selective tag/property


def populate(ws, name: str, n: int) -> tuple[object, float]:
    """An experiment holding n runs (see the module docstring); (experiment, seconds)."""
    from runner import Experiment
    from runner.store import NewRun

    exp = Experiment(ws, name)
    every = max(1, n // SELECTIVE)
    base = int(time.time())
    t0 = time.perf_counter()
    specs = []
    for i in range(n):
        special = i % every == every // 2
        tags: dict[str, str | None] = {
            "idx": str(i),
            "batch": str(i % 100),
            "k": "v" if special else f"w{i % 1000}",
        }
        if special:
            tags["rare"] = None
        # Explicit ids: the store's generated ones have 32 random bits per second,
        # which collide within one 100k batch (see bench/RESULTS.md).
        specs.append(
            NewRun(
                id=f"{name}_{base}_{i:08x}",
                type="azureml.interactive",
                status="Completed",
                target="local",
                tags=tags,
            )
        )
    ids = ws._store.create_runs(exp._id, specs, submitted_by="bench")
    with ws._store.write() as conn:
        conn.executemany(
            "INSERT INTO properties(run_id, key, value) VALUES (?, ?, ?)",
            [(rid, "seed", str(i)) for i, rid in enumerate(ids)],
        )
        conn.executemany(
            "INSERT INTO properties(run_id, key, value) VALUES (?, ?, ?)",
            [(rid, "p", "x") for i, rid in enumerate(ids) if i % every == every // 2],
        )
    return exp, time.perf_counter() - t0


def creation_rate(ws, count: int) -> float:
    """Best of 3 seconds for ``count`` exp.start_logging() calls (runs left Running)."""
    from runner import Experiment

    exp = Experiment(ws, "bench-create")

    def create() -> None:
        for _ in range(count):
            exp.start_logging()

    return common.best_of(3, create)


def mlflow_creation(count: int) -> float:
    """Best of 3 seconds for ``count`` mlflow.start_run() + end_run() on a sqlite store."""
    common.quiet_mlflow()
    import mlflow
    from mlflow.tracking import MlflowClient

    with common.temp_dir("runner-bench-mlflow-") as tmp:
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        exp_id = MlflowClient(uri).create_experiment(
            "bench", artifact_location=(tmp / "art").as_uri()
        )

        def create() -> None:
            for _ in range(count):
                mlflow.start_run(experiment_id=exp_id)
                mlflow.end_run()

        return common.best_of(3, create)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10000,100000", help="runs per experiment, comma-separated"
    )
    parser.add_argument("--reps", type=int, default=20, help="calls per query; the median counts")
    parser.add_argument("--create", type=int, default=1000, help="runs for the creation rate")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the mlflow comparison")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    common.print_header(
        "query: exp.get_runs(tags=/properties=) among many runs",
        f"median of {args.reps} calls of list(exp.get_runs(...)) per query",
    )
    queries: list[tuple[str, dict[str, object], bool]] = [
        ("tags={'k': 'v'}", {"tags": {"k": "v"}}, True),
        ("tags='rare' (key only)", {"tags": "rare"}, True),
        ("properties={'p': 'x'}", {"properties": {"p": "x"}}, True),
        ("tags={'batch': '7'} (1%, no goal)", {"tags": {"batch": "7"}}, False),
    ]
    rows: list[list[object]] = []
    ok = True
    with common.temp_workspace() as ws:
        for n in sizes:
            exp, setup_s = populate(ws, f"bench-query-{n}", n)
            print(f"setup: {n:,} runs with tags and properties in {setup_s:.1f} s (untimed)")
            for label, kw, has_goal in queries:
                found = list(exp.get_runs(**kw))  # untimed check and warm-up
                expected = SELECTIVE if has_goal else n // 100
                if len(found) != expected:
                    raise SystemExit(f"FAIL: {label} found {len(found)} runs, not {expected}")
                ms = (
                    common.median_of(args.reps, lambda kw=kw, exp=exp: list(exp.get_runs(**kw)))
                    * 1000
                )
                passed = ms <= GOAL_MS
                if has_goal:
                    ok &= passed
                rows.append(
                    [
                        f"{n:,} runs: {label}",
                        len(found),
                        f"{ms:.2f}",
                        f"{ms / GOAL_MS:.2f}",
                        common.verdict(passed) if has_goal else "(info)",
                    ]
                )
            # v1 code often takes the latest run with next(exp.get_runs()); no goal.
            ms = common.median_of(args.reps, lambda exp=exp: next(iter(exp.get_runs()))) * 1000
            rows.append(
                [
                    f"{n:,} runs: next(exp.get_runs()) (latest, no goal)",
                    1,
                    f"{ms:.2f}",
                    "",
                    "(info)",
                ]
            )
        print()
        common.print_table(
            ["query", "runs", "ms/query", "vs goal", f"goal <= {GOAL_MS:g} ms"], rows
        )

        t_create = creation_rate(ws, args.create)
    create_rows: list[list[object]] = [
        [
            f"exp.start_logging() x {args.create:,}",
            f"{t_create * 1000 / args.create:.2f}",
            common.rate(args.create, t_create),
        ]
    ]
    if args.no_mlflow:
        pass
    elif common.mlflow_available():
        import mlflow

        m_count = min(args.create, 100)
        t_m = mlflow_creation(m_count)
        create_rows.append(
            [
                f"mlflow.start_run() + end_run() x {m_count} [mlflow {mlflow.__version__}, sqlite]",
                f"{t_m * 1000 / m_count:.2f}",
                common.rate(m_count, t_m),
            ]
        )
    else:
        create_rows.append([common.MLFLOW_MISSING + " (reference: ~49 runs/s)", "", ""])
    print("run creation (best of 3):")
    common.print_table(["case", "ms/run", "runs/s"], create_rows)
    print(f"overall: {common.verdict(ok)} (every selective query <= {GOAL_MS:g} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
