"""The metrics part of ``Run``: ``log`` and its siblings, ``get_metrics``.

``log`` is the hot path of a training loop: after a metric's first value is checked,
its values go into a buffer that the store's writer thread drains, with no database
round trip. The checks and shapes of each metric kind are runner.metrics'. Standard
library only.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Sequence
from typing import Any

from runner import metrics as _m
from runner.errors import ConfigError, ConflictError, NotFoundError
from runner.run_base import _RunBase
from runner.store import MetricSeries

_SCALARS = _m.SCALAR_TYPES

# Metric kinds as stored in metric_meta.kind.
_KIND_SCALAR = "scalar"
_KIND_LIST = "list"
_KIND_ROW = "row"
_KIND_TABLE = "table"
_KIND_IMAGE = "image"
_STRUCTURED = {
    "confusion_matrix": _m.check_confusion_matrix,
    "accuracy_table": _m.check_accuracy_table,
    "predictions": _m.check_predictions,
    "residuals": _m.check_residuals,
}
_LOGGER_OF_KIND = {
    _KIND_SCALAR: "log()",
    _KIND_LIST: "log_list()",
    _KIND_ROW: "log_row()",
    _KIND_TABLE: "log_table()",
    _KIND_IMAGE: "log_image()",
    **{k: f"log_{k}()" for k in _STRUCTURED},
}


class _RunMetrics(_RunBase):
    """Logging and reading a run's metrics (part of ``Run``)."""

    # Per-metric buffers this object has checked once: name -> values list (no steps), or
    # name -> (values, steps); and name -> kind. Set empty by ``Run.__init__``.
    _fast: dict[str, list[Any]]
    _stepped: dict[str, tuple[list[Any], list[int]]]
    _kinds: dict[str, str]

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a scalar (int, float, bool or str); repeated names build a vector.

        If a metric was given a step once, every value of it must have one. No database
        round trip happens here: values are written in batches by a background thread.
        """
        buf = self._fast.get(name)
        if buf is not None and step is None and type(value) in _SCALARS:
            buf.append(value)
            return
        self._log_slow(name, value, description, step)

    def _log_slow(self, name: str, value: Any, description: str, step: int | None) -> None:
        pair = self._stepped.get(name)
        if pair is not None and type(value) in _SCALARS and type(step) is int:
            pair[0].append(value)
            pair[1].append(step)
            return
        name = _m.check_metric_name(name)
        value = _m.coerce_scalar(name, value)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ConfigError(f"metric {name!r}: step {step!r} must be an int, e.g. step=epoch")
        if name not in self._fast and name not in self._stepped:
            _, has_step = self._register(name, _KIND_SCALAR, step is not None, description)
            vals, steps = self._store.scalar_buffer(self._id, name, bool(has_step))
            if steps is None:
                self._fast[name] = vals
            else:
                self._stepped[name] = (vals, steps)
            self._store.ensure_writer()
        if name in self._stepped:
            if step is None:
                raise ConfigError(
                    f"metric {name!r} was logged with step= before, so every value needs one; "
                    f"pass step= for {value!r} too"
                )
            vals, steps = self._stepped[name]
            vals.append(value)
            steps.append(int(step))
            return
        if step is not None:
            raise ConfigError(
                f"metric {name!r} was logged without step= before; log every value of it "
                "with a step or none, or use a new metric name"
            )
        self._fast[name].append(value)

    def _register(
        self, name: str, kind: str, has_step: bool | None, description: str | None
    ) -> tuple[str, bool | None]:
        """Record (or check) a metric's kind once per name per Run object."""
        known = self._kinds.get(name)
        if known is None:
            known, stored_step = self._store.metric_meta(
                self._id, name, kind, has_step, description or ""
            )
            self._kinds[name] = known
            if known == _KIND_SCALAR and kind == _KIND_SCALAR:
                return known, stored_step
        else:
            stored_step = name in self._stepped
        if known != kind and {known, kind} != {_KIND_SCALAR, _KIND_LIST}:
            raise ConflictError(
                f"metric {name!r} of run {self._id} was logged with {_LOGGER_OF_KIND[known]}; "
                f"it cannot take {_LOGGER_OF_KIND[kind]} values; use another name"
            )
        return known, stored_step

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        """Log a list of scalars; repeated calls extend the metric's vector.

        Any ordered iterable works, a generator or ``map`` too (read once, as in azureml).
        """
        name = _m.check_metric_name(name)
        values = _m.check_list(name, value)
        self._register(name, _KIND_LIST, None, description)
        if name in self._stepped:
            raise ConfigError(
                f"metric {name!r} has steps; log its values one by one with log(name, v, step=...)"
            )
        buf = self._fast.get(name)
        if buf is None:
            buf = self._fast[name] = self._store.scalar_buffer(self._id, name, False)[0]
        buf.extend(values)
        self._store.ensure_writer()

    def _log_other(self, name: str, kind: str, value: Any, description: str | None) -> None:
        self._register(name, kind, None, description)
        self._store.other_queue.append((self._id, name, value))
        self._store.ensure_writer()

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of a table metric; repeated calls add rows."""
        name = _m.check_metric_name(name)
        self._log_other(name, _KIND_ROW, _m.check_row(name, kwargs), description)

    def log_table(self, name: str, value: dict[str, Sequence[Any]], description: str = "") -> None:
        """Log a table as a dict of equal-length column lists."""
        name = _m.check_metric_name(name)
        self._log_other(name, _KIND_TABLE, _m.check_table(name, value), description)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        """Log a confusion matrix (the seeds' ``schema_type: confusion_matrix`` JSON)."""
        self._log_structured("confusion_matrix", name, value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        """Log an accuracy table (the seeds' ``schema_type: accuracy_table`` JSON)."""
        self._log_structured("accuracy_table", name, value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        """Log binned predictions (the seeds' ``schema_type: predictions`` JSON)."""
        self._log_structured("predictions", name, value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        """Log a residuals histogram (the seeds' ``schema_type: residuals`` JSON)."""
        self._log_structured("residuals", name, value, description)

    def _log_structured(self, kind: str, name: str, value: Any, description: str) -> None:
        name = _m.check_metric_name(name)
        self._log_other(name, kind, _STRUCTURED[kind](name, value), description)

    def log_image(
        self, name: str, path: Any = None, plot: Any = None, description: str = ""
    ) -> None:
        """Log an image file (path or binary stream) or a matplotlib figure/pyplot.

        A figure or ``pyplot`` passed in the ``path`` position is rendered as ``plot=``
        would be: ``run.log_image("ROC", plt)`` is the azureml articles' own sample.
        """
        name = _m.check_metric_name(name)
        if plot is None and _m.looks_like_plot(path):
            path, plot = None, path
        if (path is None) == (plot is None):
            raise ConfigError(
                f"log_image({name!r}): pass exactly one of path= (an image file) or plot= "
                "(a matplotlib figure or pyplot)"
            )
        if plot is not None:
            data = _m.render_plot_png(name, plot)
            ext = ".png"
            digest = self._workspace.blobs.put_bytes(data)
            size = len(data)
        else:
            _m.check_image_path(name, path)
            if hasattr(path, "read"):
                digest, size = self._workspace.blobs.put_stream(path)
                ext = os.path.splitext(str(getattr(path, "name", "")))[1] or ".png"
            else:
                digest, size = self._workspace.blobs.put_file(path)
                ext = os.path.splitext(os.fspath(path))[1] or ".png"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        file_name = f"{safe}_{digest[:16]}{ext}"  # one file per distinct image
        self._store.add_files(self._id, [(file_name, digest, size)])
        ref = f"aml://artifactId/ExperimentRun/dcid.{self._id}/{file_name}"
        self._log_other(name, _KIND_IMAGE, ref, description)

    def get_metrics(
        self,
        name: str | None = None,
        recursive: bool = False,
        run_type: str | None = None,
        populate: bool = False,
    ) -> dict[str, Any]:
        """The run's metrics: name -> value.

        A metric logged once is a scalar, more than once a list; rows and tables are
        dicts of column lists; images are references to the stored file. With
        ``recursive=True``: ``{run_id: {name: value}}`` for this run and its descendants.
        """
        self._store.flush()
        if not recursive:
            return _shape_metrics(self._store.read_metrics(self._id, name))
        result: dict[str, Any] = {}
        ids = [self._id] + [
            r.id for r in self._store.find_runs(descendants_of=self._id, run_type=run_type)
        ]
        if run_type is not None and str(self._row.type) != run_type:
            ids = ids[1:]
        for rid in ids:
            result[rid] = _shape_metrics(self._store.read_metrics(rid, name))
        return result

    def get_metrics_with_steps(self, name: str) -> dict[str, builtins.list[Any]]:
        """``{'steps': [...], 'values': [...]}`` of a metric logged with step= (runner's own)."""
        self._store.flush()
        series = self._store.read_metrics(self._id, name).get(name)
        if series is None:
            raise NotFoundError(f"run {self._id} has no metric {name!r}")
        return {"steps": series.steps or [], "values": series.values}


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for k in row:
            if k not in cols:
                cols[k] = [None] * i
        for k, col in cols.items():
            col.append(row.get(k))
    return cols


def _shape_metrics(series: dict[str, MetricSeries]) -> dict[str, Any]:
    """Stored series -> the shapes azureml's get_metrics returns."""
    out: dict[str, Any] = {}
    for name, s in series.items():
        kind, values = s.kind, s.values
        if kind == _KIND_SCALAR:
            if values:
                out[name] = values[0] if len(values) == 1 else values
        elif kind == _KIND_LIST:
            out[name] = values
        elif kind == _KIND_ROW:
            out[name] = _columns(values)
        elif kind == _KIND_TABLE:
            merged: dict[str, list[Any]] = {}
            for table in values:
                n_before = len(next(iter(merged.values()))) if merged else 0
                n_new = len(next(iter(table.values()))) if table else 0
                for k in table:
                    merged.setdefault(k, [None] * n_before)
                for k, col in merged.items():
                    col.extend(table.get(k, [None] * n_new))
            out[name] = merged
        elif values:
            out[name] = values[0] if len(values) == 1 else values
    return out
