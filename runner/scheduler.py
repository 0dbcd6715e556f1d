"""Who runs next: GPU slots and a concurrency limit, in priority then FIFO order.

Greedy in order with backfill: the queue is walked from the front (higher priority
first, then older first) and every run whose request fits what is free starts, so no GPU
sits idle while a run that fits it waits. A big request at the front does not block
smaller ones behind it (it may wait longer; that is the price of never idling).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Ticket:
    """A run waiting for resources; orders by (priority descending, then age)."""

    sort_key: tuple[int, float, str]
    run_id: str = field(compare=False)
    gpu_count: int = field(compare=False)


class Scheduler:
    """GPU and concurrency slots for the runs of one daemon."""

    def __init__(self, gpus: list[int], max_concurrent: int | None) -> None:
        self.cond = threading.Condition()
        self.all_gpus = sorted(gpus)
        self.free_gpus = sorted(gpus)
        self.max_concurrent = max_concurrent
        self.running: dict[str, tuple[int, ...]] = {}
        self.waiting: list[Ticket] = []

    def configure(self, gpus: list[int] | None = None, max_concurrent: int | None = -1) -> None:
        """Change the GPU set or the limit; runs holding GPUs keep them."""
        with self.cond:
            if gpus is not None:
                held = {g for ids in self.running.values() for g in ids}
                self.all_gpus = sorted(gpus)
                self.free_gpus = [g for g in self.all_gpus if g not in held]
            if max_concurrent != -1:
                self.max_concurrent = max_concurrent
            self.cond.notify_all()

    def reserve(self, run_id: str, gpu_ids: tuple[int, ...]) -> None:
        """Record a run that already runs (re-adopted after a restart) and its GPUs."""
        with self.cond:
            self.running[run_id] = gpu_ids
            self.free_gpus = [g for g in self.free_gpus if g not in gpu_ids]

    def release(self, run_id: str) -> None:
        """A run ended: its slot and GPUs are free again."""
        with self.cond:
            ids = self.running.pop(run_id, ())
            self.free_gpus = sorted(set(self.free_gpus) | {g for g in ids if g in self.all_gpus})
            self.cond.notify_all()

    def poke(self) -> None:
        """Wake waiters (a cancel arrived)."""
        with self.cond:
            self.cond.notify_all()

    def _startable(self, ticket: Ticket) -> bool:
        free = len(self.free_gpus)
        slots = None if self.max_concurrent is None else self.max_concurrent - len(self.running)
        for t in sorted(self.waiting):
            fits = t.gpu_count <= free and (slots is None or slots > 0)
            if fits:
                if t is ticket:
                    return True
                free -= t.gpu_count
                if slots is not None:
                    slots -= 1
        return False

    def _why(self, ticket: Ticket) -> str:
        ahead = sorted(self.waiting).index(ticket)
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
        if ahead:
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

        Raises ValueError when the request can never be met on this machine.
        """
        if gpu_count > len(self.all_gpus):
            raise ValueError(
                f"the run asks for {gpu_count} GPU(s) (run_config.gpu_count) but this daemon "
                f"has {len(self.all_gpus)}: {self.all_gpus}"
            )
        ticket = Ticket(sort_key, run_id, gpu_count)
        with self.cond:
            self.waiting.append(ticket)
            said = ""
            try:
                while True:
                    if canceled():
                        return None
                    if self._startable(ticket):
                        ids = tuple(self.free_gpus[:gpu_count])
                        self.free_gpus = self.free_gpus[gpu_count:]
                        self.running[run_id] = ids
                        return ids
                    why = self._why(ticket)
                    if why != said:
                        said = why
                        self.cond.release()
                        try:
                            on_wait(why)
                        finally:
                            self.cond.acquire()
                        continue
                    self.cond.wait(5.0)
            finally:
                self.waiting.remove(ticket)
                self.cond.notify_all()

    def snapshot(self) -> dict[str, object]:
        """What `runner daemon status` shows."""
        with self.cond:
            return {
                "gpus": self.all_gpus,
                "freeGpus": list(self.free_gpus),
                "maxConcurrent": self.max_concurrent,
                "running": {rid: list(ids) for rid, ids in self.running.items()},
                "queue": [t.run_id for t in sorted(self.waiting)],
            }
