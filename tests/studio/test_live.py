"""The studio in a real browser, live: runs submitted from other processes change on the
page without reloads (status, metric points, log lines), and cancel from the page stops
the run's whole process tree."""

from __future__ import annotations

import psutil
import pytest

from tests.helpers import wait_until
from tests.studio.conftest import StudioWorkspace, screenshot, wait_file

pytestmark = pytest.mark.slow

#: How long a live change may take to reach the page (polls of 50 ms, writer 200 ms;
#: generous for two shared cores).
LIVE_S = 15_000


def status_is(page, status: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1 .status")).to_have_text(status, timeout=LIVE_S)


def test_a_run_goes_queued_running_completed_live_with_chart_and_logs(
    sws: StudioWorkspace, page
) -> None:
    """With one slot, run B waits Queued behind run A. B's page, opened once, shows
    Queued, then Running, its chart growing from 5 to 10 points and its log following,
    then Completed, without a reload; the runs table also ends with both Completed."""
    from playwright.sync_api import expect

    sws.cli("daemon", "start", "--max-concurrent", "1")
    run_a, markers_a = sws.submit("st_train.py")
    wait_file(markers_a / "started")
    run_b, markers_b = sws.submit("st_train.py")
    url = sws.start_studio()

    page.goto(f"{url}runs/{run_b}")
    status_is(page, "Queued")
    daemon = page.context.new_page()
    daemon.goto(f"{url}daemon")
    expect(daemon.locator("main")).to_contain_text("runs at once: 1")
    expect(daemon.locator("table").nth(0)).to_contain_text(run_a)  # the slot
    expect(daemon.locator("table").nth(1)).to_contain_text(run_b)  # the queue
    screenshot(daemon, "daemon")
    daemon.close()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    (markers_a / "more").touch()
    (markers_a / "finish").touch()
    status_is(page, "Running")
    log = page.locator("#log")
    expect(log).to_contain_text("hello from the driver log", timeout=LIVE_S)
    chart = page.locator('.chart[data-metric="loss"]')
    expect(chart).to_have_attribute("data-points", "5", timeout=LIVE_S)
    assert "the second half begins" not in log.inner_text()
    screenshot(page, "run-running")

    (markers_b / "more").touch()
    expect(chart).to_have_attribute("data-points", "10", timeout=LIVE_S)
    expect(log).to_contain_text("the second half begins", timeout=LIVE_S)
    (markers_b / "finish").touch()
    status_is(page, "Completed")
    expect(log).to_contain_text("done", timeout=LIVE_S)
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#files")).to_contain_text("azureml-logs/70_driver_log.txt")
    assert navigations == [], f"the page reloaded: {navigations}"
    assert chart.locator("canvas").count() >= 1
    screenshot(page, "run-completed")
    page.select_option("#xaxis", "wall")  # x by wall clock: the chart is drawn again
    expect(chart.locator(".u-legend th").first).to_have_text("time", timeout=LIVE_S)
    expect(chart).to_have_attribute("data-points", "10")
    # Smoothing: a moving average with its min/max band (two more series in the legend).
    page.select_option("#smooth-kind", "ma")
    page.locator("#smooth").fill("0.1")
    page.check("#band")
    expect(chart.locator(".u-legend tr")).to_have_count(4, timeout=LIVE_S)
    screenshot(page, "run-smoothed")

    page.goto(f"{url}experiments/studio?cols=loss")
    expect(page.locator(f'[data-status-of="{run_a}"]')).to_have_text("Completed")
    expect(page.locator(f'[data-status-of="{run_b}"]')).to_have_text("Completed")
    screenshot(page, "runs-table")
    page.goto(url)
    expect(page.locator("table")).to_contain_text("studio")
    screenshot(page, "experiments")


def test_runs_table_status_changes_live(sws: StudioWorkspace, page) -> None:
    """The runs table, opened while a run is Running, shows it Completed without a reload."""
    from playwright.sync_api import expect

    run_id, markers = sws.submit("st_train.py")
    wait_file(markers / "started")
    url = sws.start_studio()
    page.goto(f"{url}experiments/studio")
    cell = page.locator(f'[data-status-of="{run_id}"]')
    expect(cell).to_have_text("Running", timeout=LIVE_S)
    (markers / "more").touch()
    (markers / "finish").touch()
    expect(cell).to_have_text("Completed", timeout=LIVE_S)


def test_cancel_from_the_page_kills_the_process_tree(sws: StudioWorkspace, page) -> None:
    """The Cancel button (a POST with the page's CSRF token) ends the run Canceled, live,
    and no process of its tree, the setsid grandchild included, is left."""
    run_id, markers = sws.submit("st_tree.py")
    pids = [int(p) for p in wait_file(markers / "pids").split()]
    procs = [psutil.Process(pid) for pid in pids]
    url = sws.start_studio()
    page.goto(f"{url}runs/{run_id}")
    status_is(page, "Running")
    page.locator("#cancel").click()
    status_is(page, "Canceled")

    def tree_gone() -> bool:
        return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)

    wait_until(tree_gone, 20, message=f"the run's processes {pids} to end")
    shown = sws.cli("run", "show", "-r", run_id)
    assert shown["status"] == "Canceled", shown
    assert "runner studio" in str(shown), shown
