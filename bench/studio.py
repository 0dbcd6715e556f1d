"""Benchmark runner studio: chart data of a 1,000,000-point metric, the runs page over
100,000 runs, and live latency (print -> browser, run.log -> chart point).

Run: ``python bench/studio.py [--points 1000000] [--runs 100000] [--reps 7] [--ticks 15]
[--no-mlflow] [--no-browser]``

Start: from starting ``python -m runner studio`` until its first page is answered
(goal: under a second). Server time is the studio's ``Server-Timing: app;dur=`` (until the response starts: the
handler's whole work); the client's wall time over loopback is shown beside it.

- chart: ``GET /api/runs/ID/metric?name=m&buckets=B`` on a run with ``--points`` values,
  B varied per request so the cache never answers (every request reads and downsamples
  the whole series). Goals: median server time <= 300 ms, and wall time <= 1/10 of
  ``mlflow server``'s ``GET /api/2.0/mlflow/metrics/get-history`` for the same metric
  (wall time, pages followed; sqlite backend; the points written straight into its
  ``metrics`` table). A full MLflow (not mlflow-skinny): ``pip install mlflow`` or
  ``--mlflow PATH`` (e.g. of a venv: ``uv venv /tmp/m && uv pip install -p /tmp/m mlflow``).
- runs page: ``GET /experiments/bench-many`` (first page, 50 rows) with ``--runs`` runs
  in the workspace. Goal: median server time <= 200 ms.
- live (needs chromium and Playwright; else an SSE client in Python stands in, said so):
  a submitted run prints a line and logs a point every 0.3 s with its wall time; the run
  page's text and chart are watched by a MutationObserver. Goals: print -> visible,
  median <= 250 ms; log -> point on the chart, median <= 500 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import common

# bench/mlflow.py would shadow the mlflow package while bench/ is on sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
START_GOAL_MS = 1000.0
CHART_GOAL_MS = 300.0
CHART_VS_MLFLOW = 10.0
RUNS_PAGE_GOAL_MS = 200.0
PRINT_GOAL_MS = 250.0
LOG_GOAL_MS = 500.0


def get(url: str, headers: dict[str, str] | None = None) -> tuple[float, float, bytes]:
    """(server ms from Server-Timing or NaN, client wall ms, body) of one GET."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310
        body = resp.read()
        timing = resp.headers.get("server-timing", "")
    wall = (time.perf_counter() - t0) * 1000
    server = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
    return server, wall, body


def startup_case(ws_path: Path, reps: int) -> list[float]:
    """Wall ms from starting ``python -m runner studio`` to its first page answered."""
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc, url = start_studio(ws_path)
        try:
            get(f"{url}/")
            walls.append((time.perf_counter() - t0) * 1000)
        finally:
            stop(proc)
    return walls


def start_studio(ws_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "studio", "-w", str(ws_path), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(common.ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split(" at ", 1)[1].strip().rstrip("/")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- chart data ---------------------------------------------------------------------------


def chart_case(ws: Any, points: int, reps: int) -> tuple[list[float], list[float], list[float]]:
    from runner import Experiment

    run = Experiment(ws, "bench-chart").start_logging()
    values = [random.random() for _ in range(points)]
    values[points // 3] = 50.0
    log = run.log
    for v in values:
        log("m", v)
    run.complete()
    run.flush()
    proc, url = start_studio(ws.path)
    try:
        server, wall, sizes = [], [], []
        for i in range(reps):
            s, w, body = get(f"{url}/api/runs/{run.id}/metric?name=m&buckets={1000 + i}")
            data = json.loads(body)
            assert data["count"] == points, data["count"]
            assert 50.0 in data["y"], "the spike was lost"
            server.append(s)
            wall.append(w)
            sizes.append(float(len(data["y"])))
        return server, wall, sizes
    finally:
        stop(proc)


def post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def mlflow_case(points: int, reps: int, mlflow_bin: str) -> tuple[list[float], str]:
    """Wall ms of get-history (every page) from an ``mlflow server`` on sqlite, and its
    version. The run is made through its REST API; the points go straight into its
    ``metrics`` table (MLflow's schema, one transaction) so that setting up takes seconds."""
    version = subprocess.run(
        [mlflow_bin, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    with common.temp_dir("runner-bench-mlflow-") as tmp:
        db = tmp / "mlflow.db"
        port = free_port()
        server = subprocess.Popen(
            [
                mlflow_bin,
                "server",
                "--backend-store-uri",
                f"sqlite:///{db}",
                "--default-artifact-root",
                str(tmp / "art"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    get(f"{base}/health")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            api = f"{base}/api/2.0/mlflow"
            exp_id = post(f"{api}/experiments/create", {"name": "bench"})["experiment_id"]
            run_id = post(f"{api}/runs/create", {"experiment_id": exp_id})["run"]["info"]["run_id"]
            now = int(time.time() * 1000)
            post(
                f"{api}/runs/log-metric",
                {"run_id": run_id, "key": "m", "value": 0.0, "timestamp": now, "step": 0},
            )
            rows = [("m", random.random(), now + i, run_id, i + 1, 0) for i in range(points - 1)]
            with sqlite3.connect(db) as conn:
                conn.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            walls = []
            for _ in range(reps):
                t0 = time.perf_counter()
                token, total = "", 0
                while True:
                    q = f"run_id={run_id}&metric_key=m" + (f"&page_token={token}" if token else "")
                    _, _, body = get(f"{api}/metrics/get-history?{q}")
                    data = json.loads(body)
                    total += len(data.get("metrics", []))
                    token = data.get("next_page_token", "")
                    if not token:
                        break
                walls.append((time.perf_counter() - t0) * 1000)
                assert total == points, total
            return walls, version
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


# -- runs page -----------------------------------------------------------------------------


def runs_page_case(ws: Any, runs: int, reps: int) -> tuple[list[float], list[float]]:
    from runner.store import NewRun

    store = ws.store
    exp_id = store.ensure_experiment("bench-many")
    batch = 10_000
    for start in range(0, runs, batch):
        specs = [
            NewRun(
                type="azureml.interactive",
                status="Completed",
                target="local",
                tags={"lr": str(random.choice([0.1, 0.01, 0.001])), "seed": str(i)},
            )
            for i in range(start, min(runs, start + batch))
        ]
        store.create_runs(exp_id, specs)
    proc, url = start_studio(ws.path)
    try:
        server, wall = [], []
        for _ in range(reps):
            s, w, body = get(f"{url}/experiments/bench-many")
            assert f"of {runs}".encode() in body
            server.append(s)
            wall.append(w)
        return server, wall
    finally:
        stop(proc)


# -- live ------------------------------------------------------------------------------------

LIVE_SCRIPT = """
import json, sys, time
from runner import Run
run = Run.get_context()
ticks = int(sys.argv[1])
times = []
time.sleep(1.5)  # the page is open by now
for i in range(ticks):
    t = time.time()
    print(f"tick {i} at {t:.6f}", flush=True)
    run.log("live", float(i))
    times.append(t)
    time.sleep(0.3)
with open(sys.argv[2], "w") as f:
    json.dump(times, f)
"""

OBSERVER = """
() => {
  window.__seen = {lines: {}, points: {}};
  const log = document.querySelector('#log');
  new MutationObserver(() => {
    const now = Date.now();
    for (const m of log.textContent.matchAll(/tick (\\d+) at/g)) {
      if (!(m[1] in window.__seen.lines)) window.__seen.lines[m[1]] = now;
    }
  }).observe(log, {childList: true, subtree: true, characterData: true});
  const watchCharts = () => {
    for (const el of document.querySelectorAll('.chart[data-metric="live"]')) {
      if (el.__watched) continue;
      el.__watched = true;
      new MutationObserver(() => {
        const n = Number(el.dataset.points || 0), now = Date.now();
        for (let i = 0; i < n; i++) if (!(i in window.__seen.points)) window.__seen.points[i] = now;
      }).observe(el, {attributes: true, attributeFilter: ['data-points']});
    }
  };
  watchCharts();
  new MutationObserver(watchCharts).observe(document.body, {childList: true, subtree: true});
}
"""


def live_case(ws: Any, ticks: int, use_browser: bool) -> tuple[list[float], list[float], str]:
    from runner import Experiment, ScriptRunConfig

    src = ws.path.parent / "live-src"
    src.mkdir()
    (src / "live.py").write_text(LIVE_SCRIPT)
    times_file = ws.path.parent / "times.json"
    run = Experiment(ws, "bench-live").submit(
        ScriptRunConfig(
            source_directory=str(src), script="live.py", arguments=[ticks, str(times_file)]
        )
    )
    proc, url = start_studio(ws.path)
    try:
        deadline = time.monotonic() + 60
        while run.get_status() not in ("Running",) and time.monotonic() < deadline:
            time.sleep(0.05)
        if use_browser:
            seen, how = _watch_in_browser(f"{url}/runs/{run.id}", times_file, ticks), "chromium"
        else:
            seen, how = _watch_with_sse(url, run.id, times_file, ticks), "SSE client (no browser)"
        run.wait_for_completion(raise_on_error=True)
        times = json.loads(times_file.read_text())
        lines = [
            (seen["lines"][str(i)] / 1000 - t) * 1000
            for i, t in enumerate(times)
            if str(i) in seen["lines"]
        ]
        points = [
            (seen["points"][str(i)] / 1000 - t) * 1000
            for i, t in enumerate(times)
            if str(i) in seen["points"]
        ]
        return lines, points, how
    finally:
        stop(proc)


def _watch_in_browser(url: str, times_file: Path, ticks: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        try:
            page = chrome.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#log")
            page.evaluate(OBSERVER)
            deadline = time.monotonic() + 30 + ticks
            while not times_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # the last point's way to the page
            seen: dict[str, Any] = page.evaluate("() => window.__seen")
            return seen
        finally:
            chrome.close()


def _watch_with_sse(url: str, run_id: str, times_file: Path, ticks: int) -> dict[str, Any]:
    import threading

    seen: dict[str, dict[str, float]] = {"lines": {}, "points": {}}

    def follow(path: str, on_event: Any) -> None:
        with urllib.request.urlopen(f"{url}{path}", timeout=60) as resp:  # noqa: S310
            for raw in resp:
                line = raw.decode()
                if line.startswith("data: "):
                    on_event(json.loads(line[6:]))

    def on_log(data: Any) -> None:
        now = time.time() * 1000
        import re

        for m in re.finditer(r"tick (\d+) at", data.get("text", "")):
            seen["lines"].setdefault(m.group(1), now)

    count = [0]

    def on_metric(data: Any) -> None:
        now = time.time() * 1000
        if isinstance(data, list):
            for m in data:
                if m.get("name") == "live":
                    for _ in m["x"]:
                        seen["points"].setdefault(str(count[0]), now)
                        count[0] += 1

    threads = [
        threading.Thread(target=follow, args=(f"/api/runs/{run_id}/log", on_log), daemon=True),
        threading.Thread(
            target=follow, args=(f"/api/runs/{run_id}/events", on_metric), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30 + ticks)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ticks", type=int, default=15)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--mlflow", metavar="PATH", help="the mlflow command of a full MLflow (default: on PATH)"
    )
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    common.print_header(
        "runner studio: chart data, runs page, live latency",
        "Server-Timing of the studio (median of --reps); client wall time beside it",
    )
    checks: dict[str, bool] = {}
    rows: list[list[object]] = []

    def check(label: str, server: list[float] | None, wall: list[float], goal_ms: float) -> None:
        """One row and one check: the median (server time when there is one) vs the goal."""
        measured = common.med(server) if server else common.med(wall)
        ok = bool(wall) and measured <= goal_ms
        checks[f"{label.split(' (')[0]} <= {goal_ms:.0f} ms"] = ok
        server_ms = f"{common.med(server):.1f}" if server else ""
        rows.append(
            [label, server_ms, f"{common.med(wall):.1f}", f"<= {goal_ms:.0f}", common.verdict(ok)]
        )

    with common.temp_workspace("runner-bench-studio-") as ws:
        try:
            check("start -> first page answered", None, startup_case(ws.path, 3), START_GOAL_MS)
            server, wall, sizes = chart_case(ws, args.points, args.reps)
            label = f"chart data, {args.points:,} points -> {int(common.med(sizes))}"
            check(label, server, wall, CHART_GOAL_MS)
            mlflow_bin = args.mlflow or shutil.which("mlflow")
            if not args.no_mlflow and mlflow_bin and _is_full_mlflow(mlflow_bin):
                ml, version = mlflow_case(args.points, max(3, args.reps // 2), mlflow_bin)
                # Wall time against wall time: MLflow says nothing of its server time.
                ratio = common.med(ml) / common.med(wall)
                ok = ratio >= CHART_VS_MLFLOW
                checks["chart vs mlflow >= 10x"] = ok
                rows.append(
                    [
                        f"mlflow {version} server get-history, same metric (all pages)",
                        "",
                        f"{common.med(ml):.1f}",
                        f"ratio {ratio:.0f}x (>= 10x)",
                        common.verdict(ok),
                    ]
                )
            elif not args.no_mlflow:
                rows.append(
                    ["mlflow server not found: pip install mlflow (--mlflow PATH)", *[""] * 4]
                )
            server, wall = runs_page_case(ws, args.runs, args.reps)
            check(f"runs page, first 50 of {args.runs:,} runs", server, wall, RUNS_PAGE_GOAL_MS)
            use_browser = (
                not args.no_browser and shutil.which("chromium") is not None and _has_playwright()
            )
            lines, points, how = live_case(ws, args.ticks, use_browser)
            check(f"print() -> line visible ({how}, n={len(lines)})", None, lines, PRINT_GOAL_MS)
            check(f"run.log() -> chart point ({how}, n={len(points)})", None, points, LOG_GOAL_MS)
        finally:
            from runner import daemon_client

            daemon_client.stop_daemon(ws.path)
    common.print_table(["case", "server ms", "wall ms", "goal", "result"], rows)
    return common.overall(checks)


def _is_full_mlflow(mlflow_bin: str) -> bool:
    """Whether ``mlflow server`` can run (mlflow-skinny has no server)."""
    done = subprocess.run([mlflow_bin, "server", "--help"], capture_output=True, check=False)
    return done.returncode == 0


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
