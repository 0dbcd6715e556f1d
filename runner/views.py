"""Run summaries, run tables and metric series as plain JSON-safe values: what the studio
shows, and what the CLI can show the same way.

Everything here reads the run history (``ws.store``) with a few indexed queries: one page
of a runs table is one ``COUNT``, one ``SELECT ... LIMIT`` and one query for the page's
tags and properties, whatever the number of runs. Filters come from
:mod:`runner.view_filter` (parameterised SQL, never ``eval``). Metric series are
downsampled into buckets that keep each bucket's first, minimum, maximum and last point,
so a spike among a million points stays visible on a chart 1,000 pixels wide.
Standard library only.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.store_metrics import _decode_values
from runner.view_filter import KV_TABLES, compile_filter, register_functions

if TYPE_CHECKING:
    from runner.store import Store

JSONDict = dict[str, Any]

#: Sort keys of a runs table -> the SQL expression (constant text; values are bound).
SORT_COLUMNS = {
    "created": "r.rowid",
    "number": "r.number",
    "status": "r.status",
    "name": "COALESCE(r.display_name, r.id)",
    "target": "r.target",
    "started": "r.start_utc",
    "ended": "r.end_utc",
    "duration": "(COALESCE(r.end_utc, r.heartbeat_utc) - r.start_utc)",
}
#: Sort keys whose value may be missing (those runs go last either way).
_MAYBE_NULL = frozenset({"started", "ended", "duration"})
#: Most rows one page of a runs table holds.
MAX_PAGE = 500


def experiments(store: Store) -> list[JSONDict]:
    """Every experiment with its number of runs, active runs and latest run time."""
    rows = store.query(
        "SELECT e.name, COUNT(r.id), "
        "SUM(r.status IN ('NotStarted','Starting','Preparing','Queued','Running',"
        "'Finalizing','CancelRequested','Provisioning')), MAX(r.created_utc) "
        "FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id "
        "GROUP BY e.id ORDER BY MAX(r.created_utc) DESC, e.name"
    )
    return [
        {"name": name, "runs": count, "active": int(active or 0), "lastCreatedUtc": last}
        for name, count, active, last in rows
    ]


def _summary(row: Sequence[Any], experiment: str) -> JSONDict:
    (
        run_id,
        number,
        parent_id,
        run_type,
        status,
        details,
        display_name,
        target,
        created,
        start,
        end,
        heartbeat,
        child_count,
    ) = row
    until = end if end is not None else heartbeat
    return {
        "runId": run_id,
        "number": number,
        "experiment": experiment,
        "displayName": display_name or run_id,
        "parentRunId": parent_id,
        "type": run_type,
        "status": status,
        "statusDetails": details,
        "target": target,
        "createdUtc": created,
        "startUtc": start,
        "endUtc": end,
        "durationS": (until - start) if start is not None and until is not None else None,
        "childCount": child_count,
        "tags": {},
        "properties": {},
    }


_SUMMARY_COLUMNS = (
    "r.id, r.number, r.parent_id, r.type, r.status, r.status_details, r.display_name, "
    "r.target, r.created_utc, r.start_utc, r.end_utc, r.heartbeat_utc, r.child_count, e.name"
)


def runs_page(
    store: Store,
    *,
    experiment: str | None = None,
    filter_text: str = "",
    sort: str = "created",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
    top_level_only: bool = False,
    parent_id: str | None = None,
    metric_columns: Sequence[str] = (),
) -> JSONDict:
    """One page of a runs table: ``{"total", "offset", "limit", "runs": [summary, ...]}``.

    ``sort`` is a key of SORT_COLUMNS, ``metrics.NAME`` (the metric's last value) or
    ``tags.KEY`` / ``properties.KEY`` (numbers in numeric order, then text);
    ``filter_text`` is the filter language of :mod:`runner.view_filter`. Each summary has
    the run's tags, properties and, for ``metric_columns``, ``metrics[name] = {"last",
    "min", "max"}``. ValueError (its message says what is wrong) for a bad sort or filter.
    """
    register_functions(store)
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    where, params = compile_filter(filter_text)
    conditions = [where] if where else []
    if experiment is not None:
        conditions.append("e.name = ?")
        params.append(experiment)
    if top_level_only:
        conditions.append("r.parent_id IS NULL")
    if parent_id is not None:
        conditions.append("r.parent_id = ?")
        params.append(parent_id)
    sql_where = (" WHERE " + " AND ".join(f"({c})" for c in conditions)) if conditions else ""
    order, order_params = _order(sort, descending)
    base = " FROM runs r JOIN experiments e ON e.id = r.experiment_id" + sql_where
    with store._lock:
        total = store.query("SELECT COUNT(*)" + base, params)[0][0]
        rows = store.query(
            f"SELECT {_SUMMARY_COLUMNS}{base} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, *order_params, limit, offset],
        )
    runs = [_summary(row[:-1], row[-1]) for row in rows]
    _add_key_values(store, runs)
    if metric_columns:
        _add_metric_columns(store, runs, metric_columns)
    return {"total": total, "offset": offset, "limit": limit, "runs": runs}


def _order(sort: str, descending: bool) -> tuple[str, list[Any]]:
    direction = "DESC" if descending else "ASC"
    if sort.startswith("metrics."):
        expr = (
            "(SELECT metric_last(m.enc, m.data) FROM metrics m WHERE m.run_id = r.id "
            "AND m.name = ? ORDER BY m.id DESC LIMIT 1)"
        )
        # NULLs (runs without the metric) last either way.
        return f"{expr} IS NULL, {expr} {direction}, r.rowid DESC", [sort[8:], sort[8:]]
    prefix, _, key = sort.partition(".")
    if key and prefix in KV_TABLES:
        value = (
            f"(SELECT kv.value FROM {KV_TABLES[prefix]} kv WHERE kv.run_id = r.id AND kv.key = ?)"
        )
        # Numbers in numeric order, then other values as text; runs without the key last.
        return (
            f"{value} IS NULL, as_number({value}) IS NULL, as_number({value}) {direction}, "
            f"{value} {direction}, r.rowid {direction}",
            [key, key, key, key],
        )
    column = SORT_COLUMNS.get(sort)
    if column is None:
        raise ValueError(
            f"cannot sort by {sort!r}; use one of {', '.join(SORT_COLUMNS)}, metrics.NAME, "
            "tags.KEY or properties.KEY"
        )
    if sort == "created":  # the rowid itself: SQLite walks the table backwards, no sort
        return f"r.rowid {direction}", []
    if sort not in _MAYBE_NULL:
        return f"{column} {direction}, r.rowid {direction}", []
    return f"{column} IS NULL, {column} {direction}, r.rowid {direction}", []


def _add_key_values(store: Store, runs: list[JSONDict]) -> None:
    if not runs:
        return
    by_id = {run["runId"]: run for run in runs}
    marks = ",".join("?" * len(by_id))
    for table, field in (("tags", "tags"), ("properties", "properties")):
        for run_id, key, value in store.query(
            f"SELECT run_id, key, value FROM {table} WHERE run_id IN ({marks})",
            list(by_id),
        ):
            by_id[run_id][field][key] = value


def _add_metric_columns(store: Store, runs: list[JSONDict], names: Sequence[str]) -> None:
    if not runs:
        return
    by_id = {run["runId"]: run for run in runs}
    for run in runs:
        run["metrics"] = {}
    marks = ",".join("?" * len(by_id))
    name_marks = ",".join("?" * len(names))
    rows = store.query(
        "SELECT run_id, name, MIN(metric_min(enc, data)), MAX(metric_max(enc, data)), "
        "(SELECT metric_last(m2.enc, m2.data) FROM metrics m2 WHERE m2.run_id = m.run_id "
        "AND m2.name = m.name ORDER BY m2.id DESC LIMIT 1) "
        f"FROM metrics m WHERE run_id IN ({marks}) AND name IN ({name_marks}) "
        "GROUP BY run_id, name",
        [*by_id, *names],
    )
    for run_id, name, low, high, last in rows:
        by_id[run_id]["metrics"][name] = {"last": last, "min": low, "max": high}


def run_summary(store: Store, run_id: str) -> JSONDict | None:
    """One run's summary (as in a runs table), or None if there is no such run."""
    rows = store.query(
        f"SELECT {_SUMMARY_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
        "WHERE r.id = ?",
        (run_id,),
    )
    if not rows:
        return None
    run = _summary(rows[0][:-1], rows[0][-1])
    _add_key_values(store, [run])
    return run


def statuses(store: Store, run_ids: Sequence[str]) -> dict[str, JSONDict]:
    """run id -> {status, statusDetails, startUtc, endUtc} for the live cells of a table."""
    if not run_ids:
        return {}
    marks = ",".join("?" * len(run_ids))
    rows = store.query(
        f"SELECT id, status, status_details, start_utc, end_utc FROM runs WHERE id IN ({marks})",
        list(run_ids),
    )
    return {
        run_id: {"status": s, "statusDetails": d, "startUtc": a, "endUtc": b}
        for run_id, s, d, a, b in rows
    }


# -- metrics --------------------------------------------------------------------------


def metric_names(store: Store, run_id: str) -> list[JSONDict]:
    """A run's metrics: ``[{"name", "kind", "count", "lastId"}]`` in name order."""
    rows = store.query(
        "SELECT mm.name, mm.kind, COALESCE(SUM(m.count), 0), MAX(m.id) FROM metric_meta mm "
        "LEFT JOIN metrics m ON m.run_id = mm.run_id AND m.name = mm.name "
        "WHERE mm.run_id = ? GROUP BY mm.name ORDER BY mm.name",
        (run_id,),
    )
    return [{"name": n, "kind": k, "count": c, "lastId": i} for n, k, c, i in rows]


class Series:
    """One scalar metric's points: x (step, else the index), y, t (when each value was
    stored: values written together share a time), and the last row id."""

    __slots__ = ("last_id", "t", "x", "y")

    def __init__(self, x: list[float], y: list[float], t: list[float], last_id: int) -> None:
        self.x = x
        self.y = y
        self.t = t
        self.last_id = last_id


def read_series(store: Store, run_id: str, name: str, after_id: int = 0) -> Series:
    """The scalar points of a metric stored in rows after ``after_id`` (0: all).

    x is the logged step where the values have steps, else the value's index in the whole
    series. Values that are not numbers (a bool counts as 0/1) are left out.
    """
    with store._lock:
        start = (
            store.query(
                "SELECT COALESCE(SUM(count), 0) FROM metrics WHERE run_id = ? AND name = ? "
                "AND id <= ?",
                (run_id, name, after_id),
            )[0][0]
            if after_id
            else 0
        )
        rows = store.query(
            "SELECT id, enc, data, steps, time_utc FROM metrics WHERE run_id = ? AND name = ? "
            "AND id > ? ORDER BY id",
            (run_id, name, after_id),
        )
    xs: list[float] = []
    ys: list[float] = []
    ts: list[float] = []
    last_id = after_id
    index = start
    for row_id, enc, data, steps, when in rows:
        values = _decode_values(enc, data)
        if steps is not None:
            a = array("q")
            a.frombytes(steps)
            step_list: list[Any] = a.tolist()
        else:
            step_list = list(range(index, index + len(values)))
        index += len(values)
        last_id = row_id
        if enc in ("f8", "i8"):
            xs.extend(step_list)
            ys.extend(values)
            ts.extend([when] * len(values))
            continue
        for x, y in zip(step_list, values):
            if isinstance(y, (int, float)):
                xs.append(x)
                ys.append(float(y))
                ts.append(when)
    return Series(xs, ys, ts, last_id)


def downsample(
    x: Sequence[float], y: Sequence[float], buckets: int
) -> tuple[list[float], list[float]]:
    """At most ~4 points per bucket: each bucket's first, minimum, maximum and last point,
    in x order, so spikes stay visible. Series short enough are returned as they are.

    Buckets are equal runs of points (x of a metric grows with its index); the work per
    bucket is a few C-level passes (``min``, ``max``, ``index``) over a slice.
    """
    n = len(y)
    if buckets <= 0 or n <= 4 * buckets:
        return list(x), list(y)
    out_x: list[float] = []
    out_y: list[float] = []
    size = n / buckets
    for b in range(buckets):
        lo = int(b * size)
        hi = int((b + 1) * size) if b < buckets - 1 else n
        if hi <= lo:
            continue
        part = y[lo:hi]
        finite = [v for v in part if not math.isnan(v)] if _has_nan(part) else part
        if not finite:
            continue
        i_min = lo + part.index(min(finite))
        i_max = lo + part.index(max(finite))
        for i in sorted({lo, i_min, i_max, hi - 1}):
            out_x.append(x[i])
            out_y.append(y[i])
    return out_x, out_y


def _has_nan(values: Sequence[float]) -> bool:
    # NaN != NaN: min()/max() over a slice holding one give arbitrary answers.
    return any(v != v for v in values)


class SeriesCache:
    """Downsampled series per (run, metric, last row id, range, buckets); a few hundred
    entries, least recently used out. Thread-safe (the studio serves from threads)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], JSONDict] = OrderedDict()
        self._lock = threading.Lock()

    def chart(
        self,
        store: Store,
        run_id: str,
        name: str,
        buckets: int = 1000,
        x_min: float | None = None,
        x_max: float | None = None,
        by_time: bool = False,
    ) -> JSONDict:
        """``{"x", "y", "lastId", "count", "downsampled"}`` of a metric, at most about
        ``4 * buckets`` points between ``x_min`` and ``x_max`` (a zoomed chart); x is the
        step, or with ``by_time`` the wall-clock time (UTC seconds) each value was stored."""
        last = store.query(
            "SELECT MAX(id) FROM metrics WHERE run_id = ? AND name = ?", (run_id, name)
        )[0][0]
        key = (run_id, name, last, buckets, x_min, x_max, by_time)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        series = read_series(store, run_id, name)
        xs, ys = (series.t if by_time else series.x), series.y
        if x_min is not None or x_max is not None:
            lo_x = -math.inf if x_min is None else x_min
            hi_x = math.inf if x_max is None else x_max
            keep = [i for i, v in enumerate(xs) if lo_x <= v <= hi_x]
            if keep:
                xs, ys = xs[keep[0] : keep[-1] + 1], ys[keep[0] : keep[-1] + 1]
            else:
                xs, ys = [], []
        dx, dy = downsample(xs, ys, buckets)
        value = {
            "x": dx,
            "y": [None if (v != v or v in (math.inf, -math.inf)) else v for v in dy],
            "lastId": series.last_id,
            "count": len(ys),
            "downsampled": len(dy) < len(ys),
        }
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def other_metric(store: Store, run_id: str, name: str) -> JSONDict:
    """A non-scalar metric (list, row, table, image, confusion matrix, ...): its kind and
    every logged value, in order."""
    series = store.read_metrics(run_id, name).get(name)
    if series is None:
        return {"name": name, "kind": None, "values": []}
    return {"name": name, "kind": series.kind, "values": series.values, "steps": series.steps}
