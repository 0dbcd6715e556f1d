"""A training script that forks workers which log to the run (multiprocessing "fork"
Pool and Process objects, and a bare os.fork() child)."""

from __future__ import annotations

from tests.lifecycle.conftest import Lifecycle


def expected_worker_values() -> list[int]:
    """What scripts/lc_fork_train.py's workers log as ``w``, sorted."""
    pool = [1000 + 10 * task + k for task in range(8) for k in range(5)]
    processes = [2000 + 10 * i + k for i in range(2) for k in range(5)]
    forked = [3000 + k for k in range(5)]
    return sorted(pool + processes + forked)


def test_values_logged_by_forked_workers_all_arrive(lc: Lifecycle) -> None:
    """After the run, a fresh process sees every value every worker logged (55, none
    lost, none doubled) and the run Completed; the workspace still runs the next
    submit."""
    src = lc.source("lc_fork_train.py", "lc_train.py")
    (run_id,) = lc.submit(src, "lc_fork_train.py", experiment="fork")
    seen = lc.wait_completed(run_id, wait_s=30)[run_id]
    lc.assert_each_executed_once([run_id])
    assert seen["metrics"].get("parent") == 1, seen["metrics"]
    values = seen["metrics"].get("w")
    assert isinstance(values, list), seen["metrics"]
    assert sorted(values) == expected_worker_values(), (
        f"{len(values)} values of 'w' instead of 55; missing "
        f"{sorted(set(expected_worker_values()) - set(values))}"
    )

    (after,) = lc.submit(src, "lc_train.py", "--value", 5, experiment="fork")
    assert lc.wait_completed(after)[after]["metrics"]["value"] == 5
    lc.assert_each_executed_once([run_id, after])
