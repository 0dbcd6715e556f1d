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
