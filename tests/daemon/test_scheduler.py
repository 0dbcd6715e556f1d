"""The scheduler on its own: GPU slots, the concurrency limit, priority then FIFO order,
backfill, cancel while waiting, and the places that a restarted daemon takes back.

Each waiting run is a real thread blocked in ``Scheduler.acquire``, as in the daemon.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from runner.service.scheduler import Scheduler
from tests.helpers import wait_until


class Waiter:
    """One run waiting in ``acquire`` on a thread of its own."""

    def __init__(
        self, sched: Scheduler, run_id: str, gpus: int, priority: int = 0, age: float = 0.0
    ) -> None:
        self.sched = sched
        self.run_id = run_id
        self.gpus = gpus
        self.order = (-priority, age, run_id)
        self.cancel = threading.Event()
        self.reasons: list[str] = []
        self.got: tuple[int, ...] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.got = self.sched.acquire(
                self.run_id, self.gpus, self.order, self.cancel.is_set, self.reasons.append
            )
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait_done(self) -> tuple[int, ...] | None:
        wait_until(self.done.is_set, 10, message=f"{self.run_id} to get its slot")
        return self.got


def queue(sched: Scheduler) -> list[str]:
    ids = sched.snapshot()["queue"]
    assert isinstance(ids, list)
    return [str(i) for i in ids]


def wait_queue(sched: Scheduler, run_ids: list[str]) -> None:
    wait_until(lambda: queue(sched) == run_ids, 10, message=f"the queue to be {run_ids}")


@pytest.fixture
def waiters() -> Iterator[list[Waiter]]:
    """Waiters a test started; any still blocked are canceled at teardown."""
    started: list[Waiter] = []
    yield started
    for w in started:
        w.cancel.set()
        w.sched.poke()
        w.thread.join(5)


def test_runs_get_disjoint_gpus_and_wait_when_none_are_free(waiters: list[Waiter]) -> None:
    sched = Scheduler([0, 1, 2, 3], None)
    a = Waiter(sched, "a", 2)
    b = Waiter(sched, "b", 1)
    waiters += [a, b]
    ga, gb = a.wait_done(), b.wait_done()
    assert ga is not None
    assert gb is not None
    assert len(ga) == 2
    assert len(gb) == 1
    assert not set(ga) & set(gb)
    c = Waiter(sched, "c", 2)
    waiters.append(c)
    wait_queue(sched, ["c"])
    wait_until(lambda: c.reasons, 10)
    assert c.reasons[-1] == "waiting for 2 GPU(s): 1 of 4 free"
    sched.release("b")
    gc = c.wait_done()
    assert gc is not None
    assert not set(gc) & set(ga)
    assert sched.snapshot()["freeGpus"] == []


def test_backfill_no_gpu_idles_while_a_run_that_fits_waits(waiters: list[Waiter]) -> None:
    sched = Scheduler([0, 1, 2, 3], None)
    sched.reserve("holder", (0, 1, 2))
    big = Waiter(sched, "big", 2, age=1.0)  # first in line, does not fit
    waiters.append(big)
    wait_queue(sched, ["big"])
    small = Waiter(sched, "small", 1, age=2.0)  # behind it, fits the free GPU
    waiters.append(small)
    assert small.wait_done() == (3,)
    # What it waits for is kept up to date as GPUs come and go.
    wait_until(lambda: big.reasons[-1:] == ["waiting for 2 GPU(s): 0 of 4 free"], 10)
    sched.release("holder")
    assert big.wait_done() == (0, 1)


def test_a_run_without_gpus_is_not_held_up_by_gpu_runs(waiters: list[Waiter]) -> None:
    sched = Scheduler([0], 3)
    sched.reserve("holder", (0,))
    gpu = Waiter(sched, "gpu", 1, age=1.0)
    cpu = Waiter(sched, "cpu", 0, age=2.0)
    waiters += [gpu, cpu]
    assert cpu.wait_done() == ()
    assert queue(sched) == ["gpu"]


def test_priority_first_then_first_in_first_out(waiters: list[Waiter]) -> None:
    sched = Scheduler([], 1)
    sched.reserve("holder", ())
    specs = [("a", 0, 1.0), ("b", 0, 2.0), ("c", 5, 3.0), ("d", 0, 4.0), ("e", -1, 0.5)]
    started_order: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def run(run_id: str, priority: int, age: float) -> None:
        got = sched.acquire(run_id, 0, (-priority, age, run_id), lambda: False, lambda _: None)
        assert got == ()
        with lock:
            started_order.append(run_id)
        sched.release(run_id)  # the run ends at once: the next one may start
        if len(started_order) == len(specs):
            done.set()

    # Arrive in a shuffled order: only priority and age decide.
    for spec in random.Random(7).sample(specs, len(specs)):
        threading.Thread(target=run, args=spec, daemon=True).start()
    wait_queue(sched, ["c", "a", "b", "d", "e"])
    sched.release("holder")
    wait_until(done.is_set, 10, message="every run to start")
    assert started_order == ["c", "a", "b", "d", "e"]


def test_the_concurrency_limit_counts_runs_with_and_without_gpus(waiters: list[Waiter]) -> None:
    sched = Scheduler([0, 1], 2)
    a, b = Waiter(sched, "a", 0), Waiter(sched, "b", 1)
    waiters += [a, b]
    a.wait_done()
    b.wait_done()
    c = Waiter(sched, "c", 1)
    waiters.append(c)
    wait_until(lambda: c.reasons, 10)
    assert c.reasons[-1] == "waiting for a run slot: 2 of 2 busy"
    sched.release("a")
    assert c.wait_done() == (1,)


def test_cancel_while_waiting_gives_up_the_place(waiters: list[Waiter]) -> None:
    sched = Scheduler([0], None)
    sched.reserve("holder", (0,))
    w = Waiter(sched, "w", 1)
    waiters.append(w)
    wait_queue(sched, ["w"])
    w.cancel.set()
    sched.poke()
    assert w.wait_done() is None
    assert queue(sched) == []
    assert sched.snapshot()["freeGpus"] == []


def test_a_request_larger_than_the_machine_is_refused() -> None:
    sched = Scheduler([0, 1], None)
    with pytest.raises(ValueError, match=r"asks for 3 GPU\(s\) .* this daemon has 2: \[0, 1\]"):
        sched.acquire("big", 3, (0, 0.0, "big"), lambda: False, lambda _: None)


def test_reserved_places_keep_their_order_after_a_restart(waiters: list[Waiter]) -> None:
    """A restarted daemon enqueues the queued runs in order before their threads start:
    a younger run whose thread arrives first does not jump ahead."""
    sched = Scheduler([0, 1], None)
    sched.reserve("adopted", (0,))  # still runs: its GPU is taken back first
    sched.enqueue("old", 1, (0, 1.0, "old"))
    sched.enqueue("young", 1, (0, 2.0, "young"))
    young = Waiter(sched, "young", 1, age=2.0)
    waiters.append(young)
    # The old run's place comes first: the free GPU is kept for it, not given to the
    # young run whose thread happened to arrive first.
    wait_until(lambda: young.reasons, 10)
    assert young.reasons[-1] == "waiting for 1 GPU(s): 0 of 2 free"
    assert queue(sched) == ["young"]
    old = Waiter(sched, "old", 1, age=1.0)
    waiters.append(old)
    assert old.wait_done() == (1,)
    sched.release("adopted")
    assert young.wait_done() == (0,)


def test_release_of_an_enqueued_run_that_never_arrives_frees_its_place(
    waiters: list[Waiter],
) -> None:
    sched = Scheduler([0], None)
    sched.enqueue("gone", 1, (0, 1.0, "gone"))  # its supervisor failed before acquire
    later = Waiter(sched, "later", 1, age=2.0)
    waiters.append(later)
    wait_until(lambda: later.reasons, 10)
    sched.release("gone")
    assert later.wait_done() == (0,)


def test_configure_keeps_the_gpus_of_running_runs(waiters: list[Waiter]) -> None:
    sched = Scheduler([0, 1, 2, 3], None)
    sched.reserve("r", (1,))
    sched.configure([0, 1], None)
    assert sched.snapshot()["freeGpus"] == [0]
    sched.release("r")
    assert sched.snapshot()["freeGpus"] == [0, 1]


def test_many_random_runs_never_share_a_gpu(waiters: list[Waiter]) -> None:
    """40 runs of 0-3 GPUs on 4 GPUs, at most 3 at once, holding their GPUs briefly."""
    sched = Scheduler([0, 1, 2, 3], 3)
    in_use: set[int] = set()
    running: set[str] = set()
    lock = threading.Lock()
    problems: list[str] = []
    rng = random.Random(11)
    plan = [(f"r{i:02d}", rng.randint(0, 3), rng.random() / 100) for i in range(40)]
    finished = threading.Semaphore(0)

    def run(run_id: str, count: int, hold_s: float) -> None:
        ids = sched.acquire(
            run_id, count, (0, float(run_id[1:]), run_id), lambda: False, lambda _: None
        )
        assert ids is not None
        with lock:
            if len(ids) != count or set(ids) & in_use:
                problems.append(f"{run_id} got {ids} while {sorted(in_use)} were in use")
            if len(running) >= 3:
                problems.append(f"{run_id} started while {sorted(running)} ran")
            in_use.update(ids)
            running.add(run_id)
        threading.Event().wait(hold_s)  # the run's work
        with lock:
            in_use.difference_update(ids)
            running.discard(run_id)
        sched.release(run_id)
        finished.release()

    for spec in plan:
        threading.Thread(target=run, args=spec, daemon=True).start()
    for _ in plan:
        assert finished.acquire(timeout=30)
    assert problems == []
    assert sched.snapshot()["freeGpus"] == [0, 1, 2, 3]
    assert sched.snapshot()["slots"] == {}
