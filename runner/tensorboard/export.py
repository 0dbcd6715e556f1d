"""Run history -> TensorBoard event files (v1: ``azureml.tensorboard.export``).

v1 notebooks import it from here: ``from runner.tensorboard.export import export_to_tensorboard``
(``runner.tensorboard`` has it too). The tensorboard package is imported only when used.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.run import Run

if TYPE_CHECKING:
    from runner.run import Run

__all__ = ["export_to_tensorboard"]

_log = logging.getLogger(__name__)

#: The end of the event files runner writes, so that a later export can replace them.
_SUFFIX = ".runner-history"

_INSTALL = "pip install tensorboard"


def require_tensorboard() -> Any:
    """The ``tensorboard`` package, or a ConfigError saying how to install it."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ConfigError(
            f"TensorBoard support needs the tensorboard package ({exc})",
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
    store = run.experiment.workspace.store
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


def as_runs(run_data: Any, what: str) -> list[Run]:
    """A Run or a list of Runs -> a list; anything else is a ConfigError."""

    runs = list(run_data) if isinstance(run_data, (list, tuple)) else [run_data]
    bad = [r for r in runs if not isinstance(r, Run)]
    if bad:
        raise ConfigError(
            f"{what} takes a Run or a list of Runs, got {type(bad[0]).__name__}; pass "
            "run objects, e.g. Run(experiment, run_id)"
        )
    return runs


class RunExporter:
    """Writes a run's scalars into one event file in ``folder``, and on later calls only
    what the run logged since: metrics only grow, and TensorBoard reads event files as
    append-only logs, so nothing written is ever rewritten."""

    def __init__(self, run: Run, folder: Path) -> None:
        self.run = run
        self.folder = folder
        self._writer: Any = None
        self._written: dict[str, int] = {}  # tag -> how many of its points are in the file

    def export(self) -> int:
        """Append the scalars not yet written; return how many."""
        writer_cls, event_pb2, summary_pb2 = require_tensorboard()
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # A new export replaces an earlier one (TensorBoard would show both).
            for old in self.folder.glob(f"*tfevents*{_SUFFIX}"):
                old.unlink()
            self._writer = writer_cls(str(self.folder), filename_suffix=_SUFFIX)
        seen: dict[str, int] = {}
        count = 0
        for tag, value, step, when in _points(self.run):
            seen[tag] = seen.get(tag, 0) + 1
            if seen[tag] <= self._written.get(tag, 0):
                continue
            summary = summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
            )
            self._writer.add_event(event_pb2.Event(wall_time=when, step=step, summary=summary))
            count += 1
        self._written = seen
        self._writer.flush()
        return count

    def close(self) -> None:
        """Close the event file; idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def export_run(run: Run, folder: Path) -> int:
    """Write one run's scalars as an event file in ``folder``; return how many."""
    exporter = RunExporter(run, folder)
    try:
        return exporter.export()
    finally:
        exporter.close()


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
    runs = as_runs(run_data, "export_to_tensorboard")
    if not runs:
        raise ConfigError("export_to_tensorboard: run_data is an empty list; pass at least one Run")
    require_tensorboard()
    out = Path(logsdir)
    for run in _with_children(runs, recursive):
        n = export_run(run, out / run.id)
        (logger or _log).debug("exported %d scalars of run %s to %s", n, run.id, out / run.id)
