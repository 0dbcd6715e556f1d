"""Per-run system metrics: CPU and memory of the run's process tree, and its GPUs.

Sampled by the daemon into the run as ``sys/cpu_percent``, ``sys/memory_mb``,
``sys/gpu<i>/utilization`` and ``sys/gpu<i>/memory_used_mb`` (visible in
``get_metrics()``). Off with ``RUNNER_SYSTEM_METRICS_S=0`` or
``runner daemon start --system-metrics-s 0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

from runner.run import Run
from runner.service import gpus as gpu_mod
from runner.service.proc import process_tree

if TYPE_CHECKING:
    from runner.service.supervisor import RunSupervisor
    from runner.workspace import Workspace


class Sampler:
    """Keeps psutil.Process objects between samples (CPU % needs two readings)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.procs: dict[str, dict[int, psutil.Process]] = {}
        self.runs: dict[str, Run] = {}

    def sample(self, supervisors: list[RunSupervisor]) -> None:
        """One sample of every running run; forgets runs that ended."""
        live = set()
        for sup in supervisors:
            tree = sup.handle.local_tree() if sup.handle is not None else None
            if tree is None:  # on another host, or gone
                continue
            live.add(sup.run_id)
            known = self.procs.setdefault(sup.run_id, {})
            cpu = 0.0
            rss = 0
            for p in process_tree(tree.root):
                if p.pid == tree.root.pid and tree.root_is_runner:
                    continue  # the keeper is runner's, not the run's
                proc = known.setdefault(p.pid, p)
                try:
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            run = self.runs.get(sup.run_id)
            if run is None:
                run = self.runs[sup.run_id] = Run.get(self.ws, sup.run_id)
            run.log("sys/cpu_percent", round(cpu, 1))
            run.log("sys/memory_mb", round(rss / 2**20, 1))
            for idx in sup.gpu_ids:
                for key, value in gpu_mod.sample(idx).items():
                    run.log(f"sys/gpu{idx}/{key}", value)
        for gone in set(self.procs) - live:
            self.procs.pop(gone, None)
            self.runs.pop(gone, None)
