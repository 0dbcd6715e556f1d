"""A Slurm job, followed from here through the login node: its state, log and journal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.remote_slurm import NEVER_STARTS
from targets.base import RunEvents
from targets.ssh.handle import SshHandle
from targets.ssh.session import AgentSession

if TYPE_CHECKING:
    from targets.slurm import SlurmTarget

#: Slurm states in which the job is held up, not running: the run is NotResponding.
STALLED = frozenset({"SUSPENDED", "PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
#: Ends that are the cluster's doing, not the script's: the run fails with them.
CLUSTER_FAILURES = {
    "NODE_FAIL": "a node of the job failed (NODE_FAIL)",
    "OUT_OF_MEMORY": "the job ran out of memory (OUT_OF_MEMORY)",
    "BOOT_FAIL": "a node of the job failed to boot (BOOT_FAIL)",
    "DEADLINE": "the job reached its deadline (DEADLINE)",
    "PREEMPTED_ENDED": "the job was preempted (PREEMPTED)",
}


class SlurmHandle(SshHandle):
    """A run submitted as a Slurm job (``SshHandle``'s follower, with Slurm's states)."""

    def __init__(
        self,
        target: SlurmTarget,
        run_id: str,
        events: RunEvents,
        session: AgentSession | None = None,
        *,
        job_id: str,
        time_limited: bool,
    ) -> None:
        self.job_id = job_id
        self.time_limited = time_limited  #: runner set --time from max_run_duration_seconds
        self.nodes = ""
        self.partition = ""
        self._canceling = False
        request = target.request()
        self.ranks = int(request["nodes"]) * int(request["tasks_per_node"])
        super().__init__(target, run_id, events, session)

    def _follow_request(self, hb_s: float) -> dict[str, Any]:
        """As for a host; a distributed run's ranks each resume their log and journal."""
        request = super()._follow_request(hb_s)
        if self.ranks > 1:
            offsets = {}
            for rank in range(self.ranks):
                log = self._rank_log(rank)
                offsets[f"log_{rank}"] = log.stat().st_size if log.exists() else 0
                stream = _journal_stream(rank)
                offsets[stream] = self.events.journal_offset(stream)
            request["offsets"] = offsets
        return request

    def _rank_log(self, rank: int) -> Path:
        """This machine's copy of one rank's log (``70_driver_log_<rank>.txt``)."""
        log = self.events.driver_log
        return log.with_name(f"{log.stem}_{rank}{log.suffix}")

    def _take(self, header: dict[str, Any], payload: bytes) -> None:
        stream = header.get("s")
        rank = header.get("r")
        if stream == "state":
            self._state(header)
        elif stream == "exit":
            self._ended(header)
        elif rank is not None and stream == "log":
            self._rank_lines(int(rank), int(header["o"]), payload)
            return
        elif rank is not None and stream == "journal":
            self.events.apply_journal(int(header["o"]), payload, _journal_stream(int(rank)))
            return
        super()._take(header, payload)

    def _rank_lines(self, rank: int, offset: int, payload: bytes) -> None:
        """A rank's lines: into its own log, and into the driver log marked ``[rank N]``
        (as a distributed run here shows them)."""
        log = self._rank_log(rank)
        size = log.stat().st_size if log.exists() else 0
        if offset + len(payload) <= size:
            return  # resent bytes we have
        new = payload[max(0, size - offset) :]
        with open(log, "ab") as f:
            f.write(new)
        marked = b"".join(f"[rank {rank}] ".encode() + line for line in new.splitlines(True))
        with open(self.events.driver_log, "ab") as f:
            f.write(marked)

    def _state(self, header: dict[str, Any]) -> None:
        state, reason = str(header.get("state") or ""), str(header.get("reason") or "")
        if header.get("nodes") and header.get("nodes") != "(null)":
            self.nodes = str(header["nodes"])
        self.partition = str(header.get("partition") or self.partition)
        events = self.events
        if state == "PENDING":
            shown = reason if reason not in ("", "None") else "not scheduled yet"
            why = f"Slurm job {self.job_id} is pending ({shown})"
            events.queued(why)
            if reason in NEVER_STARTS:
                events.ending(f"Slurm will never start job {self.job_id}: {reason}", kind="slurm")
                self.cancel(0)
        elif state in STALLED:
            why = f" ({reason})" if reason not in ("", "None") else ""
            events.stalled(f"Slurm job {self.job_id} is {state}{why}")
        elif state in ("RUNNING", "COMPLETING") or header.get("ran"):
            events.started()  # also for a job seen only ended, which ran

    def _ended(self, header: dict[str, Any]) -> None:
        state, reason = str(header.get("state") or ""), str(header.get("reason") or "")
        job = f"Slurm job {self.job_id}"
        if header.get("rank") is not None and not self._canceling:
            self.events.ending(
                f"rank {header['rank']} of the distributed run exited with code "
                f"{header.get('code')}",
                kind="script_failed",
            )
        elif state == "CANCELLED" and not self._canceling:
            self.events.ending(f"{job} was cancelled in Slurm (scancel)", canceled=True)
        elif state == "TIMEOUT":
            if self.time_limited:
                self.events.ending(f"{job} reached max_run_duration_seconds", canceled=True)
            else:
                self.events.ending(f"{job} reached its partition's time limit (TIMEOUT)")
        elif state in CLUSTER_FAILURES:
            self.events.ending(f"{job} failed: {CLUSTER_FAILURES[state]}", kind="slurm")
        elif state == "UNKNOWN":
            self.events.ending(reason or f"{job} is unknown to Slurm", kind="lost")

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the job's steps, wait ``grace_s``, then ``scancel`` it (a pending job is
        simply removed); the run's end is the Canceled runner asked for."""
        self._canceling = True
        super().cancel(grace_s)

    def describe(self) -> dict[str, str]:
        """Enough to follow the job again after a restart."""
        return {
            "kind": "slurm",
            "target": self.target.name,
            "run_id": self.run_id,
            "job_id": self.job_id,
        }

    def properties(self) -> dict[str, str] | None:
        """``slurm.job_id``, ``slurm.partition``, ``slurm.nodes`` once the job runs."""
        if not self.nodes:
            return None
        return {
            "slurm.job_id": self.job_id,
            "slurm.partition": self.partition,
            "slurm.nodes": self.nodes,
        }


def _journal_stream(rank: int) -> str:
    """The name of a rank's journal (and of its offset here)."""
    return "journal" if rank == 0 else f"journal_{rank}"
