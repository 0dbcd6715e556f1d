"""TensorBoard over runner's run history (v1: ``azureml.tensorboard``).

``export_to_tensorboard`` writes every numeric value a run logged (``run.log``,
``log_list``, ``log_row``, ``log_table``) as TensorBoard scalars, one event-file folder
per run; ``Tensorboard(runs).start()`` exports them (plus any TensorBoard event files the
runs stored under ``logs/``) and starts the real ``tensorboard`` process on them::

    from runner.tensorboard import Tensorboard, export_to_tensorboard

    export_to_tensorboard(run, "tb_logs")          # the run and its children
    tb = Tensorboard([run], port=6006)
    url = tb.start()                               # http://localhost:6006/
    tb.stop()

The ``tensorboard`` package is optional and imported only here, when used: without it
these raise a ``ConfigError`` naming ``pip install tensorboard``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError, RunnerError
from runner.status import RunStatus
from runner.tensorboard.export import (
    RunExporter,
    as_runs,
    export_to_tensorboard,
    require_tensorboard,
)

if TYPE_CHECKING:
    from runner.run import Run

__all__ = ["Tensorboard", "export_to_tensorboard"]

#: How often the runs being served are read again while any of them is active.
FOLLOW_S = 2.0
_log = logging.getLogger(__name__)

#: How long start() waits for tensorboard to say where it listens.
_START_TIMEOUT_S = 60.0
#: TensorBoard's "TensorBoard 2.x at http://localhost:6006/ (Press CTRL+C to quit)"; other
#: lines carry links to github.com and tensorflow.org.
_URL = re.compile(r"^TensorBoard \S+ at (https?://\S+)")


class Tensorboard:
    """A TensorBoard process serving the history of some runs (v1: ``azureml.tensorboard``).

    ``start()`` writes each run's scalars (see ``export_to_tensorboard``; children are not
    included, as in v1) and the TensorBoard event files it stored under ``logs/`` into
    ``local_root/RUN_ID``, then starts ``python -m tensorboard.main`` on ``local_root``.
    While any of the runs is active, a background thread appends what they log every
    ``FOLLOW_S`` seconds (v1 follows its runs in real time too). Call ``stop()`` when
    done (or use it as a context manager).

    Args:
        runs: A Run or a list of Runs (an empty list serves what ``local_root`` holds).
        local_root: The folder to serve (default: a new temporary folder).
        port: The port TensorBoard listens on.

    Example:
        >>> tb = Tensorboard([run])  # doctest: +SKIP
        >>> url = tb.start()  # doctest: +SKIP
        >>> tb.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        runs: Run | list[Run],
        local_root: str | os.PathLike[str] | None = None,
        port: int = 6006,
    ) -> None:
        self._runs = as_runs(runs, "Tensorboard")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"Tensorboard port must be an int in 1..65535, got {port!r}")
        self._local_root = Path(local_root) if local_root is not None else None
        self._port = port
        self._proc: subprocess.Popen[str] | None = None
        self._url: str | None = None
        self._exporters: list[RunExporter] = []
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()

    @property
    def local_root(self) -> Path | None:
        """The folder TensorBoard serves (set once started when not given)."""
        return self._local_root

    def start(self, start_browser: bool = False) -> str:
        """Export the runs, start TensorBoard and return its URL (also printed, as in v1).

        Raises ConfigError without the tensorboard package, RunnerError when TensorBoard
        exits or names no URL within a minute (with what it printed).
        """
        if self._proc is not None and self._url is not None:
            return self._url
        require_tensorboard()
        if self._local_root is None:
            self._local_root = Path(tempfile.mkdtemp(prefix="runner-tensorboard-"))
        self._exporters = [RunExporter(run, self._local_root / run.id) for run in self._runs]
        self._stop_following.clear()
        if not self._export_round():
            self._follower = threading.Thread(
                target=self._follow, name="runner-tensorboard-export", daemon=True
            )
            self._follower.start()
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(self._local_root),
                "--port",
                str(self._port),
                "--host",
                "localhost",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            self._url = self._wait_for_url(self._proc)
        except BaseException:
            self.stop()
            raise
        print(self._url)  # noqa: T201 - v1 prints it: a clickable link in notebooks
        if start_browser:
            import webbrowser

            webbrowser.open(self._url)
        return self._url

    def _export_round(self) -> bool:
        """Export what the runs logged since the last round; True when all have ended."""
        ended = True
        for exporter in self._exporters:
            run = exporter.run
            # The status first: what a run logged before it ended is then all in this round.
            ended = RunStatus(run.get_status()).is_terminal and ended
            exporter.export()
            for name in run.get_file_names():
                if name.startswith("logs/") and "tfevents" in name.rsplit("/", 1)[-1]:
                    dest = exporter.folder / name[len("logs/") :]
                    if not dest.exists():
                        run.download_file(name, dest)
        return ended

    def _follow(self) -> None:
        # v1 follows its runs "in real time" while TensorBoard serves them: so does this,
        # until every run has ended (one last round then) or stop() is called.
        while not self._stop_following.wait(FOLLOW_S):
            try:
                if self._export_round():
                    return
            except RunnerError as exc:  # the workspace went away: stop following, keep serving
                _log.warning("stopped following runs for TensorBoard: %s", exc)
                return

    @staticmethod
    def _wait_for_url(proc: subprocess.Popen[str]) -> str:
        """Read TensorBoard's stderr until it names the URL it serves."""
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream: Any) -> None:
            # Keeps reading after the URL so TensorBoard never blocks on a full pipe.
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(proc.stderr,), daemon=True).start()  # a PIPE
        seen: list[str] = []
        deadline = time.monotonic() + _START_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            match = _URL.search(line)
            if match:
                return match.group(1)
        tail = "".join(seen[-20:]).strip()
        why = "exited" if proc.poll() is not None else "named no URL in 60 s"
        raise RunnerError(
            f"tensorboard {why}; it printed:\n{tail or '(nothing)'}",
            hint="is the port taken? pass Tensorboard(runs, port=...)",
        )

    def stop(self) -> None:
        """Stop TensorBoard and anything it started (TERM, then KILL after 10 s); idempotent."""
        self._stop_following.set()
        if self._follower is not None:
            self._follower.join()
            self._follower = None
        for exporter in self._exporters:
            exporter.close()
        self._exporters = []
        proc, self._proc, self._url = self._proc, None, None
        if proc is None:
            return
        import psutil

        from runner.service.proc import ProcessId, terminate_tree

        with contextlib.suppress(psutil.NoSuchProcess):  # gone already: only reap it
            terminate_tree(ProcessId.of(proc.pid), grace_s=10.0, session=proc.pid)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> Tensorboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
