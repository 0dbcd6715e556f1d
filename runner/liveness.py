"""Heartbeat timing shared by the daemon (which sends them) and readers (which judge).

``RUNNER_HEARTBEAT_S`` sets the interval (default 2 s); a Running run whose last
heartbeat is older than ``NOT_RESPONDING_FACTOR`` intervals is NotResponding.
"""

from __future__ import annotations

import os

NOT_RESPONDING_FACTOR = 3.0


def heartbeat_s() -> float:
    """Seconds between heartbeats."""
    try:
        return max(0.05, float(os.environ.get("RUNNER_HEARTBEAT_S", "2")))
    except ValueError:
        return 2.0


def not_responding_after_s() -> float:
    """Seconds without a heartbeat after which a Running run is NotResponding."""
    return heartbeat_s() * NOT_RESPONDING_FACTOR
