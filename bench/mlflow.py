"""MLflow's client on runner's tracking store vs on MLflow's own sqlite store.

Run: ``python bench/mlflow.py [--n 10000] [--reps 3] [--sqlite-n 10000]``

Needs mlflow (``pip install mlflow-skinny``) plus, for the sqlite baseline, sqlalchemy and
alembic (full ``pip install mlflow`` has them; or ``pip install sqlalchemy alembic`` next
to mlflow-skinny). Both cases do the same thing in one process: ``mlflow.start_run()``
(untimed), then ``mlflow.log_metric("m", v, step=i)`` x N and ``mlflow.end_run()``
(timed: end_run returns once every value is durable: runner flushes the run's buffers
and completes it; the sqlite store commits each call). Goal: runner >= 10x MLflow's own
store in calls/s. runner's side reaches the store through MLflow's plugin entry point
(``mlflow.tracking_store``), declared by pyproject.toml; when the installed runner lacks
it (another tree installed), this script declares it itself, as a run's runner copy does.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import common

# This file is named mlflow.py: its folder must not shadow the real package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

GOAL = 10.0  # runner's calls/s >= GOAL x the sqlite store's


def timed_calls(uri: str, values: list[float]) -> tuple[float, str]:
    """Seconds for log_metric x len(values) + end_run on the store at ``uri``; the run id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    run = mlflow.start_run()
    t0 = time.perf_counter()
    for i, v in enumerate(values):
        mlflow.log_metric("m", v, step=i)
    mlflow.end_run()
    return time.perf_counter() - t0, run.info.run_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="log_metric calls per runner run")
    parser.add_argument("--reps", type=int, default=3, help="runner runs (best is kept)")
    parser.add_argument(
        "--sqlite-n", type=int, default=10_000, help="log_metric calls on the sqlite store (once)"
    )
    args = parser.parse_args()
    if not common.mlflow_available():
        print("mlflow not installed: pip install mlflow-skinny (and sqlalchemy alembic)")
        return 2
    common.quiet_mlflow()
    import mlflow

    common.print_header(
        f"mlflow.log_metric x {args.n:,}: runner's tracking store vs MLflow's sqlite store",
        f"best of {args.reps} runner runs, one sqlite run; from the first log_metric until "
        "mlflow.end_run() returns (every value durable)",
    )
    rng = random.Random(42)
    values = [rng.random() for _ in range(max(args.n, args.sqlite_n))]
    with tempfile.TemporaryDirectory(prefix="runner-bench-mlflow-") as tmp_name:
        tmp = Path(tmp_name)
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        if "runner" not in _tracking_store_registry._registry:
            from runner.workspace import declare_mlflow_plugin

            declare_mlflow_plugin(tmp / "site")
            sys.path.append(str(tmp / "site"))
            _tracking_store_registry.register_entrypoints()
        from runner import Run, Workspace

        ws = Workspace.create(tmp / "ws")
        best = float("inf")
        for _ in range(args.reps):
            t, run_id = timed_calls(ws.get_mlflow_tracking_uri(), values[: args.n])
            best = min(best, t)
        stored = Run.get(ws, run_id).get_metrics()["m"]
        assert stored == values[: args.n], "runner did not keep every value"
        ws._store.close()
        try:
            sqlite_t, _ = timed_calls(f"sqlite:///{tmp / 'mlflow.db'}", values[: args.sqlite_n])
        except ImportError as exc:
            print(f"sqlite store unavailable ({exc}): pip install sqlalchemy alembic")
            return 2
    runner_rate = args.n / best
    sqlite_rate = args.sqlite_n / sqlite_t
    ratio = runner_rate / sqlite_rate
    common.print_table(
        ["case", "calls", "ms", "calls/s", "vs sqlite", f"goal >= {GOAL:.0f}x"],
        [
            [
                f"sqlite store [mlflow {mlflow.__version__}]",
                f"{args.sqlite_n:,}",
                f"{sqlite_t * 1000:.0f}",
                common.rate(args.sqlite_n, sqlite_t),
                "1.00",
                "",
            ],
            [
                "runner store (runner:///...)",
                f"{args.n:,}",
                f"{best * 1000:.0f}",
                common.rate(args.n, best),
                f"{ratio:.1f}x",
                common.verdict(ratio >= GOAL),
            ],
        ],
    )
    print(f"overall: {common.verdict(ratio >= GOAL)}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
