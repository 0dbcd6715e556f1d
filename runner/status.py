"""Run statuses with the exact strings of the SPEC, and which changes are legal."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """The status of a run; the values are the exact strings users compare against."""

    NOT_STARTED = "NotStarted"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    PREPARING = "Preparing"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for Completed, Failed and Canceled: nothing changes a run after these."""
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
ACTIVE = frozenset(s for s in RunStatus if s not in TERMINAL)
ALL_STATUS_VALUES = frozenset(s.value for s in RunStatus)

# The one source of the sets of status strings the store holds (tuples: they are SQL
# parameters as well as ``allowed_from`` sets). Sorted, so that every process builds
# the same SQL text.
#: Completed, Failed, Canceled: nothing changes a run after these.
TERMINAL_VALUES = tuple(sorted(s.value for s in TERMINAL))
#: Every status of a run that has not ended.
ACTIVE_VALUES = tuple(sorted(s.value for s in ACTIVE))
#: Statuses in which a submitted run needs its workspace daemon (all active ones but the
#: two no daemon sets: NotStarted, an interactive run's; Provisioning, unused locally).
SUPERVISED_VALUES = tuple(s for s in ACTIVE_VALUES if s not in ("NotStarted", "Provisioning"))
#: A submitted run that has not been launched yet.
BEFORE_LAUNCH_VALUES = frozenset({"Starting", "Preparing", "Queued", "Provisioning"})
#: Not started yet: before launch, or an interactive run not started.
NOT_YET_RUNNING_VALUES = BEFORE_LAUNCH_VALUES | {"NotStarted"}
#: A launched run whose process lives (as far as anyone knows).
LIVE_VALUES = frozenset({"Running", "NotResponding"})

#: The order of the life of a run; a run may skip ahead but never go back, except
#: Running <-> NotResponding.
_ORDER = {
    RunStatus.NOT_STARTED: 0,
    RunStatus.STARTING: 1,
    RunStatus.PROVISIONING: 2,
    RunStatus.PREPARING: 3,
    RunStatus.QUEUED: 4,
    RunStatus.RUNNING: 5,
    RunStatus.NOT_RESPONDING: 5,
    RunStatus.FINALIZING: 6,
    RunStatus.CANCEL_REQUESTED: 7,
}


def can_transition(old: RunStatus, new: RunStatus) -> bool:
    """Whether a run in status ``old`` may move to ``new``."""
    if old in TERMINAL:
        return False
    if new in TERMINAL:
        return True
    if old is RunStatus.CANCEL_REQUESTED:
        return new is RunStatus.FINALIZING
    if new is RunStatus.CANCEL_REQUESTED:
        return True
    return _ORDER[new] >= _ORDER[old]
