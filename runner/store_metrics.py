"""The metrics part of the run history's Store: metric kinds, the in-memory buffers
``Run.log`` appends to, draining them into packed rows, and reading series back.

Values are written in chunks: a background thread (``runner.store_process``) encodes
each run's new values of a metric as one row (``array`` bytes for numbers, JSON
otherwise), so ``log`` makes no database round trip and reading a million points is a
few ``frombytes`` calls. Values whose write failed go back into the buffers for the next
flush. Part of the in-run client: standard library only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from array import array
from collections import deque
from typing import Any

from runner.store_connection import _StoreConnection
from runner.store_process import start_writer

_ENC_F64 = "f8"
_ENC_I64 = "i8"
_ENC_BOOL = "b1"
_ENC_JSON = "json"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _encode_values(values: list[Any]) -> tuple[str, bytes]:
    kinds = set(map(type, values))
    if kinds == {float}:
        return _ENC_F64, array("d", values).tobytes()
    if kinds == {int} and min(values) >= _I64_MIN and max(values) <= _I64_MAX:
        return _ENC_I64, array("q", values).tobytes()
    if kinds == {bool}:
        return _ENC_BOOL, bytes(values)
    return _ENC_JSON, json.dumps(values, separators=(",", ":")).encode()


def _decode_values(enc: str, data: bytes) -> list[Any]:
    if enc == _ENC_F64:
        a = array("d")
        a.frombytes(data)
        return a.tolist()
    if enc == _ENC_I64:
        ints = array("q")
        ints.frombytes(data)
        return ints.tolist()
    if enc == _ENC_BOOL:
        return [b != 0 for b in data]
    result: list[Any] = json.loads(data)
    return result


class MetricSeries:
    """The stored values of one metric of one run, in logging order."""

    __slots__ = ("description", "kind", "steps", "values")

    def __init__(self, kind: str, description: str) -> None:
        self.kind = kind
        self.description = description
        self.values: list[Any] = []
        self.steps: list[int] | None = None


class _StoreMetrics(_StoreConnection):
    """Metric kinds, buffered metric writes and reading metrics back, of a Store."""

    # Buffered metric writes. Scalars: one (values, steps) pair of lists per (run,
    # metric), appended to by Run.log without locks; the writer takes a prefix with
    # ``lst[:n]`` and ``del lst[:n]`` (each atomic under the GIL, and appends only
    # touch the end). Other kinds: one queue of (run_id, name, value).
    scalar_buffers: dict[tuple[str, str], tuple[list[Any], list[int] | None]]
    other_queue: deque[tuple[str, str, Any]]
    #: held while a drain is in flight (flush() waits for the writer's)
    _drain_lock: threading.Lock
    #: set to wake the background writer early (closing)
    _wake: threading.Event
    _writer: threading.Thread | None

    def metric_meta(
        self, run_id: str, name: str, kind: str, has_step: bool | None, description: str
    ) -> tuple[str, bool | None]:
        """Register a metric's kind and step mode on first use; returns the stored ones.

        The first process to register a metric decides its kind and whether it has steps;
        everyone else is checked against that.
        """
        with self.write(f"register metric {name!r} of run {run_id}") as conn:
            before = conn.total_changes
            conn.execute(
                "INSERT OR IGNORE INTO metric_meta(run_id, name, kind, has_step, description) "
                "VALUES (?,?,?,?,?)",
                (run_id, name, kind, None if has_step is None else int(has_step), description),
            )
            row = conn.execute(
                "SELECT kind, has_step FROM metric_meta WHERE run_id = ? AND name = ?",
                (run_id, name),
            ).fetchone()
            if conn.total_changes != before:
                self._journal(
                    {
                        "e": "meta",
                        "id": run_id,
                        "name": name,
                        "kind": kind,
                        "has_step": has_step,
                        "description": description,
                    }
                )
        return str(row[0]), None if row[1] is None else bool(row[1])

    def ensure_writer(self) -> None:
        """Start the background metric writer of this process, once."""
        if self._writer is not None and self._writer.is_alive():
            return
        start_writer(self)

    def scalar_buffer(
        self, run_id: str, name: str, has_step: bool
    ) -> tuple[list[Any], list[int] | None]:
        """The process's (values, steps) buffer for one metric of one run."""
        key = (run_id, name)
        buf = self.scalar_buffers.get(key)
        if buf is None:
            with self._lock:
                buf = self.scalar_buffers.setdefault(key, ([], [] if has_step else None))
        return buf

    def has_pending(self) -> bool:
        """Whether any logged value is not yet in the database."""
        if self.other_queue:
            return True
        return any(vals for vals, _ in list(self.scalar_buffers.values()))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Make every metric logged before this call durable; False if it timed out.

        It first waits for a drain the background writer has in flight (values it took
        out of the buffers are stored only once it commits), then drains what is left,
        once: values other threads log meanwhile are the writer's, so a thread that
        keeps logging cannot keep flush() (or get_metrics()) going.
        """
        wait = -1.0 if timeout_s is None else max(0.0, timeout_s)
        if not self._drain_lock.acquire(timeout=wait):
            return False
        try:
            self._drain()
        finally:
            self._drain_lock.release()
        return True

    def _drain(self) -> None:
        """Move what the buffers hold now into the database, one chunk per (run, metric)."""
        now = time.time()
        rows = []
        taken: list[tuple[list[Any], list[int] | None, list[Any], list[int] | None]] = []
        for (run_id, name), (vals, steps) in list(self.scalar_buffers.items()):
            n = len(vals) if steps is None else min(len(vals), len(steps))
            if not n:
                continue
            chunk = vals[:n]
            del vals[:n]
            schunk: list[int] | None = None
            if steps is not None:
                schunk = steps[:n]
                del steps[:n]
            taken.append((vals, steps, chunk, schunk))
            enc, data = _encode_values(chunk)
            sdata = None if schunk is None else array("q", schunk).tobytes()
            rows.append((run_id, name, enc, data, sdata, n, now))
        oq = self.other_queue
        others: dict[tuple[str, str], list[Any]] = {}
        popped = []
        for _ in range(len(oq)):
            item = oq.popleft()
            popped.append(item)
            others.setdefault((item[0], item[1]), []).append(item[2])
        for (run_id, name), values in others.items():
            data = json.dumps(values, separators=(",", ":")).encode()
            rows.append((run_id, name, _ENC_JSON, data, None, len(values), now))
        if not rows:
            return
        runs = sorted({r[0] for r in rows})
        doing = f"record metrics for run {', '.join(runs[:3])}" + (" and more" if runs[3:] else "")
        try:
            with self.write(doing) as conn:
                conn.executemany(
                    "INSERT INTO metrics(run_id, name, enc, data, steps, count, time_utc) "
                    "VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
                if self.journal is not None:
                    self._journal({"e": "metrics", "rows": [_b64_row(r) for r in rows]})
        except BaseException:
            # Never lose values to a passing error: put them back in front for the next
            # try (the caller's flush raises; the writer says so once and tries again).
            for vals, steps, chunk, schunk in taken:
                vals[0:0] = chunk
                if steps is not None and schunk is not None:
                    steps[0:0] = schunk
            oq.extendleft(reversed(popped))
            raise

    def read_metrics(self, run_id: str, name: str | None = None) -> dict[str, MetricSeries]:
        """Every metric of a run (or one), with values in logging order."""
        meta_sql = "SELECT name, kind, description FROM metric_meta WHERE run_id = ?"
        data_sql = "SELECT name, enc, data, steps FROM metrics WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if name is not None:
            meta_sql += " AND name = ?"
            data_sql += " AND name = ?"
            params = (run_id, name)
        with self._lock:
            meta = self.query(meta_sql, params)
            chunks = self.query(data_sql + " ORDER BY name, id", params)
        series = {m_name: MetricSeries(kind, desc or "") for m_name, kind, desc in meta}
        for m_name, enc, data, steps in chunks:
            s = series.get(m_name)
            if s is None:  # chunk written before its meta row became visible
                s = series[m_name] = MetricSeries("scalar", "")
            s.values.extend(_decode_values(enc, data))
            if steps is not None:
                a = array("q")
                a.frombytes(steps)
                if s.steps is None:
                    s.steps = []
                s.steps.extend(a.tolist())
        return {k: v for k, v in series.items() if v.values or v.kind != "scalar"}

    def metric_times(self, run_id: str) -> dict[str, list[float]]:
        """When each value of each metric of a run was stored: name -> one UTC time per value.

        Values are stored in chunks (one per flush), so values of one chunk share a time.
        """
        with self._lock:
            rows = self.query(
                "SELECT name, count, time_utc FROM metrics WHERE run_id = ? ORDER BY name, id",
                (run_id,),
            )
        times: dict[str, list[float]] = {}
        for name, count, time_utc in rows:
            times.setdefault(name, []).extend([time_utc] * count)
        return times

    # -- files -----------------------------------------------------------------------


def _b64_row(row: tuple[Any, ...]) -> list[Any]:
    """A metrics row as JSON: the packed value and step bytes in base64."""
    run_id, name, enc, data, steps, count, when = row
    return [
        run_id,
        name,
        enc,
        base64.b64encode(data).decode(),
        None if steps is None else base64.b64encode(steps).decode(),
        count,
        when,
    ]
