"""What every launched run shares, wherever it runs: the exit-code shim and its file, and
the name of a run's container. Standard library only: the remote side uses it too.

The script runs under a one-line ``sh`` shim that changes into the work folder, runs the
argv and writes the exit code to a file. It costs about a millisecond and is what lets a
supervisor that did not start the process (a restarted daemon, or one following a run on
another host) learn how it ended: the exit code of a process that is not one's child is
otherwise lost.
"""

from __future__ import annotations

from pathlib import Path

#: ``sh -c SHIM runner-shim WORKDIR EXIT_FILE ARGV...``. The exit code of a process killed
#: by a signal is 128 + N, as shells report it.
SHIM = 'cd "$1" || exit 127; ef=$2; shift 2; "$@"; c=$?; echo "$c" > "$ef"; exit "$c"'


#: What a finished script leaves running gets SIGTERM and this long before SIGKILL (as a
#: container's end would do).
LEFTOVER_GRACE_S = 2.0


def read_exit_file(path: Path) -> int | None:
    """The exit code the shim wrote, or None if it has not (yet)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def container_name(run_id: str) -> str:
    """``runner-<run id>`` with what the Docker engine refuses in a name replaced by '_'."""
    return (
        "runner-"
        + "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in run_id)[:200]
    )
