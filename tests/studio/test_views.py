"""runner.views and its filter language: SQL with bound values only, and what the
studio serves from them to another process (downsampled charts that keep spikes,
re-bucketed on zoom; logs resumed at a byte offset)."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.parse import quote

import pytest

from runner.view_filter import FilterError, compile_filter
from runner.views import downsample
from tests.helpers import wait_until
from tests.studio.conftest import StudioWorkspace, http


def test_filters_compile_to_parameterised_sql() -> None:
    sql, params = compile_filter(
        "status IN (Running, 'Queued') AND (tags.lr >= 0.01 OR props.x ~ 'a*') "
        "AND NOT metrics.loss > 2 AND duration < 5m AND created >= 2026-01-01"
    )
    assert params[:2] == ["Running", "Queued"]
    assert 300.0 in params
    for literal in ("Running", "0.01", "a*"):
        assert literal not in sql, sql
    evil = "x'); DROP TABLE runs; --"
    sql, params = compile_filter(f"tags.note = {json.dumps(evil)}")
    assert evil in params
    assert "DROP" not in sql
    assert compile_filter("  ") == ("", [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status =", "expected a value at column 9"),
        ("colour = red", "unknown field 'colour'"),
        ("tags.lr >= abc", "'abc' at column 12 is not a number"),
        ("created > yesterday", "is not a date"),
        ("duration > 5 weeks", "expected AND, OR or the end"),
        ("(status = Running", r"expected '\)'"),
        ("status = Running Queued", "expected AND, OR or the end at column 18"),
        ("tags. = 1", "tags. needs a key"),
        ('name = "open', "unexpected"),
    ],
)
def test_bad_filters_say_where(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(text)


def test_downsampling_keeps_first_min_max_last_of_each_bucket() -> None:
    n = 100_000
    xs = list(range(n))
    ys = [float(i % 7) for i in range(n)]
    ys[54_321] = -50.0
    ys[77_777] = 99.0
    dx, dy = downsample(xs, ys, 100)
    assert len(dy) <= 400
    assert (dx[0], dy[0]) == (0, 0.0)
    assert (dx[-1], dy[-1]) == (n - 1, ys[-1])
    assert (54_321, -50.0) in zip(dx, dy)
    assert (77_777, 99.0) in zip(dx, dy)
    assert dx == sorted(dx)
    assert downsample([1, 2], [3.0, 4.0], 100) == ([1, 2], [3.0, 4.0])


@pytest.mark.slow
def test_big_metric_is_served_downsampled_and_rebucketed_and_logs_resume(
    sws: StudioWorkspace,
) -> None:
    """A run logs 200,000 points with one spike; the studio (another process) serves at
    most 4 points per bucket with the spike kept, more detail when zoomed; its log stream
    resumed at a byte offset sends exactly the rest of the log."""
    run_id, _ = sws.submit("st_big.py", "studio", 200_000)
    wait_until(
        lambda: sws.cli("run", "show", "-r", run_id)["status"] == "Completed", 60, interval_s=0.3
    )
    url = sws.start_studio()
    status, _, body = http(f"{url}api/runs/{run_id}/metric?name=big&buckets=500")
    assert status == 200
    chart = json.loads(body)
    assert chart["count"] == 200_000
    assert chart["downsampled"] is True
    assert len(chart["x"]) <= 2000
    assert 1000.0 in chart["y"]
    assert chart["x"][0] == 0
    assert chart["x"][-1] == 199_999
    zoomed = json.loads(
        http(f"{url}api/runs/{run_id}/metric?name=big&buckets=500&xmin=99000&xmax=101000")[2]
    )
    assert zoomed["count"] == 2001
    assert zoomed["x"][0] == 99_000
    assert zoomed["x"][-1] == 101_000
    assert 1000.0 in zoomed["y"]
    by_time = json.loads(http(f"{url}api/runs/{run_id}/metric?name=big&buckets=500&x=time")[2])
    assert by_time["count"] == 200_000
    assert time.time() - 600 < by_time["x"][0] <= by_time["x"][-1] <= time.time()
    assert by_time["x"] == sorted(by_time["x"])

    log = (sws.path / "runs" / run_id / "logs" / "70_driver_log.txt").read_bytes()
    offset = log.index(b"line 025")
    request = urllib.request.Request(  # noqa: S310 - the studio's own http:// URL
        f"{url}api/runs/{quote(run_id)}/log", headers={"Last-Event-ID": str(offset)}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        stream = resp.read().decode()
    events = [e for e in stream.split("\n\n") if e.startswith("event: log")]
    text = "".join(json.loads(e.split("data: ", 1)[1])["text"] for e in events)
    assert text.encode() == log[offset:]
    last_id = int(events[-1].split("id: ", 1)[1].split("\n", 1)[0])
    assert last_id == len(log)
    assert "event: end" in stream


def test_daemon_page_shows_gpus_as_nvml_reports_them() -> None:
    """The GPU rows as gpus.discover()/sample() report an H200 (shape checked on one)."""
    from runner.studio.pages import daemon_page

    gpu = {"index": 0, "name": "NVIDIA H200", "memoryTotalMb": 143771}
    state = {"running": True, "pid": 7, "maxConcurrent": 2, "freeGpus": [], "slots": {"r1": [0]}}
    html = daemon_page(state, [{**gpu, "utilization": 37.0, "memory_used_mb": 615.0}], [], "t")
    assert "NVIDIA H200" in html
    assert "37 %" in html
    assert "615 / 143771 MiB" in html
    assert "in use" in html
    unreadable = daemon_page({"running": False}, [gpu], [], "t")
    assert "? / 143771 MiB" in unreadable
    assert "not running" in unreadable
