"""Per-run system metrics: CPU and memory of the run's process tree, and its GPUs, sampled
by the daemon into the run as ``sys/...`` metrics; off with one setting."""

from __future__ import annotations

from typing import Any

import pytest

from runner import daemon_client
from runner.run import Run
from tests.daemon.conftest import Box, FakeGpus, configure, daemon_status
from tests.helpers import wait_until


def values(metrics: dict[str, Any], name: str) -> list[Any]:
    """A metric as a list (one value comes back as a scalar)."""
    value = metrics.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def test_gpu_cpu_and_memory_of_the_process_tree_are_sampled_into_the_run(
    box: Box, fake_gpus: FakeGpus
) -> None:
    # Each fake GPU reports its own load, so the samples show which GPU was read.
    fake_gpus.set_load({i: (1000 * (i + 1), 10 * (i + 1)) for i in range(4)})
    configure(box.ws, max_concurrent=0, system_metrics_s=0.1)
    other = box.submit(gpu_count=1)  # takes a GPU, so the measured run gets another
    box.wait_started(other)
    run = box.exp.submit(box.config("gb_memory.py", [64], gpu_count=2))
    view = box.wait_started(run)
    assert view["mb"] == 64  # the child holds 64 MiB; its parent waits beside it
    (mine_a, mine_b) = sorted(box.gpus_of(run))

    def sampled() -> dict[str, Any] | None:
        metrics = run.get_metrics()
        big_enough = [v for v in values(metrics, "sys/memory_mb") if v >= 64]
        has_gpus = all(f"sys/gpu{i}/utilization" in metrics for i in (mine_a, mine_b))
        return metrics if big_enough and has_gpus else None

    metrics = wait_until(sampled, 30, message="samples that count the child's memory")
    assert metrics is not None
    box.release(run, other)
    run.wait_for_completion(raise_on_error=True)
    other.wait_for_completion(raise_on_error=True)
    for i in (mine_a, mine_b):
        assert set(values(metrics, f"sys/gpu{i}/utilization")) == {10.0 * (i + 1)}
        assert set(values(metrics, f"sys/gpu{i}/memory_used_mb")) == {1000.0 * (i + 1)}
    gpu_names = {k for k in metrics if k.startswith("sys/gpu")}
    assert gpu_names == {
        f"sys/gpu{i}/{what}" for i in (mine_a, mine_b) for what in ("utilization", "memory_used_mb")
    }, "a run is sampled on its own GPUs only"
    cpu = values(metrics, "sys/cpu_percent")
    assert cpu
    assert all(isinstance(v, float) and v >= 0 for v in cpu)
    # The samples are ordinary metrics of the run (v1's get_metrics), kept after it ends.
    final = Run.get(box.ws, run.id).get_metrics()
    assert len(values(final, "sys/memory_mb")) >= len(values(metrics, "sys/memory_mb"))
    (theirs,) = box.gpus_of(other)
    assert {k for k in other.get_metrics() if k.startswith("sys/gpu")} <= {
        f"sys/gpu{theirs}/utilization",
        f"sys/gpu{theirs}/memory_used_mb",
    }


def _heartbeats(run: Run, count: int) -> None:
    """Wait until the daemon has sent ``count`` more heartbeats for the run."""
    seen: set[float] = set()

    def enough() -> bool:
        row = run._store.get_run(run.id)
        if row is not None and row.heartbeat_utc:
            seen.add(float(row.heartbeat_utc))
        return len(seen) >= count

    wait_until(enough, 30, message=f"{count} heartbeats of run {run.id}")


@pytest.mark.parametrize("how", ["settings file", "environment variable"])
def test_one_setting_turns_system_metrics_off(
    box: Box, fake_gpus: FakeGpus, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", "0.05")
    if how == "settings file":
        monkeypatch.setenv("RUNNER_SYSTEM_METRICS_S", "0.05")  # the file wins
        configure(box.ws, system_metrics_s=0)
    else:
        monkeypatch.setenv("RUNNER_SYSTEM_METRICS_S", "0")
    daemon_client.ensure_daemon(box.ws.path)
    assert daemon_status(box.ws.path)["systemMetricsSeconds"] == 0
    run = box.submit(gpu_count=1)
    box.wait_started(run)
    _heartbeats(run, 10)  # half a second: many sampling periods, had sampling been on
    box.release(run)
    run.wait_for_completion(raise_on_error=True)
    assert run.get_metrics() == {"phase": [1, 2]}


def test_metrics_are_sampled_at_the_configured_interval_by_default_setting(
    box: Box, fake_gpus: FakeGpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SYSTEM_METRICS_S", "0.05")
    daemon_client.ensure_daemon(box.ws.path)
    assert daemon_status(box.ws.path)["systemMetricsSeconds"] == 0.05
    run = box.submit(gpu_count=0)
    box.wait_started(run)
    wait_until(lambda: len(values(run.get_metrics(), "sys/cpu_percent")) >= 3, 30)
    box.release(run)
    run.wait_for_completion(raise_on_error=True)
    assert not any(k.startswith("sys/gpu") for k in run.get_metrics())  # it has no GPU
