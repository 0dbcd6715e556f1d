// runner studio: the live parts of the server-rendered pages. No inline script (CSP);
// everything this needs is in data- attributes. Live data comes as Server-Sent Events.
"use strict";
(function () {
  const body = document.body;
  const $ = (sel, el) => (el || document).querySelector(sel);
  const $$ = (sel, el) => Array.from((el || document).querySelectorAll(sel));
  const TERMINAL = new Set(["Completed", "Failed", "Canceled"]);
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

  function setStatus(runId, status) {
    for (const el of $$(`[data-status-of="${CSS.escape(runId)}"]`)) {
      el.textContent = status;
      el.className = "status s-" + status;
    }
  }

  function utc(t) {
    if (t === null || t === undefined) return "";
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
  }

  // -- charts -------------------------------------------------------------------------
  const css = getComputedStyle(document.documentElement);
  const ink = () => css.getPropertyValue("--ink").trim() || "#222";
  const grid = () => css.getPropertyValue("--grid").trim() || "#ddd";

  // Smoothing: EMA (the slider is its weight) or a centred moving average (the slider
  // sets its window, 1-101 points); the band is the rolling min and max of that window.
  const smoothing = () => ({
    kind: ($("#smooth-kind") || {}).value || "ema",
    strength: Number(($("#smooth") || {}).value || 0),
    band: Boolean($("#band") && $("#band").checked),
  });
  const windowOf = (strength) => 1 + 2 * Math.round(strength * 50);

  function rolling(ys, w, pick) {
    const half = (w - 1) / 2, out = new Array(ys.length);
    for (let i = 0; i < ys.length; i++) {
      const part = ys.slice(Math.max(0, i - half), i + half + 1).filter((v) => v !== null);
      out[i] = part.length ? pick(part) : null;
    }
    return out;
  }

  function smooth(ys, opts) {
    const { kind, strength } = opts || smoothing();
    if (!strength) return ys;
    if (kind === "ma") {
      return rolling(ys, windowOf(strength), (p) => p.reduce((a, b) => a + b, 0) / p.length);
    }
    const out = new Array(ys.length);
    let s = null;
    for (let i = 0; i < ys.length; i++) {
      const v = ys[i];
      if (v === null) { out[i] = s; continue; }
      s = s === null ? v : strength * s + (1 - strength) * v;
      out[i] = s;
    }
    return out;
  }

  // The y columns of a chart: the (smoothed) series, then the band's min and max.
  function columns(ys) {
    const opts = smoothing();
    const cols = [smooth(ys, opts)];
    if (opts.band) {
      const w = windowOf(opts.strength || 0.1);
      cols.push(rolling(ys, w, (p) => Math.min(...p)), rolling(ys, w, (p) => Math.max(...p)));
    }
    return cols;
  }

  // x of the run page's charts: "step", "relative" (s since the start) or "wall" (UTC).
  const xMode = () => ($("#xaxis") || {}).value || "step";
  const runStart = () => Number(body.dataset.startUtc || 0);

  function chartOptions(el, labels, onZoom, band) {
    const width = Math.max(320, el.clientWidth - 8);
    const logy = $("#logy") && $("#logy").checked;
    const mode = body.dataset.page === "run" ? xMode() : "step";
    return {
      width, height: 240,
      scales: { x: { time: mode === "wall" }, y: logy ? { distr: 3 } : {} },
      axes: [
        { stroke: ink(), grid: { stroke: grid() } },
        { stroke: ink(), grid: { stroke: grid() } },
      ],
      series: [{ label: { step: "step", relative: "s", wall: "time" }[mode] }].concat(labels.map((label, i) => ({
        label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
      }))).concat(band ? [
        { label: "min", stroke: "rgba(78,121,167,0.35)", width: 1, spanGaps: true },
        { label: "max", stroke: "rgba(78,121,167,0.35)", width: 1, spanGaps: true },
      ] : []),
      bands: band ? [{ series: [3, 2], fill: "rgba(78,121,167,0.15)" }] : [],
      hooks: onZoom ? { setSelect: [onZoom] } : {},
      legend: { live: true },
    };
  }

  class LiveChart {
    constructor(el, runId, name) {
      this.el = el; this.runId = runId; this.name = name;
      this.x = []; this.y = []; this.u = null; this.zoomed = false;
    }
    url(extra) {
      const q = new URLSearchParams({ name: this.name, buckets: String(Math.max(100, this.el.clientWidth)) });
      if (xMode() !== "step") q.set("x", "time");
      for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
      return `/api/runs/${encodeURIComponent(this.runId)}/metric?${q}`;
    }
    async load() {
      const data = await (await fetch(this.url())).json();
      this.zoomed = false;
      this.x = this.fromServer(data.x); this.y = data.y; this.draw();
      return data.lastId || 0;
    }
    fromServer(xs) {
      const start = runStart();
      return xMode() === "relative" ? xs.map((t) => t - start) : xs;
    }
    toServer(x) {
      return xMode() === "relative" ? x + runStart() : x;
    }
    draw() {
      if (this.u) this.u.destroy();
      const zoom = (u) => {
        if (u.select.width < 2) return;
        const xmin = u.posToVal(u.select.left, "x");
        const xmax = u.posToVal(u.select.left + u.select.width, "x");
        this.zoom(xmin, xmax);
      };
      const band = smoothing().band;
      this.u = new uPlot(chartOptions(this.el, [this.name], zoom, band), this.data(), this.el);
      this.el.dataset.points = String(this.x.length);
    }
    data() {
      return [this.x, ...columns(this.y)];
    }
    async zoom(xmin, xmax) {
      // Re-bucket on the server: the zoomed range gets its own first/min/max/last.
      const data = await (await fetch(this.url({ xmin: this.toServer(xmin), xmax: this.toServer(xmax) }))).json();
      this.zoomed = true;
      this.u.setData([this.fromServer(data.x), ...columns(data.y)]);
      this.u.setScale("x", { min: xmin, max: xmax });
    }
    append(m) {
      const xs = xMode() === "step" ? m.x : this.fromServer(m.t), ys = m.y;
      for (let i = 0; i < xs.length; i++) { this.x.push(xs[i]); this.y.push(ys[i]); }
      this.el.dataset.points = String(this.x.length);
      if (this.u && !this.zoomed) this.u.setData(this.data());
    }
  }

  // -- the run page ---------------------------------------------------------------------
  async function runPage() {
    const runId = body.dataset.runId;
    const charts = new Map();
    const box = $(".charts") || (() => {
      const d = document.createElement("div"); d.className = "charts";
      const h = $("#no-metrics") || $("h2 + .chart-tools");
      (h ? h.parentNode : $("main")).insertBefore(d, h ? h.nextSibling : null);
      return d;
    })();
    function chartFor(name) {
      let c = charts.get(name);
      if (c) return c;
      let el = $(`.chart[data-metric="${CSS.escape(name)}"]`);
      if (!el) {
        el = document.createElement("div"); el.className = "chart"; el.dataset.metric = name;
        const h = document.createElement("h3"); h.textContent = name; el.appendChild(h);
        box.appendChild(el);
        const none = $("#no-metrics"); if (none) none.remove();
      }
      c = new LiveChart(el, runId, name); charts.set(name, c);
      return c;
    }
    let after = 0;
    for (const el of $$(".chart[data-metric]")) {
      const c = chartFor(el.dataset.metric);
      after = Math.max(after, await c.load());
    }
    for (const el of $$(".other[data-metric]")) otherMetric(el, runId);
    for (const id of ["smooth", "smooth-kind", "band", "logy"]) {
      const ctl = $("#" + id);
      if (ctl) ctl.addEventListener("input", () => charts.forEach((c) => c.draw()));
    }
    const xaxis = $("#xaxis");
    if (xaxis) xaxis.addEventListener("change", () => charts.forEach((c) => c.load()));
    const events = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events?after=${after}`);
    events.addEventListener("status", (ev) => {
      const run = JSON.parse(ev.data);
      setStatus(runId, run.status);
      body.dataset.status = run.status;
      body.dataset.startUtc = run.startUtc || "";
      $("#status-details").textContent = run.statusDetails || "";
      $("#started").textContent = utc(run.startUtc);
      $("#ended").textContent = utc(run.endUtc);
      $("#duration").textContent = duration(run.durationS);
      if (TERMINAL.has(run.status)) {
        const b = $("#cancel"); if (b) b.closest("form").remove();
        refreshFiles();
      }
    });
    events.addEventListener("metric", (ev) => {
      for (const m of JSON.parse(ev.data)) {
        const c = chartFor(m.name);
        if (!c.u) { c.x = []; c.y = []; c.append(m); c.draw(); } else c.append(m);
      }
    });
    events.addEventListener("end", () => events.close());
    // A running run's duration ticks here; status events bring the recorded one.
    setInterval(() => {
      const start = Number(body.dataset.startUtc || 0);
      if (start && !TERMINAL.has(body.dataset.status)) {
        $("#duration").textContent = duration(Date.now() / 1000 - start);
      }
    }, 1000);
    followLog();
  }

  async function refreshFiles() {
    // A run's outputs and logs are stored as it ends: list them without a reload.
    const box = $("#files");
    if (!box) return;
    const { files } = await (await fetch(box.dataset.src)).json();
    if (!files.length) return;
    const runId = body.dataset.runId;
    const table = document.createElement("table"); table.className = "grid";
    table.innerHTML = "<thead><tr><th>name</th><th>bytes</th></tr></thead>";
    const tbody = document.createElement("tbody");
    for (const [name, size] of files) {
      const tr = document.createElement("tr"), a = document.createElement("a");
      a.href = `/runs/${encodeURIComponent(runId)}/file?` + new URLSearchParams({ name });
      a.textContent = name;
      const td1 = document.createElement("td"), td2 = document.createElement("td");
      td1.appendChild(a); td2.textContent = String(size);
      tr.append(td1, td2); tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    box.replaceChildren(table);
  }

  function followLog() {
    const pre = $("#log");
    if (!pre) return;
    let text = "";
    const search = $("#log-search");
    const follow = $("#follow");
    const render = () => {
      const q = search.value;
      pre.textContent = q ? text.split("\n").filter((l) => l.includes(q)).join("\n") : text;
      if (follow.checked) pre.scrollTop = pre.scrollHeight;
    };
    search.addEventListener("input", render);
    let src = null;
    const open = (which) => {
      if (src) src.close();
      text = ""; pre.textContent = ""; delete pre.dataset.ended;
      // EventSource resends Last-Event-ID (the byte offset) when it reconnects.
      src = new EventSource(pre.dataset.src + (which ? "?log=" + which : ""));
      src.addEventListener("log", (ev) => {
        const chunk = JSON.parse(ev.data).text;
        text += chunk;
        if (search.value) render();
        else {
          pre.appendChild(document.createTextNode(chunk));
          if (follow.checked) pre.scrollTop = pre.scrollHeight;
        }
        pre.dataset.bytes = ev.lastEventId;
      });
      src.addEventListener("end", () => { src.close(); pre.dataset.ended = "1"; });
    };
    const which = $("#log-which");
    which.addEventListener("change", () => open(which.value));
    open("");
  }

  // -- metrics that are not scalar series ----------------------------------------------
  async function otherMetric(el, runId) {
    const q = new URLSearchParams({ name: el.dataset.metric });
    const m = await (await fetch(`/api/runs/${encodeURIComponent(runId)}/metric?${q}`)).json();
    const last = m.values[m.values.length - 1];
    if (m.kind === "image") return gallery(el, runId, m.values);
    if (m.kind === "confusion_matrix" || (last && last.schema_type === "confusion_matrix")) {
      return heatmap(el, last);
    }
    if ((m.kind === "table" || m.kind === "row") && m.values.length) return columnsChart(el, m);
    if (m.kind === "accuracy_table" || (last && last.schema_type === "accuracy_table")) {
      if (accuracyChart(el, last)) return;
    }
    // residuals, predictions (and other schema_type values): their equal-length numeric
    // arrays (bin_counts, bin_averages, ...) as lines over the bin index.
    const data = last && typeof last === "object" ? (last.data || last) : null;
    if (data && !Array.isArray(data) && Object.values(data).some((v) => Array.isArray(v) && v.length && typeof v[0] === "number")) {
      // Bin edges are one longer than the bins: the bins' own arrays are drawn.
      const arrays = Object.fromEntries(Object.entries(data).filter(
        ([k, v]) => !k.endsWith("edges") && Array.isArray(v) && typeof v[0] === "number"));
      const n = Math.max(...Object.values(arrays).map((v) => v.length));
      const same = Object.fromEntries(Object.entries(arrays).filter(([, v]) => v.length === n));
      columnsChart(el, { values: [same] });
      if (el.querySelector("canvas")) return;
    }
    if (m.kind === "list" && m.values.length) {
      const chart = document.createElement("div"); el.appendChild(chart);
      const ys = m.values.map(Number);
      new uPlot(chartOptions(chart, [el.dataset.metric]), [ys.map((_, i) => i), ys], chart);
      return;
    }
    const pre = document.createElement("pre"); pre.className = "json";
    pre.textContent = JSON.stringify(last, null, 1);
    el.appendChild(pre);
  }

  function columnsChart(el, m) {
    // A row/table metric: its numeric columns as lines, x = the row index (or the first column).
    const rows = [];
    for (const v of m.values) {
      if (Array.isArray(v)) rows.push(...v);
      else if (v && typeof v === "object") {
        const keys = Object.keys(v);
        if (keys.length && Array.isArray(v[keys[0]])) {
          for (let i = 0; i < v[keys[0]].length; i++) {
            const r = {}; for (const k of keys) r[k] = v[k][i]; rows.push(r);
          }
        } else rows.push(v);
      }
    }
    const cols = rows.length ? Object.keys(rows[0]).filter((k) => typeof rows[0][k] === "number") : [];
    if (!cols.length) return;
    const chart = document.createElement("div"); el.appendChild(chart);
    const xs = rows.map((_, i) => i);
    new uPlot(chartOptions(chart, cols), [xs, ...cols.map((c) => rows.map((r) => r[c]))], chart);
  }

  function accuracyChart(el, value) {
    // An accuracy table: precision and recall of each class by probability threshold,
    // from its [class][threshold][TP, FP, TN, FN] counts. False when it has no such table.
    const data = value && value.data ? value.data : value;
    const xs = data && data.probability_thresholds, tables = data && data.probability_tables;
    if (!Array.isArray(xs) || !Array.isArray(tables) || !tables.length) return false;
    const labels = [], ys = [];
    const ratio = (a, b) => (a + b ? a / (a + b) : null);
    tables.forEach((table, c) => {
      const cls = String((data.class_labels || [])[c] ?? c);
      labels.push(`${cls} precision`, `${cls} recall`);
      ys.push(table.map(([tp, fp]) => ratio(tp, fp)), table.map(([tp, , , fn]) => ratio(tp, fn)));
    });
    const chart = document.createElement("div"); el.appendChild(chart);
    const opts = chartOptions(chart, labels);
    opts.series[0].label = "probability threshold";
    new uPlot(opts, [xs, ...ys], chart);
    el.dataset.series = String(ys.length);
    return true;
  }

  function gallery(el, runId, values) {
    // An image metric's value is "aml://artifactId/ExperimentRun/dcid.<run id>/<stored name>":
    // the page asks for the stored name of this run, never for a path.
    const names = values.map((v) => {
      const s = String(v), at = s.indexOf("dcid.");
      return at < 0 ? s : s.slice(s.indexOf("/", at) + 1);
    }).filter(Boolean);
    if (!names.length) return;
    const img = document.createElement("img"); img.className = "gallery";
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: names.length - 1, value: names.length - 1 });
    const label = document.createElement("span");
    const show = () => {
      const n = names[Number(slider.value)];
      img.src = `/runs/${encodeURIComponent(runId)}/file?` + new URLSearchParams({ name: n });
      label.textContent = ` step ${slider.value} of ${names.length - 1}: ${n}`;
    };
    slider.addEventListener("input", show);
    el.append(slider, label, document.createElement("br"), img);
    show();
  }

  function heatmap(el, value) {
    const data = value && value.data ? value.data : value;
    const matrix = data && (data.matrix || data);
    const labels = (data && data.class_labels) || [];
    if (!Array.isArray(matrix) || !matrix.length) return;
    const n = matrix.length, cell = Math.max(24, Math.min(60, 360 / n));
    const canvas = document.createElement("canvas");
    canvas.width = n * cell + 80; canvas.height = n * cell + 40;
    const ctx = canvas.getContext("2d");
    const max = Math.max(...matrix.flat().map(Number), 1);
    ctx.font = "12px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < matrix[i].length; j++) {
        const v = Number(matrix[i][j]);
        ctx.fillStyle = `rgba(78,121,167,${0.1 + 0.9 * v / max})`;
        ctx.fillRect(80 + j * cell, i * cell, cell - 1, cell - 1);
        ctx.fillStyle = v / max > 0.5 ? "#fff" : ink();
        ctx.fillText(String(v), 80 + j * cell + cell / 2, i * cell + cell / 2);
      }
      ctx.fillStyle = ink(); ctx.textAlign = "right";
      ctx.fillText(String(labels[i] ?? i), 74, i * cell + cell / 2); ctx.textAlign = "center";
    }
    el.appendChild(canvas);
  }

  // -- the runs table: live status cells --------------------------------------------------
  function runsPage() {
    const ids = body.dataset.liveIds;
    if (!ids) return;
    const src = new EventSource("/api/status?ids=" + encodeURIComponent(ids));
    src.addEventListener("status", (ev) => {
      for (const [id, s] of Object.entries(JSON.parse(ev.data))) {
        setStatus(id, s.status);
        const d = $(`[data-details-of="${CSS.escape(id)}"]`);
        if (d) d.textContent = s.statusDetails || "";
      }
    });
    src.addEventListener("end", () => src.close());
  }

  // -- compare: overlaid curves ------------------------------------------------------------
  async function comparePage() {
    const runs = body.dataset.runs.split(",");
    const parallel = $("#parallel");
    if (parallel) parallelCoordinates(parallel);
    for (const el of $$(".chart[data-metric]")) {
      const name = el.dataset.metric;
      const got = await Promise.all(runs.map(async (id) => {
        const r = await fetch(`/api/runs/${encodeURIComponent(id)}/metric?` + new URLSearchParams({ name, buckets: "600" }));
        return r.ok ? r.json() : null;
      }));
      const present = got.map((g, i) => [g, runs[i]]).filter(([g]) => g && g.x);
      if (!present.length) continue;
      const joined = uPlot.join(present.map(([g]) => [g.x, g.y]));
      const labels = present.map(([, id]) => id);
      new uPlot(chartOptions(el, labels), joined, el);
      el.dataset.series = String(labels.length);
    }
  }

  function parallelCoordinates(canvas) {
    // One vertical axis per parameter/final metric, one line per run (scaled per axis).
    const { names, runs } = JSON.parse(canvas.dataset.axes);
    const ctx = canvas.getContext("2d");
    const pad = 60, top = 30, bottom = canvas.height - 40;
    const step = (canvas.width - 2 * pad) / Math.max(1, names.length - 1);
    const ranges = names.map((_, a) => {
      const vals = runs.map((r) => r.values[a]).filter((v) => v !== null);
      return [Math.min(...vals), Math.max(...vals)];
    });
    const y = (a, v) => {
      const [lo, hi] = ranges[a];
      return hi === lo ? (top + bottom) / 2 : bottom - (v - lo) / (hi - lo) * (bottom - top);
    };
    ctx.font = "12px sans-serif"; ctx.textAlign = "center";
    names.forEach((name, a) => {
      const x = pad + a * step;
      ctx.strokeStyle = grid(); ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.fillStyle = ink();
      ctx.fillText(name, x, bottom + 18);
      ctx.fillText(String(+ranges[a][1].toPrecision(4)), x, top - 8);
      ctx.fillText(String(+ranges[a][0].toPrecision(4)), x, bottom + 32);
    });
    runs.forEach((run, i) => {
      ctx.strokeStyle = PALETTE[i % PALETTE.length]; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      run.values.forEach((v, a) => {
        if (v === null) { started = false; return; }
        const x = pad + a * step;
        if (started) ctx.lineTo(x, y(a, v)); else ctx.moveTo(x, y(a, v));
        started = true;
      });
      ctx.stroke();
    });
    canvas.dataset.drawn = String(runs.length);
  }

  const pages = { run: runPage, runs: runsPage, compare: comparePage };
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
