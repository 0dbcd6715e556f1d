"""Server-Sent Events of the studio: run statuses, new metric points, log lines.

Each stream polls the run history (or the log file) every ``POLL_S`` and sends only what
is new; event ids let a browser resume after a reconnect (``Last-Event-ID``): the
metric row id for metric events, the byte offset for log events.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from runner import views
from runner.status import TERMINAL_VALUES
from runner.store import Store

#: How often a stream looks for news (the live latency is about this plus the writer's).
POLL_S = 0.05
#: A comment line this often keeps proxies and the browser from closing an idle stream.
KEEPALIVE_S = 15.0
#: The most bytes of log one event carries.
LOG_CHUNK = 256 * 1024
_TERMINAL = frozenset(TERMINAL_VALUES)

Disconnected = Callable[[], Any]
JSONDictOrNone = dict[str, Any] | None


def event(data: Any, name: str | None = None, ident: int | str | None = None) -> bytes:
    """One SSE event; ``data`` as JSON (NaN and infinities as null)."""
    lines = []
    if name:
        lines.append(f"event: {name}")
    if ident is not None:
        lines.append(f"id: {ident}")
    lines.append("data: " + json.dumps(_finite(data), separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


async def _idle(disconnected: Disconnected) -> bool:
    """Sleep one poll; True when the browser has gone."""
    await asyncio.sleep(POLL_S)
    return bool(await disconnected())


async def statuses(
    store: Store, run_ids: Sequence[str], disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """``status`` events ({runId: {...}}) whenever one of the runs changes; ends when all
    have ended."""
    known: dict[str, Any] = {}
    quiet = 0.0
    while True:
        now = await asyncio.to_thread(views.statuses, store, run_ids)
        changed = {k: v for k, v in now.items() if known.get(k) != v}
        if changed:
            known.update(changed)
            yield event(changed, "status")
            quiet = 0.0
        if all(v["status"] in _TERMINAL for v in now.values()):
            yield event({}, "end")
            return
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keepalive\n\n"
        if await _idle(disconnected):
            return


def _new_metric_rows(store: Store, run_id: str, after_id: int) -> list[tuple[str, int]]:
    return [
        (str(name), int(last))
        for name, last in store.query(
            "SELECT m.name, MAX(m.id) FROM metrics m JOIN metric_meta mm ON mm.run_id = m.run_id "
            "AND mm.name = m.name WHERE m.run_id = ? AND m.id > ? AND mm.kind = 'scalar' "
            "GROUP BY m.name",
            (run_id, after_id),
        )
    ]


def _news(store: Store, run_id: str, after_id: int) -> tuple[JSONDictOrNone, list[Any], int]:
    summary = views.run_summary(store, run_id)
    points = []
    top = after_id
    for name, last in _new_metric_rows(store, run_id, after_id):
        series = views.read_series(store, run_id, name, after_id)
        points.append({"name": name, "x": series.x, "y": series.y})
        top = max(top, last)
    return summary, points, top


async def run_events(
    store: Store, run_id: str, after_id: int, disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """A run's ``status`` events (on change) and ``metric`` events (the scalar points
    stored after metric row ``after_id``; id: the last row sent). Ends after the run
    ended and its last points were sent."""
    last_status: Any = None
    quiet = 0.0
    while True:
        summary, points, top = await asyncio.to_thread(_news, store, run_id, after_id)
        if summary is None:
            yield event({"error": f"no run {run_id}"}, "end")
            return
        status = (summary["status"], summary["statusDetails"], summary["endUtc"])
        if status != last_status:
            last_status = status
            yield event(summary, "status")
            quiet = 0.0
        if points:
            after_id = top
            yield event(points, "metric", top)
            quiet = 0.0
        if summary["status"] in _TERMINAL and not points:
            yield event({}, "end")
            return
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keepalive\n\n"
        if await _idle(disconnected):
            return


def _read_log(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(LOG_CHUNK)
    except FileNotFoundError:
        return b""
    # Send whole UTF-8 characters only: the offset of the next event starts at one.
    for cut in range(4):
        try:
            (data[: len(data) - cut] if cut else data).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return data[: len(data) - cut] if cut else data
    return data  # not UTF-8 at all: sent with replacement characters


async def log_lines(
    store: Store, run_id: str, path: Path, offset: int, disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """``log`` events with the text after byte ``offset`` of the log (id: the offset
    after it), as it grows; ``end`` once the run ended and everything was sent."""
    quiet = 0.0
    while True:
        data = await asyncio.to_thread(_read_log, path, offset)
        if data:
            offset += len(data)
            yield event({"text": data.decode("utf-8", errors="replace")}, "log", offset)
            quiet = 0.0
            continue
        rows = await asyncio.to_thread(
            store.query, "SELECT status FROM runs WHERE id = ?", (run_id,)
        )
        if not rows or rows[0][0] in _TERMINAL:
            if not await asyncio.to_thread(_read_log, path, offset):
                yield event({"offset": offset}, "end")
                return
            continue
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keepalive\n\n"
        if await _idle(disconnected):
            return
