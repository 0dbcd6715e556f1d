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

import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError, RunnerError

if TYPE_CHECKING:
    from runner.run import Run

__all__ = ["Tensorboard", "export_to_tensorboard"]

_log = logging.getLogger(__name__)

_INSTALL = "pip install tensorboard"
#: How long start() waits for tensorboard to say where it listens.
_START_TIMEOUT_S = 60.0
#: TensorBoard's "TensorBoard 2.x at http://localhost:6006/ (Press CTRL+C to quit)"; other
#: lines carry links to github.com and tensorflow.org.
_URL = re.compile(r"^TensorBoard \S+ at (https?://\S+)")


def _require_tensorboard() -> Any:
    """The ``tensorboard`` package, or a ConfigError saying how to install it."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ConfigError(
            f"TensorBoard support needs the tensorboard package ({exc}); {_INSTALL}",
            hint=_INSTALL,
        ) from exc
    return EventFileWriter, event_pb2, summary_pb2


def _numeric(value: object) -> float | None:
    """``value`` as a float when TensorBoard can plot it (numbers and bools), else None."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def _points(run: Run) -> Iterator[tuple[str, float, int, float]]:
    """(tag, value, step, wall time) of every numeric value the run logged, in order.

    Scalars logged with ``step=`` keep their steps; other vectors and table columns are
    numbered from 0 (their position), as v1's export numbers them.
    """
    store = run._store
    store.flush()
    times = store.metric_times(run.id)
    for name, series in store.read_metrics(run.id).items():
        stamps = times.get(name, [])
        for i, value in enumerate(series.values):
            when = stamps[i] if i < len(stamps) else time.time()
            if series.kind in ("scalar", "list"):
                number = _numeric(value)
                if number is not None:
                    step = series.steps[i] if series.steps is not None else i
                    yield name, number, step, when
            elif series.kind == "row" and isinstance(value, dict):
                for column, cell in value.items():
                    number = _numeric(cell)
                    if number is not None:
                        yield f"{name}/{column}", number, i, when
        if series.kind == "table":
            yield from _table_points(name, series.values, stamps)


def _table_points(
    name: str, tables: Sequence[Any], stamps: Sequence[float]
) -> Iterator[tuple[str, float, int, float]]:
    """Table columns as ``name/column`` scalars, rows numbered across repeated log_table calls."""
    row = 0
    for i, table in enumerate(tables):
        when = stamps[i] if i < len(stamps) else time.time()
        length = max((len(col) for col in table.values()), default=0)
        for column, cells in table.items():
            for j, cell in enumerate(cells):
                number = _numeric(cell)
                if number is not None:
                    yield f"{name}/{column}", number, row + j, when
        row += length


def _with_children(runs: Sequence[Run], recursive: bool) -> list[Run]:
    """The runs, then (with ``recursive``) all their descendants, each run once."""
    seen: dict[str, Run] = {}
    for run in runs:
        seen.setdefault(run.id, run)
        if recursive:
            for child in run.get_children(recursive=True):
                seen.setdefault(child.id, child)
    return list(seen.values())


def _as_runs(run_data: Any, what: str) -> list[Run]:
    """A Run or a list of Runs -> a list; anything else is a ConfigError."""
    from runner.run import Run

    runs = list(run_data) if isinstance(run_data, (list, tuple)) else [run_data]
    bad = [r for r in runs if not isinstance(r, Run)]
    if bad:
        raise ConfigError(
            f"{what} takes a Run or a list of Runs, got {type(bad[0]).__name__}; pass "
            "run objects, e.g. Run(experiment, run_id)"
        )
    return runs


def _export_run(run: Run, folder: Path) -> int:
    """Write one run's scalars as an event file in ``folder``; return how many."""
    writer_cls, event_pb2, summary_pb2 = _require_tensorboard()
    folder.mkdir(parents=True, exist_ok=True)
    writer = writer_cls(str(folder))
    count = 0
    try:
        for tag, value, step, when in _points(run):
            summary = summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
            )
            writer.add_event(event_pb2.Event(wall_time=when, step=step, summary=summary))
            count += 1
    finally:
        writer.close()
    return count


def export_to_tensorboard(
    run_data: Run | list[Run],
    logsdir: str | os.PathLike[str],
    logger: logging.Logger | None = None,
    recursive: bool = True,
) -> None:
    """Export run history to TensorBoard event files, one folder per run (``logsdir/RUN_ID``).

    Every numeric value logged with ``run.log`` (with its ``step=`` when given),
    ``log_list``, ``log_row`` and ``log_table`` becomes a scalar (rows and tables as
    ``name/column``); strings, images and structured metrics are left out, as in v1.

    Args:
        run_data: A Run or a list of Runs.
        logsdir: The folder to write into (created if missing).
        logger: Where to log what was exported (default: this module's logger).
        recursive: Also export every descendant of the given runs.

    Example:
        >>> export_to_tensorboard(run, "exported_tb_logs")  # doctest: +SKIP
    """
    runs = _as_runs(run_data, "export_to_tensorboard")
    if not runs:
        raise ConfigError("export_to_tensorboard: run_data is an empty list; pass at least one Run")
    _require_tensorboard()
    out = Path(logsdir)
    for run in _with_children(runs, recursive):
        n = _export_run(run, out / run.id)
        (logger or _log).debug("exported %d scalars of run %s to %s", n, run.id, out / run.id)


class Tensorboard:
    """A TensorBoard process serving the history of some runs (v1: ``azureml.tensorboard``).

    ``start()`` writes each run's scalars (see ``export_to_tensorboard``; children are not
    included, as in v1) and the TensorBoard event files it stored under ``logs/`` into
    ``local_root/RUN_ID``, then starts ``python -m tensorboard.main`` on ``local_root``.
    Call ``stop()`` when done (or use it as a context manager).

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
        self._runs = _as_runs(runs, "Tensorboard")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"Tensorboard port must be an int in 1..65535, got {port!r}")
        self._local_root = Path(local_root) if local_root is not None else None
        self._port = port
        self._proc: subprocess.Popen[str] | None = None
        self._url: str | None = None

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
        _require_tensorboard()
        if self._local_root is None:
            self._local_root = Path(tempfile.mkdtemp(prefix="runner-tensorboard-"))
        for run in self._runs:
            folder = self._local_root / run.id
            _export_run(run, folder)
            for name in run.get_file_names():
                if name.startswith("logs/") and "tfevents" in name.rsplit("/", 1)[-1]:
                    run.download_file(name, folder / name[len("logs/") :])
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
        """Stop the TensorBoard process (TERM, then KILL after 10 s); idempotent."""
        proc, self._proc, self._url = self._proc, None, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> Tensorboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
