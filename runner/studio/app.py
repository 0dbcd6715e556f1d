"""The studio's routes: pages, JSON for charts, event streams, file downloads, and the
two writes (cancel, tags), as a Starlette application wrapped in the guard.

All state is in the URL (filters, sort, page, chosen runs). A stored file is addressed
only by (run id, stored name) and looked up in the run history; a name the history does
not hold is a 404, so no path the browser sends ever reaches the file system.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner import daemon_client, snapshot, views
from runner.control import request_cancel
from runner.envbuild import LOCK_ARTIFACTS
from runner.errors import UserError
from runner.run_tags import _check_tag_key, _check_tag_value
from runner.service import gpus as gpus_mod
from runner.status import ACTIVE_VALUES
from runner.store import loads_or_none
from runner.studio import live, pages
from runner.studio.security import Guard, GuardMiddleware
from runner.view_filter import KV_TABLES

if TYPE_CHECKING:
    from runner.workspace import Workspace

STATIC = Path(__file__).resolve().parent / "static"
#: Stored files served inline only when the browser cannot run them (no HTML, no SVG).
_INLINE = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".txt", ".log", ".json", ".csv"}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_DRIVER_LOG = "logs/70_driver_log.txt"
_PREP_LOG = "logs/55_environment_prep_log.txt"
#: How much of an environment lock the run page shows (the download has all of it).
_LOCK_SHOWN = 200_000


class Studio:
    """The routes over one workspace (the server's only workspace)."""

    def __init__(self, ws: Workspace, guard: Guard) -> None:
        self.ws = ws
        self.guard = guard
        self.cache = views.SeriesCache()

    @property
    def store(self) -> Any:
        return self.ws.store

    def html(self, text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers={"cache-control": "no-store"})

    # -- pages ------------------------------------------------------------------------

    def experiments(self, request: Request) -> Response:
        items = views.experiments(self.store)
        return self.html(pages.experiments_page(items, self.guard.csrf_token, str(self.ws.path)))

    def runs(self, request: Request) -> Response:
        experiment = request.path_params.get("name")
        q = request.query_params
        params = {k: q[k] for k in ("filter", "sort", "desc", "cols", "size", "all") if q.get(k)}
        # Top-level runs, children behind their parent's link; a filter searches all levels.
        top_level_only = q.get("all") != "1" and not q.get("filter", "").strip()
        cols = [c.strip() for c in q.get("cols", "").split(",") if c.strip()]
        size = _int(q.get("size"), 50)
        page_no = _int(q.get("page"), 0)
        error = None
        try:
            result = views.runs_page(
                self.store,
                experiment=experiment,
                filter_text=q.get("filter", ""),
                sort=q.get("sort", "created"),
                descending=q.get("desc", "1") != "0",
                offset=page_no * size,
                limit=size,
                metric_columns=_metric_columns(cols),
                top_level_only=top_level_only,
            )
        except ValueError as exc:
            error = str(exc)
            result = {"total": 0, "offset": 0, "limit": size, "runs": []}
        text = pages.runs_page(experiment, result, params, cols, self.guard.csrf_token, error)
        return self.html(text)  # a bad filter is said on the page, as a form would

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        summary = views.run_summary(self.store, run_id)
        if summary is None:
            return PlainTextResponse(f"no run {run_id} in this workspace", status_code=404)
        row = self.store.get_run(run_id)
        definition = (loads_or_none(row.definition) or {}) if row else {}
        details = {
            "error": _error_text(row.error if row else None),
            "command": _rerun_command(summary, definition),
            "environment": definition.get("environment"),
            "snapshot": self._snapshot_id(run_id) is not None,
        }
        metrics = views.metric_names(self.store, run_id)
        stored = self.store.list_files(run_id)
        files = [(name, size) for name, _digest, size in stored]
        details["lock"] = self._lock(stored)
        children = views.runs_page(self.store, parent_id=run_id, limit=100, descending=False)
        text = pages.run_page(
            summary, details, metrics, files, children["runs"], self.guard.csrf_token
        )
        return self.html(text)

    def _lock(self, stored: list[tuple[str, str, int]]) -> tuple[str, str] | None:
        """(name, text) of the environment lock the supervisor stored with the run."""

        for name, digest, size in stored:
            if name in LOCK_ARTIFACTS:
                data = self.ws.blobs.read_bytes(digest, what=name)[:_LOCK_SHOWN]
                cut = f"\n… ({size:,} bytes in all; download it)" if size > _LOCK_SHOWN else ""
                return name, data.decode("utf-8", "replace") + cut
        return None

    def compare(self, request: Request) -> Response:
        ids = [i for value in request.query_params.getlist("runs") for i in value.split(",") if i]
        runs = []
        names: set[str] = set()
        for run_id in dict.fromkeys(ids):
            summary = views.run_summary(self.store, run_id)
            if summary is None:
                continue
            scalar = [
                m["name"] for m in views.metric_names(self.store, run_id) if m["kind"] == "scalar"
            ]
            names.update(scalar)
            one = views.runs_page(
                self.store, filter_text=f"id = {json.dumps(run_id)}", metric_columns=scalar
            )
            summary["metrics"] = one["runs"][0].get("metrics", {}) if one["runs"] else {}
            runs.append(summary)
        if not runs:
            return PlainTextResponse("choose runs to compare: /compare?runs=ID,ID", status_code=400)
        show_all = request.query_params.get("all") == "1"
        return self.html(pages.compare_page(runs, sorted(names), show_all, self.guard.csrf_token))

    def daemon(self, request: Request) -> Response:
        try:
            answer = daemon_client.request(self.ws.path, {"op": "status"}, timeout_s=2.0)
            state: dict[str, Any] = {"running": True, **answer}
        except OSError:
            state = {"running": False}
        gpus = [
            {
                "index": g.index,
                "name": g.name,
                "memoryTotalMb": g.memory_total_mb,
                **gpus_mod.sample(g.index),
            }
            for g in gpus_mod.discover()
        ]
        active = views.runs_page(
            self.store,
            filter_text="status IN (NotStarted, Starting, Preparing, Queued, Running, "
            "Finalizing, CancelRequested)",
            limit=200,
            descending=False,
        )
        text = pages.daemon_page(state, gpus, active["runs"], self.guard.csrf_token)
        return self.html(text)

    # -- data ---------------------------------------------------------------------------

    def metric(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        q = request.query_params
        name = q.get("name", "")
        kind_rows = self.store.query(
            "SELECT kind FROM metric_meta WHERE run_id = ? AND name = ?", (run_id, name)
        )
        if not kind_rows:
            return JSONResponse({"error": f"run {run_id} has no metric {name!r}"}, status_code=404)
        if kind_rows[0][0] != "scalar":
            return JSONResponse(live._finite(views.other_metric(self.store, run_id, name)))
        chart = self.cache.chart(
            self.store,
            run_id,
            name,
            buckets=max(10, min(_int(q.get("buckets"), 1000), 10000)),
            x_min=_float(q.get("xmin")),
            x_max=_float(q.get("xmax")),
            by_time=q.get("x") == "time",
        )
        return JSONResponse(chart)

    def runs_json(self, request: Request) -> Response:
        q = request.query_params
        try:
            result = views.runs_page(
                self.store,
                experiment=q.get("experiment"),
                filter_text=q.get("filter", ""),
                sort=q.get("sort", "created"),
                descending=q.get("desc", "1") != "0",
                offset=_int(q.get("offset"), 0),
                limit=_int(q.get("limit"), 50),
                metric_columns=_metric_columns(q.get("cols", "").split(",")),
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(live._finite(result))

    def file(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        name = request.query_params.get("name", "")
        rows = self.store.query(
            "SELECT digest, size FROM files WHERE run_id = ? AND name = ?", (run_id, name)
        )
        if not rows:
            return PlainTextResponse(f"run {run_id} has no stored file {name!r}", status_code=404)
        data = self.ws.blobs.read_bytes(rows[0][0], what=name)
        suffix = Path(name).suffix.lower()
        media = {
            ".png": "image/png",
            ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg",
            ".gif": "image/gif",
            ".webp": "image/webp",
            ".json": "application/json",
        }.get(
            suffix, "text/plain; charset=utf-8" if suffix in _INLINE else "application/octet-stream"
        )
        disposition = "inline" if suffix in _INLINE else "attachment"
        headers = {
            "content-disposition": _disposition(disposition, Path(name).name),
            # Whatever it is, it never runs as this studio's page.
            "content-security-policy": "sandbox; default-src 'none'; img-src 'self'",
        }
        return Response(data, media_type=media, headers=headers)

    def files_json(self, request: Request) -> Response:
        """The run's stored files (name, bytes), for the page to refresh its list."""
        run_id = request.path_params["run_id"]
        files = [[name, size] for name, _digest, size in self.store.list_files(run_id)]
        return JSONResponse({"files": files})

    def _snapshot_id(self, run_id: str) -> str | None:
        rows = self.store.query(
            "SELECT snapshot_id FROM run_snapshots WHERE run_id = ? ORDER BY created_utc LIMIT 1",
            (run_id,),
        )
        return str(rows[0][0]) if rows else None

    def snapshot(self, request: Request) -> Response:
        """The run's source snapshot as a zip (its id comes from the history)."""
        run_id = request.path_params["run_id"]
        snapshot_id = self._snapshot_id(run_id)
        if snapshot_id is None:
            return PlainTextResponse(f"run {run_id} has no snapshot", status_code=404)
        with tempfile.TemporaryDirectory(prefix="runner-studio-") as tmp:
            path = snapshot.to_zip(
                snapshot.load_snapshot(self.ws.blobs, snapshot_id),
                self.ws.blobs,
                Path(tmp) / "snapshot.zip",
            )
            data = path.read_bytes()
        return Response(
            data,
            media_type="application/zip",
            headers={"content-disposition": _disposition("attachment", f"{run_id}-snapshot.zip")},
        )

    # -- streams ------------------------------------------------------------------------

    def status_stream(self, request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:500]
        stream = live.statuses(self.store, ids, request.is_disconnected)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)

    def run_stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        after = _int(request.headers.get("last-event-id") or request.query_params.get("after"), 0)
        stream = live.run_events(self.store, run_id, after, request.is_disconnected)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)

    def log_stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if self.store.get_run(run_id) is None:
            return PlainTextResponse(f"no run {run_id} in this workspace", status_code=404)
        which = _PREP_LOG if request.query_params.get("log") == "prep" else _DRIVER_LOG
        offset = _int(request.headers.get("last-event-id") or request.query_params.get("offset"), 0)
        path = self.ws.run_dir(run_id) / which
        stream = live.log_lines(self.store, run_id, path, offset, request.is_disconnected)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)

    # -- writes (POST only; the guard checked the CSRF token and the Origin) ------------

    def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        row = self.store.get_run(run_id)
        if row is None:
            return PlainTextResponse(f"no run {run_id} in this workspace", status_code=404)
        if row.status in ACTIVE_VALUES:
            request_cancel(self.ws, run_id, reason="canceled from runner studio")
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    async def tags(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await request.form()
        key = str(form.get("key", "")).strip()
        value = str(form.get("value", ""))
        if self.store.get_run(run_id) is None:
            return PlainTextResponse(f"no run {run_id} in this workspace", status_code=404)
        if not key:
            return PlainTextResponse("a tag needs a key", status_code=400)
        key = _check_tag_key(key)  # the rules of run.tag(): a ConfigError is a 400
        if form.get("remove"):
            self.store.remove_tags(run_id, [key])
        else:
            self.store.set_tags(run_id, {key: _check_tag_value(key, value)})
        return RedirectResponse(f"/runs/{run_id}", status_code=303)


def _disposition(kind: str, filename: str) -> str:
    """A Content-Disposition header value for any file name (RFC 6266: an ASCII
    fallback, and the UTF-8 name percent-encoded)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _metric_columns(columns: list[str]) -> list[str]:
    """The metrics among chosen columns: a column is tags.KEY, properties.KEY (their
    values come with every run) or a metric, NAME or metrics.NAME."""
    return [
        c.strip().removeprefix("metrics.")
        for c in columns
        if c.strip() and c.partition(".")[0] not in KV_TABLES
    ]


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _error_text(error: str | None) -> str | None:
    value = loads_or_none(error) if error else None
    if isinstance(value, dict):
        inner = value.get("error", value)
        if isinstance(inner, dict):
            return str(inner.get("message") or json.dumps(inner))
        return str(inner)
    return error


def _rerun_command(run: dict[str, Any], definition: dict[str, Any]) -> str | None:
    """The CLI line that submits this run's script again, when it has one."""
    script = definition.get("script")
    if not script:
        return None
    words = ["runner", "run", "submit-script", "-e", run["experiment"]]
    if definition.get("sourceDirectory"):
        words += ["-d", str(definition["sourceDirectory"])]
    if run["target"] and run["target"] != "local":
        words += ["-t", run["target"]]
    words += [str(script), *map(str, definition.get("arguments") or [])]
    return shlex.join(words)


def make_app(ws: Workspace, guard: Guard) -> GuardMiddleware:
    """The studio's ASGI application over ``ws``, behind ``guard``."""
    studio = Studio(ws, guard)
    routes = [
        Route("/", studio.experiments),
        Route("/runs", studio.runs),
        Route("/experiments/{name}", studio.runs),
        Route("/runs/{run_id}", studio.run),
        Route("/runs/{run_id}/file", studio.file),
        Route("/runs/{run_id}/snapshot.zip", studio.snapshot),
        Route("/runs/{run_id}/cancel", studio.cancel, methods=["POST"]),
        Route("/runs/{run_id}/tags", studio.tags, methods=["POST"]),
        Route("/compare", studio.compare),
        Route("/daemon", studio.daemon),
        Route("/api/runs", studio.runs_json),
        Route("/api/runs/{run_id}/metric", studio.metric),
        Route("/api/runs/{run_id}/files", studio.files_json),
        Route("/api/runs/{run_id}/events", studio.run_stream),
        Route("/api/runs/{run_id}/log", studio.log_stream),
        Route("/api/status", studio.status_stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={UserError: _user_error})
    return GuardMiddleware(_ServerTiming(app), guard)


class _ServerTiming:
    """Adds ``Server-Timing: app;dur=MS``: the time until the response starts (a page's
    or a chart's whole work; for an event stream, until its first byte). bench/studio.py
    reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                dur = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={dur:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, timed)


async def _user_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc), status_code=400)
