"""Server-Sent Events of the studio: run statuses, new metric points, log lines.

Each stream polls the run history (or the log file) every ``POLL_S`` and sends only what
is new; event ids let a browser resume after a reconnect (``Last-Event-ID``): the
metric row id for metric events, the byte offset for log events.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from runner import views
from runner.status import TERMINAL_VALUES
from runner.store import Store

#: How often a stream looks for news (the live latency is about this plus the writer's).
POLL_S = 0.05
#: A comment line this often keeps proxies and the browser from closing an idle stream.
KEEPALIVE_S = 15.0
#: The most bytes of log one event carries, and events one look sends.
LOG_CHUNK = 256 * 1024
_CHUNKS_PER_STEP = 16
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


#: What one look for news gives: the events to send, and whether the stream is over.
Step = Callable[[], Awaitable[tuple[list[bytes], bool]]]


async def _paced(step: Step, disconnected: Disconnected) -> AsyncIterator[bytes]:
    """Call ``step`` every POLL_S and send what it finds, until it says the stream is
    over or the browser has gone; a keepalive comment after KEEPALIVE_S of silence."""
    quiet = 0.0
    while True:
        events, done = await step()
        for item in events:
            yield item
        if done:
            return
        quiet = 0.0 if events else quiet + POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keepalive\n\n"
        await asyncio.sleep(POLL_S)
        if await disconnected():
            return


def statuses(
    store: Store, run_ids: Sequence[str], disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """``status`` events ({runId: {...}}) whenever one of the runs changes; ends when all
    have ended."""
    known: dict[str, Any] = {}

    async def step() -> tuple[list[bytes], bool]:
        now = await asyncio.to_thread(views.statuses, store, run_ids)
        changed = {k: v for k, v in now.items() if known.get(k) != v}
        known.update(changed)
        events = [event(changed, "status")] if changed else []
        if all(v["status"] in _TERMINAL for v in now.values()):
            return [*events, event({}, "end")], True
        return events, False

    return _paced(step, disconnected)


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
        points.append({"name": name, "x": series.x, "y": series.y, "t": series.t})
        top = max(top, last)
    return summary, points, top


def run_events(
    store: Store, run_id: str, after_id: int, disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """A run's ``status`` events (on change) and ``metric`` events (the scalar points
    stored after metric row ``after_id``; id: the last row sent). Ends after the run
    ended and its last points were sent."""
    last_status: Any = None
    after = after_id

    async def step() -> tuple[list[bytes], bool]:
        nonlocal last_status, after
        summary, points, top = await asyncio.to_thread(_news, store, run_id, after)
        if summary is None:
            return [event({"error": f"no run {run_id}"}, "end")], True
        events = []
        status = (summary["status"], summary["statusDetails"], summary["endUtc"])
        if status != last_status:
            last_status = status
            events.append(event(summary, "status"))
        if points:
            after = top
            events.append(event(points, "metric", top))
        if summary["status"] in _TERMINAL and not points:
            return [*events, event({}, "end")], True
        return events, False

    return _paced(step, disconnected)


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


def log_lines(
    store: Store, run_id: str, path: Path, offset: int, disconnected: Disconnected
) -> AsyncIterator[bytes]:
    """``log`` events with the text after byte ``offset`` of the log (id: the offset
    after it), as it grows; ``end`` once the run ended and everything was sent."""
    at = offset

    async def step() -> tuple[list[bytes], bool]:
        nonlocal at
        events = []
        for _ in range(_CHUNKS_PER_STEP):
            data = await asyncio.to_thread(_read_log, path, at)
            if not data:
                break
            at += len(data)
            events.append(event({"text": data.decode("utf-8", errors="replace")}, "log", at))
        if events:
            return events, False
        rows = await asyncio.to_thread(
            store.query, "SELECT status FROM runs WHERE id = ?", (run_id,)
        )
        # Ended: one more read catches what was written just before the end.
        if (not rows or rows[0][0] in _TERMINAL) and not await asyncio.to_thread(
            _read_log, path, at
        ):
            return [event({"offset": at}, "end")], True
        return [], False

    return _paced(step, disconnected)
