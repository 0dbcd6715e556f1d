"""Who runs next: GPU slots and a concurrency limit, in priority then FIFO order.

Greedy in order with backfill: the queue is walked from the front (higher priority
first, then older first) and every run whose request fits what is free starts, so no GPU
sits idle while a run that fits it waits. A big request at the front does not block
smaller ones behind it (it may wait longer; that is the price of never idling).

A run that is still preparing its environment already has its place in line (``expect``):
while it could start, nothing behind it does, for up to ``PREPARE_HOLD_S``; runs submitted
one after the other start in that order, whichever supervisor thread is quicker. A run
whose environment takes longer (a build) lets the runs behind it go first.

One pass over the queue decides everything each time something changes (a run arrives,
ends, or gives up); each waiting run is woken only when it may start or when what it
waits for changes. Waking every waiter to let each re-check the queue would cost
O(queue) wake-ups per change, O(queue²) for a queue to drain: minutes for 1,000 runs.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Positions up to this are shown exactly in what a queued run waits for; behind them
#: "N or more": a long queue then costs no status update per queued run per start.
EXACT_POSITIONS = 10
#: A queued run's place in line is reported at most this often (what it waits for, at
#: once): a fast-moving queue would otherwise cost a database write per run per start.
POSITION_REFRESH_S = 0.5
#: How long a preparing run holds back the runs behind it (an environment from the cache
#: is ready in milliseconds; one that is being built may take minutes).
PREPARE_HOLD_S = 5.0


@dataclass(order=True)
class Ticket:
    """A run waiting for resources; orders by (priority descending, then age)."""

    sort_key: tuple[int, float, str]
    run_id: str = field(compare=False)
    gpu_count: int = field(compare=False)
    #: the GPUs it was given once it may start
    granted: tuple[int, ...] | None = field(default=None, compare=False)
    #: what it waits for, as get_detailed_status() says
    reason: str = field(default="", compare=False)
    #: set when it may start, when its reason changes, or on a cancel
    wake: threading.Event = field(default_factory=threading.Event, compare=False)
    #: while preparing (``expect``): until when (monotonic) it holds its turn against the
    #: runs behind it; 0.0 once that has passed; None when it is not preparing
    hold_until: float | None = field(default=None, compare=False)


def _waits_for(reason: str) -> str:
    """A wait reason without the place in the queue (its last part, when there is one)."""
    parts = reason.split("; ")
    return "; ".join(parts[:-1] if "run(s) ahead" in parts[-1] else parts)


class Scheduler:
    """GPU and concurrency slots for the runs of one daemon."""

    def __init__(self, gpus: list[int], max_concurrent: int | None) -> None:
        self.lock = threading.Lock()
        self.all_gpus = sorted(gpus)
        self.free_gpus = sorted(gpus)
        self.max_concurrent = max_concurrent
        self.running: dict[str, tuple[int, ...]] = {}
        self.waiting: list[Ticket] = []  #: sorted: the queue, front first

    def configure(self, gpus: list[int] | None = None, max_concurrent: int | None = -1) -> None:
        """Change the GPU set or the limit; runs holding GPUs keep them."""
        with self.lock:
            if gpus is not None:
                held = {g for ids in self.running.values() for g in ids}
                self.all_gpus = sorted(gpus)
                self.free_gpus = [g for g in self.all_gpus if g not in held]
            if max_concurrent != -1:
                self.max_concurrent = max_concurrent
            self._dispatch()

    def reserve(self, run_id: str, gpu_ids: tuple[int, ...]) -> None:
        """Record a run that already runs (re-adopted after a restart) and its GPUs.

        Starts nothing (it only takes resources), so reserving and enqueueing the runs an
        earlier daemon left, in any order, hands nothing out before all are known.
        """
        with self.lock:
            self.running[run_id] = gpu_ids
            self.free_gpus = [g for g in self.free_gpus if g not in gpu_ids]

    def enqueue(self, run_id: str, gpu_count: int, sort_key: tuple[int, float, str]) -> None:
        """Hold a queued run's place before its supervisor gets to ``acquire``.

        A restarted daemon starts one supervisor thread per queued run; whichever thread
        reached ``acquire`` first would otherwise take a free slot, whatever the order.
        Nothing is handed out here: the daemon reserves what still runs first.
        """
        with self.lock:
            if run_id not in self.running and self._ticket(run_id) is None:
                bisect.insort(self.waiting, Ticket(sort_key, run_id, gpu_count))

    def expect(self, run_id: str, gpu_count: int, sort_key: tuple[int, float, str]) -> None:
        """Give a run that is still preparing its place in line (see the module docstring).

        Nothing is handed out here; ``acquire`` (preparation done) or ``release`` (it ended
        before) ends the hold.
        """
        with self.lock:
            if run_id not in self.running and self._ticket(run_id) is None:
                ticket = Ticket(sort_key, run_id, gpu_count)
                ticket.hold_until = time.monotonic() + PREPARE_HOLD_S
                bisect.insort(self.waiting, ticket)

    def release(self, run_id: str) -> None:
        """A run ended (or gave up its place in the queue): its slot and GPUs are free."""
        with self.lock:
            self._drop(run_id)
            self._dispatch()

    def poke(self, run_id: str | None = None) -> None:
        """Wake a waiting run (every one without ``run_id``): a cancel arrived."""
        with self.lock:
            for t in self.waiting:
                if run_id is None or t.run_id == run_id:
                    t.wake.set()

    def _ticket(self, run_id: str) -> Ticket | None:
        return next((t for t in self.waiting if t.run_id == run_id), None)

    def _drop(self, run_id: str) -> None:
        """Forget a run: its place in the queue, its slot and its GPUs (lock held)."""
        self.waiting = [t for t in self.waiting if t.run_id != run_id]
        ids = self.running.pop(run_id, ())
        self.free_gpus = sorted(set(self.free_gpus) | {g for g in ids if g in self.all_gpus})

    def _dispatch(self) -> None:
        """Start every waiting run that fits, front first; say why the others wait.

        Lock held. A started run gets the lowest free GPU indices.
        """
        still: list[Ticket] = []
        now = time.monotonic()
        for i, t in enumerate(self.waiting):
            slot_free = self.max_concurrent is None or len(self.running) < self.max_concurrent
            if not slot_free:  # nothing else can start
                still.extend(self.waiting[i:])
                break
            if t.hold_until is not None:  # still preparing: never handed a slot here
                if 0.0 < t.hold_until <= now:
                    t.hold_until = 0.0  # preparing for long: it no longer holds its turn
                if t.hold_until > now and t.gpu_count <= len(self.free_gpus):
                    still.extend(self.waiting[i:])  # it could start: keep its turn
                    break
                still.append(t)
            elif t.gpu_count <= len(self.free_gpus):
                ids = tuple(self.free_gpus[: t.gpu_count])
                self.free_gpus = self.free_gpus[t.gpu_count :]
                self.running[t.run_id] = ids
                t.granted = ids
                t.wake.set()
            else:
                still.append(t)
        self.waiting = still
        far: dict[int, str] = {}  # behind EXACT_POSITIONS the reason depends on the request only
        for position, t in enumerate(still):
            if t.hold_until is not None:
                continue  # preparing: it has no waiting reason to show yet
            if position < EXACT_POSITIONS:
                reason = self._why(t, position)
            else:
                reason = far.get(t.gpu_count) or far.setdefault(t.gpu_count, self._why(t, position))
            if reason != t.reason:
                t.reason = reason
                t.wake.set()

    def _why(self, ticket: Ticket, ahead: int) -> str:
        parts = []
        if ticket.gpu_count > len(self.free_gpus):
            parts.append(
                f"waiting for {ticket.gpu_count} GPU(s): {len(self.free_gpus)} of "
                f"{len(self.all_gpus)} free"
            )
        if self.max_concurrent is not None and len(self.running) >= self.max_concurrent:
            parts.append(
                f"waiting for a run slot: {len(self.running)} of {self.max_concurrent} busy"
            )
        if not parts:
            parts.append("waiting for runs ahead of it")
        if ahead >= EXACT_POSITIONS:
            parts.append(f"{EXACT_POSITIONS} or more run(s) ahead in the queue")
        elif ahead:
            parts.append(f"{ahead} run(s) ahead in the queue")
        return "; ".join(parts)

    def acquire(
        self,
        run_id: str,
        gpu_count: int,
        sort_key: tuple[int, float, str],
        canceled: Callable[[], bool],
        on_wait: Callable[[str], None],
    ) -> tuple[int, ...] | None:
        """Block until the run may start; its GPU ids, or None if it was canceled meanwhile.

        ``on_wait`` is called (outside the lock) with what the run waits for, each time
        that changes. Raises ValueError when the request can never be met on this machine.
        """
        if gpu_count > len(self.all_gpus):
            raise ValueError(
                f"the run asks for {gpu_count} GPU(s) (run_config.gpu_count) but this daemon "
                f"has {len(self.all_gpus)}: {self.all_gpus}"
            )
        with self.lock:
            ticket = self._ticket(run_id)
            if ticket is None and run_id not in self.running:
                ticket = Ticket(sort_key, run_id, gpu_count)
                bisect.insort(self.waiting, ticket)
                self._dispatch()
            elif ticket is not None:
                ticket.hold_until = None  # prepared: it waits like any queued run now
                ticket.gpu_count = gpu_count
                self._dispatch()  # a place held since a restart or while preparing
        said, said_at = "", 0.0
        while True:
            with self.lock:
                if ticket is None or ticket.granted is not None:
                    if canceled():  # given a slot, but canceled meanwhile: hand it back
                        self._drop(run_id)
                        self._dispatch()
                        return None
                    return self.running.get(run_id, ())
                if canceled():
                    self._drop(run_id)
                    self._dispatch()
                    return None
                ticket.wake.clear()
                why = ticket.reason
                timeout = self._until_hold_ends()
                if timeout == 0.0:  # a preparing run's hold ran out: the queue moves on
                    self._dispatch()
                    continue
            timeout = min(timeout, 5.0)
            if why != said:
                since = time.monotonic() - said_at
                # What it waits for is told at once; a mere move up the queue, not more
                # often than POSITION_REFRESH_S.
                if _waits_for(why) != _waits_for(said) or since >= POSITION_REFRESH_S:
                    said, said_at = why, time.monotonic()
                    on_wait(why)
                    continue
                timeout = min(timeout, POSITION_REFRESH_S - since)
            ticket.wake.wait(timeout)

    def _until_hold_ends(self) -> float:
        """Seconds until the first hold of a preparing run expires (lock held); 0 if one has,
        5 if there is none."""
        holds = [t.hold_until for t in self.waiting if t.hold_until]
        if not holds:
            return 5.0
        return max(0.0, min(holds) - time.monotonic())

    def snapshot(self) -> dict[str, object]:
        """What `runner daemon status` shows.

        ``slots``: the runs that hold a slot, each with its GPUs (not named "running":
        the CLI's ``running`` says whether the daemon runs).
        """
        with self.lock:
            return {
                "gpus": self.all_gpus,
                "freeGpus": list(self.free_gpus),
                "maxConcurrent": self.max_concurrent,
                "slots": {rid: list(ids) for rid, ids in self.running.items()},
                "queue": [t.run_id for t in self.waiting],
            }
