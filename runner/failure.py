"""The one builder of a run's error details (``run.get_details()["error"]``).

Standard library only: the in-run client's ``Run.fail`` uses it as well as the daemon.
"""

from __future__ import annotations

import time
from typing import Any


def error_details(
    code: str,
    message: str,
    *,
    kind: str | None = None,
    exit_code: int | None = None,
    log_tail: str = "",
    failed_rank: int | None = None,
    when: str | None = None,
) -> dict[str, Any]:
    """``{"error": {...}, "time": ...}`` as v1's run details hold it.

    ``code`` is v1's UserError or ServiceError. An end that runner records (``kind``
    given: script_failed, lost, environment_failed, ...) also carries the script's exit
    code (None when it never ran), the failing rank of a distributed run, and the last
    lines of the log; a failure the user marks with ``Run.fail`` carries only code and
    message. ``when`` defaults to now, in UTC.
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if kind is not None:
        error.update(kind=kind, exitCode=exit_code)
        if failed_rank is not None:
            error["failedRank"] = failed_rank
        error["logTail"] = log_tail
    return {"error": error, "time": when or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
