"""GPU slots through the daemon: concurrent runs record the CUDA_VISIBLE_DEVICES they got.

Four fake GPUs (the daemon discovers them through nvidia-ml-py); each run is a real
process that records its GPU view and holds its GPUs until the test releases it.
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
from typing import Any

import pytest

from runner import daemon_client
from runner.cli import main as cli_main
from runner.run import Run
from tests.daemon.conftest import (
    Box,
    FakeGpus,
    configure,
    daemon_log,
    daemon_status,
    raw_status,
    wait_details,
    wait_status,
)
from tests.helpers import wait_until


def assert_no_shared_gpu(box: Box, runs: list[Run]) -> None:
    """No two runs whose lives overlapped held the same GPU."""
    spans = {}
    for run in runs:
        start, end = box.started(run), box.ended(run)
        assert start is not None, f"run {run.id} never started"
        assert end is not None, f"run {run.id} never ended"
        spans[run.id] = (box.gpus_of(run), start["time"], end["time"])
    for (a, (ga, sa, ea)), (b, (gb, sb, eb)) in itertools.combinations(spans.items(), 2):
        if ga & gb:
            assert ea <= sb or eb <= sa, f"{a} and {b} shared GPU(s) {ga & gb} at the same time"


def test_each_run_sees_only_its_own_gpus(box: Box, fake_gpus: FakeGpus) -> None:
    configure(box.ws, max_concurrent=0)
    two = box.submit(gpu_count=2)
    one_a = box.submit(gpu_count=1)
    one_b = box.submit(gpu_count=1)
    none = box.submit(gpu_count=0)
    views = {run.id: box.wait_started(run) for run in (two, one_a, one_b, none)}
    got = {run.id: box.gpus_of(run) for run in (two, one_a, one_b)}
    assert [len(got[r.id]) for r in (two, one_a, one_b)] == [2, 1, 1]
    assert set().union(*got.values()) == {0, 1, 2, 3}, got  # disjoint, all four used
    for run in (two, one_a, one_b):
        view = views[run.id]
        assert view["nvidia"] == view["cuda"]  # containers see the same GPUs
        assert view["order"] == "PCI_BUS_ID"  # CUDA numbers them as NVML does
    assert views[none.id]["cuda"] == ""  # a run without GPUs sees none
    assert views[none.id]["nvidia"] == "void"
    status = daemon_status(box.ws.path)
    assert status["freeGpus"] == []
    assert {rid: set(ids) for rid, ids in status["slots"].items()} == {
        **got,
        none.id: set(),
    }
    box.release(two, one_a, one_b, none)
    for run in (two, one_a, one_b, none):
        run.wait_for_completion(raise_on_error=True)
    # The GPUs are free again once the runs are finalized.
    wait_until(lambda: daemon_status(box.ws.path)["freeGpus"] == [0, 1, 2, 3], 10)


def test_two_runs_share_a_gpu_only_when_asked(box: Box, fake_gpus: FakeGpus) -> None:
    configure(box.ws, max_concurrent=0)
    owner = box.submit(gpu_count=1)
    box.wait_started(owner)
    (gpu,) = box.gpus_of(owner)
    # Naming the GPUs in environment_variables is asking to share: runner leaves them be.
    sharer = box.exp.submit(box.config(env={"CUDA_VISIBLE_DEVICES": str(gpu)}))
    assert box.wait_started(sharer)["cuda"] == str(gpu)
    status = daemon_status(box.ws.path)
    assert status["slots"][sharer.id] == []  # it holds no GPU: no one else is kept waiting
    assert len(status["freeGpus"]) == 3
    box.release(owner, sharer)
    for run in (owner, sharer):
        run.wait_for_completion(raise_on_error=True)


def test_queued_runs_say_what_they_wait_for_and_backfill_free_gpus(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, max_concurrent=0)
    holders = [box.submit(gpu_count=2), box.submit(gpu_count=1), box.submit(gpu_count=1)]
    for run in holders:
        box.wait_started(run)
    big = box.submit(gpu_count=2)
    wait_status(big, "Queued")
    small = box.submit(gpu_count=1)
    details = wait_details(big, "waiting for 2 GPU(s): 0 of 4 free")
    assert big.get_detailed_status() == {"status": "Queued", "details": details}
    wait_details(small, "waiting for 1 GPU(s): 0 of 4 free; 1 run(s) ahead in the queue")
    assert daemon_status(box.ws.path)["queue"] == [big.id, small.id]

    # One GPU comes free: the big run cannot use it, the small one behind it takes it.
    one_gpu = holders[1]
    freed = box.gpus_of(one_gpu)
    box.release(one_gpu)
    box.wait_started(small)
    assert box.gpus_of(small) == freed
    assert raw_status(big)[0] == "Queued"
    wait_details(big, "waiting for 2 GPU(s): 0 of 4 free")

    # Another single GPU: still not enough for the big run (and nothing else waits).
    box.release(holders[2])
    wait_details(big, "waiting for 2 GPU(s): 1 of 4 free")
    assert daemon_status(box.ws.path)["queue"] == [big.id]

    # The two-GPU run ends: the big run starts, beside the small one.
    box.release(holders[0])
    box.wait_started(big)
    assert len(box.gpus_of(big)) == 2
    assert not box.gpus_of(big) & box.gpus_of(small)
    box.release(big, small)
    runs = [*holders, big, small]
    for run in runs:
        run.wait_for_completion(raise_on_error=True)
    assert_no_shared_gpu(box, runs)


def test_priority_first_then_submission_order(box: Box, fake_gpus: FakeGpus) -> None:
    configure(box.ws, max_concurrent=1)
    holder = box.submit(gpu_count=1)
    box.wait_started(holder)
    a = box.submit(gpu_count=1)
    b = box.submit(gpu_count=0)
    urgent = box.submit(gpu_count=1, priority=5)
    d = box.submit(gpu_count=2)
    late = box.submit(gpu_count=0, priority=-1)
    expected = [urgent, a, b, d, late]
    wait_until(
        lambda: daemon_status(box.ws.path)["queue"] == [r.id for r in expected],
        30,
        message="all five runs in the queue",
    )
    wait_details(late, "waiting for a run slot: 1 of 1 busy; 4 run(s) ahead in the queue")
    box.release(holder, *expected)  # each ends as soon as it starts
    for run in expected:
        run.wait_for_completion(raise_on_error=True)
    starts = sorted(expected, key=lambda r: box.started(r)["time"])  # type: ignore[index]
    assert [r.id for r in starts] == [r.id for r in expected]


def test_runs_list_and_daemon_status_show_the_queue_and_gpu_use(
    box: Box, fake_gpus: FakeGpus, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    configure(box.ws, max_concurrent=0)
    running = [box.submit(gpu_count=2), box.submit(gpu_count=2)]
    for run in running:
        box.wait_started(run)
    queued = [box.submit(gpu_count=1), box.submit(gpu_count=3)]
    for run in queued:
        wait_details(run, "GPU(s)")

    def call(*argv: str) -> Any:
        assert cli_main(["-w", str(box.ws.path), *argv]) == 0
        return json.loads(capsys.readouterr().out)

    listed = call("run", "list", "-e", box.exp.name, "--status", "Queued")
    assert {r["runId"] for r in listed} == {r.id for r in queued}
    assert {r["status"] for r in listed} == {"Queued"}
    status = call("daemon", "status")
    assert status["running"] is True
    assert status["gpus"] == [0, 1, 2, 3]
    assert status["freeGpus"] == []
    assert {rid: len(ids) for rid, ids in status["slots"].items()} == {r.id: 2 for r in running}
    assert status["queue"] == [r.id for r in queued]
    table_code = cli_main(["-w", str(box.ws.path), "daemon", "status", "-o", "table"])
    assert table_code == 0
    rows = dict(
        line.split(None, 1) for line in capsys.readouterr().out.splitlines()[2:] if " " in line
    )
    assert rows["running"].strip() == "true"
    assert rows["gpus"].strip() == "0, 1, 2, 3"
    assert rows["queue"].startswith(queued[0].id[:20])
    box.release(*running, *queued)
    for run in [*running, *queued]:
        run.wait_for_completion(raise_on_error=True)


def test_a_queued_run_canceled_never_starts_and_frees_its_place(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, max_concurrent=0)
    holder = box.submit(gpu_count=4)
    box.wait_started(holder)
    waiting = box.submit(gpu_count=1)
    behind = box.submit(gpu_count=1)
    wait_details(behind, "1 run(s) ahead in the queue")
    waiting.cancel()
    wait_status(waiting, "Canceled")
    wait_details(behind, "waiting for 1 GPU(s): 0 of 4 free", exact=True)
    assert daemon_status(box.ws.path)["queue"] == [behind.id]
    box.release(holder, behind)
    behind.wait_for_completion(raise_on_error=True)
    assert box.started(waiting) is None
    assert waiting.get_status() == "Canceled"


def test_many_runs_never_share_a_gpu_and_no_gpu_idles_while_work_waits(
    box: Box, fake_gpus: FakeGpus
) -> None:
    """24 runs of 0-3 GPUs, each held a random short while: they never overlap on a GPU,
    and no queued run that fits the free GPUs stays queued."""
    configure(box.ws, max_concurrent=0)
    rng = random.Random(5)
    wants = [rng.choice([0, 1, 1, 2, 3]) for _ in range(24)]
    runs = [box.submit(gpu_count=n) for n in wants]
    gpus_wanted = {r.id: n for r, n in zip(runs, wants)}
    stop = threading.Event()
    idle: dict[str, float] = {}  # run id -> since when it fitted the free GPUs but waited
    worst = [0.0]

    def watch() -> None:
        while not stop.is_set():
            status = daemon_status(box.ws.path)
            now = time.monotonic()
            free = len(status["freeGpus"])
            fitting = {rid for rid in status["queue"] if gpus_wanted.get(rid, 99) <= free}
            for rid in list(idle):
                if rid not in fitting:
                    worst[0] = max(worst[0], now - idle.pop(rid))
            for rid in fitting:
                idle.setdefault(rid, now)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        pending = list(runs)
        while pending:
            # One started run ends at random, as work would.
            started = wait_until(
                lambda: [r for r in pending if box.started(r) is not None],
                30,
                message="a run to start; daemon log:\n" + daemon_log(box.ws.path),
            )
            victim = rng.choice(started)
            box.release(victim)
            pending.remove(victim)
            wait_until(functools.partial(box.ended, victim), 30, message=f"{victim.id} to end")
    finally:
        stop.set()
        watcher.join(10)
    for run in runs:
        run.wait_for_completion(raise_on_error=True)
    assert_no_shared_gpu(box, runs)
    for run, n in zip(runs, wants):
        assert len(box.gpus_of(run)) == n
    # A fitting run may wait a moment for its thread to wake up, never for long.
    assert worst[0] < 0.5, f"a queued run that fitted the free GPUs waited {worst[0]:.2f} s"
    assert daemon_client.is_running(box.ws.path)
