"""A Slurm job, followed from here through the login node: its state, log and journal."""

from __future__ import annotations

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
        self.slurm_target = target
        self.job_id = job_id
        self.time_limited = time_limited  #: runner set --time from max_run_duration_seconds
        self.state = ""
        self.nodes = ""
        self.partition = ""
        self._canceling = False
        super().__init__(target, run_id, events, session)

    def _take(self, header: dict[str, Any], payload: bytes) -> None:
        stream = header.get("s")
        if stream == "state":
            self._state(header)
        elif stream == "exit":
            self._ended(header)
        super()._take(header, payload)

    def _state(self, header: dict[str, Any]) -> None:
        state, reason = str(header.get("state") or ""), str(header.get("reason") or "")
        self.state = state
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
        elif state in ("RUNNING", "COMPLETING"):
            events.started()
        elif state in STALLED:
            events.stalled(f"Slurm job {self.job_id} is {state} ({reason or 'no reason given'})")

    def _ended(self, header: dict[str, Any]) -> None:
        state, reason = str(header.get("state") or ""), str(header.get("reason") or "")
        job = f"Slurm job {self.job_id}"
        if state == "CANCELLED" and not self._canceling:
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
            "target": self.slurm_target.name,
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
