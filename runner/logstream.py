"""Following a run's logs live: preparation log, then driver log, until the run ends.

Polls every few milliseconds: a line printed by the script shows up in a few ms, with
no thread, no inotify and no dependency (watchdog would not be faster at this rate).
Standard library only.
"""

from __future__ import annotations

import codecs
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runner.status import TERMINAL_VALUES

if TYPE_CHECKING:
    from runner.run import Run

POLL_S = 0.004
_TERMINAL = frozenset(TERMINAL_VALUES)
#: The logs streamed, in order, relative to the run's folder.
STREAMED = ("logs/55_environment_prep_log.txt", "logs/70_driver_log.txt")


class _Follower:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read_new(self, final: bool = False) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        return self.decoder.decode(data, final=final)


def stream_run_output(run: Run, out: IO[str] | None = None, poll_s: float = POLL_S) -> str:
    """Copy the run's logs to ``out`` (default stdout) as they grow; return the final status."""
    out = out if out is not None else sys.stdout
    folder = run._run_dir()
    followers: dict[str, _Follower] = {name: _Follower(folder / name) for name in STREAMED}
    store = run.experiment.workspace.store
    run_id = run.id
    last_liveness = time.monotonic()
    while True:
        rows = store.query("SELECT status FROM runs WHERE id = ?", (run_id,))
        status = rows[0][0] if rows else "Failed"
        final = status in _TERMINAL
        wrote = False
        for f in followers.values():
            text = f.read_new(final=final)
            if text:
                out.write(text)
                wrote = True
        if wrote:
            out.flush()
        if final:
            return str(status)
        if time.monotonic() - last_liveness > 1.0:
            run.get_status()  # lets a stalled or vanished supervisor be noticed
            last_liveness = time.monotonic()
        time.sleep(poll_s)
