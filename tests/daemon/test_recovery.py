"""Recovery: kill -9 the daemon while runs are Running and Queued, start it again.

Running runs are re-adopted (logs, metrics, heartbeats and completion go on being
recorded), queued runs stay Queued and start in their order, no run is duplicated or
lost (each gb_* script records its start exclusively: a second execution would fail),
and GPU reservations are rebuilt from what runs. A run whose process vanished while no
daemon watched ends Failed with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from runner import daemon_client
from runner.errors import RunFailedError
from runner.run import Run
from tests.daemon.conftest import (
    Box,
    FakeGpus,
    configure,
    daemon_status,
    kill_daemon,
    raw_status,
    wait_details,
    wait_status,
)
from tests.helpers import StatusRecorder, daemon_pid, heartbeat_of, wait_until

HEARTBEAT_S = 0.2


@pytest.fixture(autouse=True)
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every 0.2 s (NotResponding after 0.6 s), for the daemons this test
    starts and for this process's judgement of them."""
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", str(HEARTBEAT_S))


def heartbeat(run: Run) -> float:
    return heartbeat_of(run)


def driver_log(run: Run) -> str:
    path = f"driver-{run.id}.log"
    run.download_file("azureml-logs/70_driver_log.txt", path)
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_running_runs_are_readopted_and_queued_runs_keep_their_order(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, gpus="0,1", max_concurrent=0)
    with StatusRecorder(box.ws) as recorder:
        r_a, r_b = box.submit(gpu_count=1), box.submit(gpu_count=1)
        box.wait_started(r_a)
        box.wait_started(r_b)
        queued = [box.submit(gpu_count=1) for _ in range(3)]
        wait_details(queued[-1], "2 run(s) ahead in the queue")
        before = daemon_status(box.ws.path)
        assert before["queue"] == [r.id for r in queued]
        # The run on GPU 0 keeps running; the one on GPU 1 will end while no daemon
        # watches. Were GPU 0 not taken back first, the queue would get it.
        keeps, ends = sorted([r_a, r_b], key=lambda r: min(box.gpus_of(r)))
        assert box.gpus_of(keeps) == {0}

        old_pid = kill_daemon(box.ws.path)
        box.release(ends)  # it finishes (exit 0) with nobody watching
        wait_until(lambda: box.ended(ends), 30, message="the unwatched run to end")
        assert raw_status(ends)[0] == "Running"  # nobody recorded it yet
        assert [raw_status(r)[0] for r in queued] == ["Queued"] * 3
        last_beat = heartbeat(keeps)

        daemon_client.ensure_daemon(box.ws.path)
        assert daemon_pid(box.ws.path) != old_pid
        # The unwatched run is finalized with its real exit code...
        ends.wait_for_completion(raise_on_error=True)
        assert "after release" in driver_log(ends)
        # ...the first queued run takes its GPU, the others wait, in order.
        box.wait_started(queued[0])
        assert box.gpus_of(queued[0]) == {1}
        after = daemon_status(box.ws.path)
        assert after["slots"] == {keeps.id: [0], queued[0].id: [1]}
        assert after["queue"] == [r.id for r in queued[1:]]
        # The run that kept running is adopted: heartbeats resume, then it completes with
        # its logs and metrics from before and after the restart.
        wait_until(lambda: heartbeat(keeps) > last_beat, 10, message="heartbeats to resume")
        assert keeps.get_status() == "Running"
        box.release(keeps)
        keeps.wait_for_completion(raise_on_error=True)
        log = driver_log(keeps)
        assert log.index("before release") < log.index("after release")
        assert keeps.get_metrics()["phase"] == [1, 2]
        # Its GPU goes to the next queued run in line; then the last gets the other.
        box.wait_started(queued[1])
        assert box.gpus_of(queued[1]) == {0}
        assert raw_status(queued[2])[0] == "Queued"
        assert daemon_status(box.ws.path)["queue"] == [queued[2].id]
        box.release(queued[0])
        box.wait_started(queued[2])
        assert box.gpus_of(queued[2]) == {1}
        box.release(queued[1], queued[2])
        for run in queued:
            run.wait_for_completion(raise_on_error=True)
        wait_until(
            lambda: all(recorder.seen[r.id][-1] == "Completed" for r in queued),
            10,
            message="the recorder to see the queued runs end",
        )
    # Nothing ran twice (a second start would have failed the run), nothing was lost,
    # and no queued run went back to Preparing.
    runs = list(box.exp.get_runs())
    assert len(runs) == 5
    assert {r.get_status() for r in runs} == {"Completed"}
    for run in queued:
        history = recorder.seen[run.id]
        since_queued = history[history.index("Queued") :]
        assert not {"Starting", "Preparing"} & set(since_queued), history
        assert since_queued[-1] == "Completed", history


def test_gpu_reservations_are_rebuilt_before_queued_runs_start(
    box: Box, fake_gpus: FakeGpus
) -> None:
    """A queued run older than a running one (it waits for more GPUs than are free, the
    younger one backfilled): after the restart it still waits, and sees the GPUs taken."""
    configure(box.ws, gpus="0,1,2", max_concurrent=0)
    first = box.submit(gpu_count=1)
    box.wait_started(first)
    big = box.submit(gpu_count=3)
    wait_details(big, "waiting for 3 GPU(s): 2 of 3 free")
    backfilled = box.submit(gpu_count=1)
    box.wait_started(backfilled)
    held = {first.id: sorted(box.gpus_of(first)), backfilled.id: sorted(box.gpus_of(backfilled))}
    kill_daemon(box.ws.path)
    daemon_client.ensure_daemon(box.ws.path)
    status = daemon_status(box.ws.path)  # as soon as the new daemon answers
    assert status["slots"] == held
    assert status["queue"] == [big.id]
    assert status["freeGpus"] == [2]
    box.release(first, backfilled)
    box.wait_started(big)
    assert box.gpus_of(big) == {0, 1, 2}
    box.release(big)
    for run in (first, backfilled, big):
        run.wait_for_completion(raise_on_error=True)


def test_a_status_check_of_a_silent_run_restarts_the_daemon_which_readopts_it(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, max_concurrent=0)
    run = box.submit(gpu_count=2)
    box.wait_started(run)
    queued = box.submit(gpu_count=3)
    wait_status(queued, "Queued")
    old = kill_daemon(box.ws.path)
    stale_after = HEARTBEAT_S * 3
    wait_until(lambda: time.time() - heartbeat(run) > stale_after, 10, message="a stale heartbeat")
    assert run.get_status() in ("NotResponding", "Running")  # this check starts a daemon
    new = wait_until(lambda: daemon_pid(box.ws.path), 10, message="a new daemon")
    assert new != old
    wait_until(lambda: run.get_status() == "Running", 10, message="the run to be Running again")
    assert daemon_status(box.ws.path)["slots"][run.id] == sorted(box.gpus_of(run))
    box.release(run)
    run.wait_for_completion(raise_on_error=True)
    box.wait_started(queued)
    box.release(queued)
    queued.wait_for_completion(raise_on_error=True)


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_tree(pid: int) -> None:
    """kill -9 a process and its descendants; return once all are gone (or zombies)."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    wait_until(lambda: all(map(_gone, procs)), 10, message="the run's processes to die")


def test_a_run_whose_process_vanished_unwatched_fails_with_the_reason(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, max_concurrent=0)
    run = box.submit(gpu_count=4)
    box.wait_started(run)
    queued = box.submit(gpu_count=1)
    wait_status(queued, "Queued")
    kill_daemon(box.ws.path)
    ((handle,),) = run._store.query("SELECT handle FROM runs WHERE id = ?", (run.id,))
    _kill_tree(int(json.loads(handle)["pid"]))  # the keeper and the script: no exit code
    daemon_client.ensure_daemon(box.ws.path)
    with pytest.raises(RunFailedError, match=r"ended while no supervisor watched it"):
        run.wait_for_completion(raise_on_error=True)
    error = run.get_details()["error"]["error"]
    assert error["kind"] == "lost"
    assert error["exitCode"] is None
    assert "before release" in error["logTail"]
    # Its GPUs are free again: the queued run starts.
    box.wait_started(queued)
    box.release(queued)
    queued.wait_for_completion(raise_on_error=True)


def test_an_unwatched_run_that_failed_keeps_its_exit_code(box: Box, fake_gpus: FakeGpus) -> None:
    configure(box.ws, max_concurrent=0)
    run = box.exp.submit(box.config("gb_hold.py", [5], gpu_count=1))
    box.wait_started(run)
    kill_daemon(box.ws.path)
    box.release(run)
    wait_until(lambda: box.ended(run), 30, message="the run to end")
    daemon_client.ensure_daemon(box.ws.path)
    with pytest.raises(RunFailedError, match=r"the script exited with code 5"):
        run.wait_for_completion(raise_on_error=True)
    assert run.get_details()["error"]["error"]["exitCode"] == 5


def test_cancel_while_no_daemon_runs_reaches_running_and_queued_runs(
    box: Box, fake_gpus: FakeGpus
) -> None:
    configure(box.ws, max_concurrent=1)
    running = box.submit(gpu_count=1)
    box.wait_started(running)
    queued = box.submit(gpu_count=1)
    wait_status(queued, "Queued")
    kill_daemon(box.ws.path)
    pid = box.started(running)["pid"]  # type: ignore[index]
    queued.cancel()  # starts a daemon, which re-adopts the running run
    running.cancel()
    wait_status(queued, "Canceled")
    wait_status(running, "Canceled")
    assert _gone(psutil.Process(pid)) if psutil.pid_exists(pid) else True
    assert box.started(queued) is None
    assert box.ended(running) is None
    wait_until(lambda: daemon_status(box.ws.path)["slots"] == {}, 10, message="slots freed")


def _as_if_killed_while_launching(run: Run) -> None:
    """Put the run back to what a daemon killed between starting the run's keeper and
    recording its handle leaves: the launch recorded, no handle."""
    ((handle,),) = run._store.query("SELECT handle FROM runs WHERE id = ?", (run.id,))
    described = json.loads(handle)
    launching = {"kind": "launching", "target": "local", "daemon": "gone", "gpus": ""}
    with run._store.write() as conn:
        conn.execute(
            "UPDATE runs SET handle = ?, status = 'Queued' WHERE id = ?",
            (json.dumps(launching), run.id),
        )
    assert described["keeper"] == "1"


def test_a_run_whose_launch_was_not_recorded_is_found_through_its_keeper(
    box: Box, fake_gpus: FakeGpus
) -> None:
    """The next daemon finds the keeper through the run's 'started' file, re-adopts the
    run (never starting it again: gb_hold records its start exclusively) and sees it end."""
    run = box.submit()
    box.wait_started(run)
    kill_daemon(box.ws.path)
    _as_if_killed_while_launching(run)
    daemon_client.ensure_daemon(box.ws.path)
    wait_status(run, "Running")
    box.release(run)
    assert run.wait_for_completion()["status"] == "Completed"
    assert box.ended(run) is not None


def test_a_run_whose_launch_left_no_process_ends_failed_and_is_not_started_again(
    box: Box, fake_gpus: FakeGpus
) -> None:
    """No 'started' file and no keeper: the run ends Failed saying it was not started
    again; its script ran once (the first time) and never again."""
    run = box.submit()
    box.wait_started(run)
    kill_daemon(box.ws.path)
    ((handle,),) = run._store.query("SELECT handle FROM runs WHERE id = ?", (run.id,))
    _kill_tree(int(json.loads(handle)["pid"]))
    _as_if_killed_while_launching(run)
    (box.ws.run_dir(run.id) / "started").unlink()
    daemon_client.ensure_daemon(box.ws.path)
    with pytest.raises(RunFailedError, match=r"not started again"):
        run.wait_for_completion(raise_on_error=True)
