"""The studio's pages as HTML text: server-rendered, every value escaped, no inline
script or style (the CSP forbids both); ``static/studio.js`` adds the live parts, reading
what it needs from ``data-`` attributes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from runner.status import ACTIVE_VALUES

JSONDict = dict[str, Any]
_ACTIVE = frozenset(ACTIVE_VALUES)


def e(value: object) -> str:
    """Escaped text of a value ('' for None)."""
    return "" if value is None else escape(str(value), quote=True)


def when(utc: float | None) -> str:
    """A UTC time as ``2026-12-04 06:11:03``, or '' when there is none."""
    if utc is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(utc)))


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 04s``, ``5.2s``, or ''."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def number(value: object) -> str:
    """A metric value, short."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return e(value)


def page(title: str, body: str, csrf: str, page_kind: str, **data: str) -> str:
    """A whole page: head (static CSS and JS), the navigation bar, ``body``."""
    attrs = "".join(f' data-{e(k.replace("_", "-"))}="{e(v)}"' for k, v in data.items())
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{e(csrf)}">'
        f"<title>{e(title)} · runner studio</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/uPlot.min.css">'
        '<link rel="stylesheet" href="/static/studio.css">'
        '<script src="/static/uPlot.iife.min.js" defer></script>'
        '<script src="/static/studio.js" defer></script></head>'
        f'<body data-page="{e(page_kind)}"{attrs}>'
        '<nav><a class="brand" href="/">runner studio</a><a href="/">Experiments</a>'
        '<a href="/daemon">Daemon</a></nav>'
        f"<main>{body}</main></body></html>\n"
    )


def badge(status: str, run_id: str | None = None) -> str:
    """A status badge; with ``run_id`` the live scripts keep it current."""
    ident = f' data-status-of="{e(run_id)}"' if run_id else ""
    return f'<span class="status s-{e(status)}"{ident}>{e(status)}</span>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    out = [f'<table class="{e(cls)}"><thead><tr>']
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def key_values(values: Mapping[str, Any], remove: str | None = None, csrf: str = "") -> str:
    """Key/value pairs as a table, or a note when there are none; with ``remove`` (a form
    action) each row has a button that POSTs the key's removal."""
    if not values:
        return '<p class="muted">none</p>'

    def row(k: str, v: Any) -> list[str]:
        cells = [e(k), e(v)]
        if remove:
            cells.append(
                f'<form method="post" action="{e(remove)}" class="inline">'
                f'<input type="hidden" name="csrf" value="{e(csrf)}">'
                f'<input type="hidden" name="key" value="{e(k)}">'
                '<input type="hidden" name="remove" value="1">'
                f'<button class="small" title="remove tag {e(k)}">×</button></form>'
            )
        return cells

    head = ["key", "value", ""] if remove else ["key", "value"]
    return table(head, (row(k, v) for k, v in sorted(values.items())), "kv")


def experiments_page(items: Sequence[JSONDict], csrf: str, workspace: str) -> str:
    """The first page: every experiment of the workspace."""
    rows = [
        [
            f'<a href="/experiments/{quote(x["name"], safe="")}">{e(x["name"])}</a>',
            e(x["runs"]),
            e(x["active"]),
            e(when(x["lastCreatedUtc"])),
        ]
        for x in items
    ]
    body = (
        f'<h1>Experiments</h1><p class="muted">workspace {e(workspace)}</p>'
        + (
            table(["experiment", "runs", "active", "last run (UTC)"], rows, "grid")
            if rows
            else '<p class="muted">no experiments yet: submit a run</p>'
        )
        + '<p><a href="/runs">all runs</a></p>'
    )
    return page("Experiments", body, csrf, "experiments")


def _link(base: str, params: Mapping[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")}, doseq=True)
    return f"{base}?{query}" if query else base


def runs_page(
    experiment: str | None,
    result: JSONDict,
    params: Mapping[str, Any],
    columns: Sequence[str],
    csrf: str,
    error: str | None = None,
) -> str:
    """A runs table with its filter, sort links, pager and compare selection. ``columns``
    are the chosen ones: ``tags.KEY``, ``properties.KEY`` (``props.KEY``) or a metric
    (``NAME`` or ``metrics.NAME``, its last value); each sorts the table."""
    base = f"/experiments/{quote(experiment, safe='')}" if experiment else "/runs"
    sort, desc = params.get("sort", "created"), params.get("desc", "1") != "0"

    def header(label: str, key: str) -> str:
        arrow = (" ▼" if desc else " ▲") if sort == key else ""
        flip = "0" if (sort == key and desc) else "1"
        href = _link(base, params, sort=key, desc=flip, page=None)
        return f'<a href="{e(href)}">{e(label)}{arrow}</a>'

    head = [
        "",
        header("#", "number"),
        header("run", "name"),
        header("status", "status"),
        header("target", "target"),
        header("created (UTC)", "created"),
        header("duration", "duration"),
        "tags",
        *[header(c, _column_key(c)) for c in columns],
    ]
    rows = []
    for run in result["runs"]:
        indent = "↳ " if run["parentRunId"] else ""
        kids = ""
        if run["childCount"]:
            href = _link(base, {}, filter=f"parent = {json.dumps(run['runId'])}")
            kids = f' <a class="muted" href="{e(href)}">({run["childCount"]} child runs)</a>'
        rows.append(
            [
                f'<input type="checkbox" name="runs" value="{e(run["runId"])}" form="compare">',
                e(run["number"]),
                f'{indent}<a href="/runs/{quote(run["runId"], safe="")}">'
                f"{e(run['displayName'])}</a>{kids}",
                badge(run["status"], run["runId"]),
                e(run["target"]),
                e(when(run["createdUtc"])),
                e(duration(run["durationS"])),
                " ".join(
                    f'<span class="tag">{e(k)}{"=" + e(v) if v is not None else ""}</span>'
                    for k, v in sorted(run["tags"].items())
                ),
                *[_column_cell(run, c) for c in columns],
            ]
        )
    total, offset, limit = result["total"], result["offset"], result["limit"]
    pager = [
        f'<span class="muted">{offset + 1 if total else 0}-{offset + len(rows)} of {total}</span>'
    ]
    page_no = offset // limit
    if page_no > 0:
        pager.insert(0, f'<a href="{e(_link(base, params, page=page_no - 1))}">‹ newer</a>')
    if offset + len(rows) < total:
        pager.append(f'<a href="{e(_link(base, params, page=page_no + 1))}">older ›</a>')
    title = experiment or "All runs"
    form = (
        f'<form class="filter" method="get" action="{e(base)}">'
        f'<input name="filter" size="60" value="{e(params.get("filter", ""))}" '
        'placeholder="status IN (Running, Failed) AND tags.lr >= 0.01 AND metrics.loss < 0.2">'
        f'<input name="cols" size="30" value="{e(",".join(columns))}" '
        'placeholder="columns: loss,tags.lr,properties.x">'
        f'<input type="hidden" name="sort" value="{e(sort)}">'
        f'<input type="hidden" name="desc" value="{"1" if desc else "0"}">'
        "<button>Apply</button></form>"
    )
    problem = f'<p class="error" id="filter-error">{e(error)}</p>' if error else ""
    if not params.get("filter"):
        flat = params.get("all") == "1"
        levels = _link(base, params, all=None if flat else "1", page=None)
        problem += (
            f'<p><a id="levels" href="{e(levels)}">'
            f"{'top-level runs only' if flat else 'show child runs too'}</a></p>"
        )
    ids = ",".join(r["runId"] for r in result["runs"] if r["status"] in _ACTIVE)
    body = (
        f"<h1>{e(title)}</h1>{form}{problem}"
        '<form id="compare" method="get" action="/compare"><button>Compare selected</button></form>'
        + table(head, rows, "grid runs")
        + f'<p class="pager">{" ".join(pager)}</p>'
    )
    return page(title, body, csrf, "runs", live_ids=ids)


def _column_key(column: str) -> str:
    """The sort key of a chosen column: itself for tags/properties, else metrics.NAME."""
    prefix, dot, _ = column.partition(".")
    if dot and prefix in ("tags", "properties", "props", "metrics"):
        return column
    return f"metrics.{column}"


def _column_cell(run: JSONDict, column: str) -> str:
    prefix, _, key = _column_key(column).partition(".")
    if prefix == "metrics":
        return number(run.get("metrics", {}).get(key, {}).get("last"))
    value = run["tags" if prefix == "tags" else "properties"].get(key)
    return "" if value is None else e(value)


def run_page(
    run: JSONDict,
    details: JSONDict,
    metrics: Sequence[JSONDict],
    files: Sequence[tuple[str, int]],
    children: Sequence[JSONDict],
    csrf: str,
) -> str:
    """One run: details, status, tags (editable), properties, charts, files, logs."""
    rid = run["runId"]
    qid = quote(rid, safe="")
    active = run["status"] in _ACTIVE
    cancel = (
        f'<form method="post" action="/runs/{qid}/cancel" class="inline">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<button id="cancel" class="danger">Cancel run</button></form>'
        if active
        else ""
    )
    parent = (
        f'<a href="/runs/{quote(run["parentRunId"], safe="")}">{e(run["parentRunId"])}</a>'
        if run["parentRunId"]
        else ""
    )
    facts = [
        ("run id", e(rid)),
        (
            "experiment",
            f'<a href="/experiments/{quote(run["experiment"], safe="")}">{e(run["experiment"])}</a>',
        ),
        ("number", e(run["number"])),
        ("type", e(run["type"])),
        ("target", e(run["target"])),
        ("created (UTC)", e(when(run["createdUtc"]))),
        ("started (UTC)", f'<span id="started">{e(when(run["startUtc"]))}</span>'),
        ("ended (UTC)", f'<span id="ended">{e(when(run["endUtc"]))}</span>'),
        ("duration", f'<span id="duration">{e(duration(run["durationS"]))}</span>'),
        ("parent", parent),
    ]
    if details.get("command"):
        facts.append(("re-run", f'<code class="copy">{e(details["command"])}</code>'))
    if details.get("snapshot"):
        facts.append(
            ("snapshot", f'<a href="/runs/{qid}/snapshot.zip">download the source (zip)</a>')
        )
    if details.get("error"):
        facts.append(("error", f'<pre class="error">{e(details["error"])}</pre>'))
    tag_form = (
        f'<form method="post" action="/runs/{qid}/tags" class="inline" id="tag-form">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<input name="key" placeholder="key" required><input name="value" placeholder="value">'
        "<button>Set tag</button></form>"
    )
    charts = []
    others = []
    for m in metrics:
        name = m["name"]
        if m["kind"] == "scalar":
            charts.append(f'<div class="chart" data-metric="{e(name)}"><h3>{e(name)}</h3></div>')
        else:
            others.append(
                f'<div class="other" data-metric="{e(name)}" data-kind="{e(m["kind"])}">'
                f'<h3>{e(name)} <span class="muted">{e(m["kind"])}</span></h3></div>'
            )
    file_rows = [
        [
            f'<a href="/runs/{qid}/file?{urlencode({"name": name})}">{e(name)}</a>',
            e(size),
        ]
        for name, size in files
    ]
    child_rows = [
        [
            f'<a href="/runs/{quote(c["runId"], safe="")}">{e(c["displayName"])}</a>',
            badge(c["status"], c["runId"]),
        ]
        for c in children
    ]
    body = (
        f"<h1>{e(run['displayName'])} {badge(run['status'], rid)} {cancel}</h1>"
        f'<p class="muted" id="status-details">{e(run["statusDetails"] or "")}</p>'
        '<section class="cols"><div>'
        + table(["", ""], ([f"<b>{k}</b>", v] for k, v in facts), "facts")
        + "</div><div><h2>Tags</h2>"
        + key_values(run["tags"], f"/runs/{qid}/tags", csrf)
        + tag_form
        + "<h2>Properties</h2>"
        + key_values(run["properties"])
        + "</div></section>"
        + '<h2>Metrics</h2><div class="chart-tools"><label>smoothing '
        '<select id="smooth-kind"><option value="ema">EMA</option>'
        '<option value="ma">moving average</option></select> '
        '<input type="range" id="smooth" min="0" max="0.99" step="0.01" value="0"></label>'
        '<label><input type="checkbox" id="band"> min/max band</label>'
        '<label><input type="checkbox" id="logy"> log y</label>'
        '<label>x <select id="xaxis"><option value="step">step</option>'
        '<option value="relative">time since start (s)</option>'
        '<option value="wall">wall clock</option></select></label></div>'
        + (f'<div class="charts">{"".join(charts)}</div>' if charts else "")
        + "".join(others)
        + ("" if metrics else '<p class="muted" id="no-metrics">no metrics yet</p>')
        + (
            ("<h2>Child runs</h2>" + table(["run", "status"], child_rows, "grid"))
            if children
            else ""
        )
        + _environment(qid, details.get("environment"), details.get("lock"))
        + "<h2>Logs</h2>"
        '<div class="log-tools"><select id="log-which"><option value="">driver log</option>'
        '<option value="prep">environment preparation log</option></select>'
        '<label><input type="checkbox" id="follow" checked> follow</label>'
        '<input id="log-search" placeholder="search the log"></div>'
        f'<pre id="log" data-src="/api/runs/{qid}/log"></pre>'
        + "<h2>Files</h2>"
        + f'<div id="files" data-src="/api/runs/{qid}/files">'
        + (
            table(["name", "bytes"], file_rows, "grid")
            if file_rows
            else '<p class="muted">none yet</p>'
        )
        + "</div>"
    )
    return page(
        run["displayName"],
        body,
        csrf,
        "run",
        run_id=rid,
        status=run["status"],
        start_utc=str(run["startUtc"] or ""),
    )


def _environment(qid: str, environment: Any, lock: tuple[str, str] | None) -> str:
    """The run's environment definition and, next to it, the lock it was built from."""
    if not environment and lock is None:
        return ""
    body = f'<pre class="json">{e(json.dumps(environment, indent=2))}</pre>' if environment else ""
    if lock is not None:
        name, text = lock
        link = f"/runs/{qid}/file?{urlencode({'name': name})}"
        body += (
            f'<p>lock: <a id="lock-download" href="{e(link)}" download>{e(name)}</a></p>'
            f'<pre id="lock">{e(text)}</pre>'
        )
    return f'<details id="environment"><summary>Environment</summary>{body}</details>'


def compare_page(
    runs: Sequence[JSONDict],
    metric_names: Sequence[str],
    show_all: bool,
    csrf: str,
) -> str:
    """Chosen runs side by side: what differs (or everything), and overlaid curves."""
    rows_by_label: dict[str, list[Any]] = {}

    def put(label: str, i: int, value: Any) -> None:
        rows_by_label.setdefault(label, [None] * len(runs))[i] = value

    for i, run in enumerate(runs):
        put("status", i, run["status"])
        put("target", i, run["target"])
        put("duration", i, duration(run["durationS"]))
        for k, v in run["tags"].items():
            put(f"tags.{k}", i, v)
        for k, v in run["properties"].items():
            put(f"properties.{k}", i, v)
        for k, v in run.get("metrics", {}).items():
            put(f"metrics.{k}", i, number(v["last"]))
    rows = [
        [e(label), *[e(v) for v in values]]
        for label, values in sorted(rows_by_label.items())
        if show_all or len({json.dumps(v) for v in values}) > 1
    ]
    head = [
        "",
        *[f'<a href="/runs/{quote(r["runId"], safe="")}">{e(r["displayName"])}</a>' for r in runs],
    ]
    ids = [r["runId"] for r in runs]
    toggle = _link("/compare", {"runs": ids}, all=None if show_all else "1")
    axes = _parallel_axes(runs)
    parallel = (
        '<h2>Parameters and final metrics</h2><canvas id="parallel" width="1100" height="320" '
        f'data-axes="{e(json.dumps(axes))}"></canvas>'
        if len(axes["names"]) >= 2
        else ""
    )
    body = (
        "<h1>Compare</h1>"
        f'<p><a href="{e(toggle)}">{"only what differs" if show_all else "show everything"}</a></p>'
        + table(head, rows, "grid compare")
        + parallel
        + '<h2>Metrics</h2><div class="charts">'
        + "".join(
            f'<div class="chart" data-metric="{e(m)}"><h3>{e(m)}</h3></div>' for m in metric_names
        )
        + "</div>"
    )
    return page("Compare", body, csrf, "compare", runs=",".join(ids))


def _parallel_axes(runs: Sequence[JSONDict]) -> JSONDict:
    """Parallel coordinates: one axis per numeric tag, property and final metric that
    differs between the runs; ``{"names": [...], "runs": [{"id", "values": [...]}]}``."""
    table_: dict[str, list[float | None]] = {}
    for i, run in enumerate(runs):
        found: dict[str, Any] = {
            **{f"tags.{k}": v for k, v in run["tags"].items()},
            **{f"properties.{k}": v for k, v in run["properties"].items()},
            **{f"metrics.{k}": v["last"] for k, v in run.get("metrics", {}).items()},
        }
        for name, value in found.items():
            try:
                number_ = float(value)
            except (TypeError, ValueError):
                continue
            table_.setdefault(name, [None] * len(runs))[i] = number_
    names = [
        n
        for n in sorted(table_, key=lambda n: (n.startswith("metrics."), n))
        if len({v for v in table_[n] if v is not None}) > 1
    ]
    return {
        "names": names,
        "runs": [
            {"id": run["runId"], "values": [table_[n][i] for n in names]}
            for i, run in enumerate(runs)
        ],
    }


def _run_link(run_id: str) -> str:
    return f'<a href="/runs/{quote(run_id, safe="")}">{e(run_id)}</a>'


def daemon_page(
    state: JSONDict, gpus: Sequence[JSONDict], active: Sequence[JSONDict], csrf: str
) -> str:
    """The workspace daemon: whether it runs, its slots and queue, the GPUs with their
    utilisation and memory, and what each active run waits for."""
    if state.get("running"):
        limit = state.get("maxConcurrent") or "no limit"
        head = (
            f"<p>running, pid {e(state.get('pid'))}; runs at once: {e(limit)}; "
            f"system metrics every {e(state.get('systemMetricsSeconds'))} s</p>"
        )
    else:
        head = '<p class="muted">not running (a submit starts it)</p>'
    slots = state.get("slots") or {}
    slot_rows = [[_run_link(rid), e(", ".join(map(str, ids)) or "-")] for rid, ids in slots.items()]
    queue_rows = [[e(i + 1), _run_link(rid)] for i, rid in enumerate(state.get("queue") or [])]
    gpu_rows = [
        [
            e(g["index"]),
            e(g["name"]),
            e(f"{g['utilization']:.0f} %" if "utilization" in g else "?"),
            e(
                f"{g['memory_used_mb']:.0f} / {g['memoryTotalMb']} MiB"
                if "memory_used_mb" in g
                else f"? / {g['memoryTotalMb']} MiB"
            ),
            e("free" if g["index"] in (state.get("freeGpus") or []) else "in use"),
        ]
        for g in gpus
    ]
    run_rows = [
        [
            f'<a href="/runs/{quote(r["runId"], safe="")}">{e(r["displayName"])}</a>',
            badge(r["status"], r["runId"]),
            f'<span data-details-of="{e(r["runId"])}">{e(r["statusDetails"] or "")}</span>',
        ]
        for r in active
    ]
    body = (
        "<h1>Daemon</h1>"
        + head
        + "<h2>Slots</h2>"
        + (
            table(["run", "GPUs"], slot_rows, "grid")
            if slot_rows
            else '<p class="muted">none taken</p>'
        )
        + "<h2>Queue</h2>"
        + (table(["#", "run"], queue_rows, "grid") if queue_rows else '<p class="muted">empty</p>')
        + "<h2>GPUs</h2>"
        + (
            table(["#", "name", "utilisation", "memory", "scheduler"], gpu_rows, "grid")
            if gpu_rows
            else '<p class="muted">no GPUs found (NVML)</p>'
        )
        + "<h2>Active runs and what they wait for</h2>"
        + (
            table(["run", "status", "details"], run_rows, "grid")
            if run_rows
            else '<p class="muted">none</p>'
        )
    )
    ids = ",".join(r["runId"] for r in active)
    return page("Daemon", body, csrf, "runs", live_ids=ids)
