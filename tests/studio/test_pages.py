"""The studio's other pages in a real browser: the runs table's filter language,
compare (what differs, overlaid curves), and the metric kinds other than scalars (an
image gallery with a step slider, a table and a row as line charts, a list, a confusion
matrix as a heat map)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.helpers import wait_until
from tests.studio.conftest import StudioWorkspace, http, screenshot

pytestmark = pytest.mark.slow


def finished(sws: StudioWorkspace, *run_ids: str) -> None:
    def done() -> bool:
        shown = sws.cli("run", "list", "-e", "studio")
        ended = {r["runId"]: r["status"] for r in shown if r["runId"] in run_ids}
        return len(ended) == len(run_ids) and set(ended.values()) == {"Completed"}

    wait_until(done, 60, interval_s=0.3, message=f"runs {run_ids} to complete")


def quick_runs(sws: StudioWorkspace) -> dict[str, str]:
    ids = {lr: sws.submit("st_quick.py", "studio", lr)[0] for lr in ("0.01", "0.03", "0.05")}
    finished(sws, *ids.values())
    return ids


def test_filter_sort_and_compare(sws: StudioWorkspace, page) -> None:
    from playwright.sync_api import expect

    ids = quick_runs(sws)
    url = sws.start_studio()
    page.goto(f"{url}experiments/studio?cols=loss,acc")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(3)
    page.fill('input[name="filter"]', "tags.lr >= 0.02 AND metrics.loss < 0.4")
    page.click("form.filter button")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(ids["0.03"])
    assert "filter=tags.lr" in page.url  # the state is in the URL

    page.fill('input[name="filter"]', "tags.lr IN (0.01, 0.05) OR name ~ 'nothing*'")
    page.click("form.filter button")
    expect(rows).to_have_count(2)
    page.fill('input[name="filter"]', "tags.lr >= ")
    page.click("form.filter button")
    expect(page.locator("#filter-error")).to_contain_text("expected a value at column 12")

    # Sorting by a metric column, server-side: ascending loss puts lr=0.01 first.
    page.goto(f"{url}experiments/studio?cols=loss&sort=metrics.loss&desc=0")
    expect(rows.first).to_contain_text(ids["0.01"])
    # Chosen tag and property columns, sortable by their header (numbers numerically).
    page.goto(f"{url}experiments/studio?cols=tags.lr,properties.azureml.runsource&sort=tags.lr")
    expect(rows.first).to_contain_text(ids["0.05"])
    expect(rows.first.locator("td").nth(8)).to_have_text("0.05")
    expect(rows.first.locator("td").nth(9)).to_have_text("experiment")
    page.click("table.runs thead >> text=tags.lr")
    assert "desc=0" in page.url
    expect(rows.first).to_contain_text(ids["0.01"])
    expect(page.locator("table.runs thead")).to_contain_text("tags.lr ▲")
    for lr, n in (("0.01", "10"), ("0.03", "2"), ("0.05", "n/a")):
        sws.cli("run", "update", "-r", ids[lr], "--add-tag", f"n={n}")
    page.goto(f"{url}experiments/studio?cols=tags.n&sort=tags.n&desc=0")
    expect(rows.locator("td:nth-child(9)")).to_have_text(["2", "10", "n/a"])
    page.goto(f"{url}experiments/studio?cols=loss&size=2")
    expect(rows).to_have_count(2)
    expect(page.locator(".pager")).to_contain_text("1-2 of 3")
    page.click("text=older ›")
    expect(rows).to_have_count(1)

    page.goto(f"{url}experiments/studio?cols=loss")
    for run_id in ids.values():
        page.check(f'input[name="runs"][value="{run_id}"]')
    page.click("text=Compare selected")
    expect(page.locator("table.compare")).to_contain_text("tags.lr")
    expect(page.locator("table.compare")).not_to_contain_text("status")  # same everywhere
    chart = page.locator('.chart[data-metric="loss"]')
    expect(chart).to_have_attribute("data-series", "3", timeout=10_000)
    expect(page.locator("#parallel")).to_have_attribute("data-drawn", "3")
    axes = page.locator("#parallel").get_attribute("data-axes") or ""
    assert '"tags.lr"' in axes
    assert '"metrics.loss"' in axes
    screenshot(page, "compare")
    page.click("text=show everything")
    expect(page.locator("table.compare")).to_contain_text("status")


def test_child_runs_sit_under_their_parent(sws: StudioWorkspace, page) -> None:
    """The runs table lists top-level runs; a parent's link shows its children (the
    filter ``parent = ID``), and "show child runs too" lists every level."""
    from playwright.sync_api import expect

    parent, _ = sws.submit("st_children.py")
    finished(sws, parent)
    url = sws.start_studio()
    page.goto(f"{url}experiments/studio")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    page.click("text=(2 child runs)")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("↳ fold")
    page.goto(f"{url}experiments/studio")
    page.click("#levels")
    expect(rows).to_have_count(3)


def test_other_metric_kinds_and_image_gallery(sws: StudioWorkspace, page) -> None:
    from playwright.sync_api import expect

    run_id, _ = sws.submit("st_gallery.py")
    finished(sws, run_id)
    url = sws.start_studio()
    page.goto(f"{url}runs/{run_id}")
    gallery = page.locator('.other[data-metric="samples"]')
    image = gallery.locator("img.gallery")
    expect(gallery).to_contain_text("step 2 of 2")  # the last step first
    first_src = image.get_attribute("src") or ""
    assert "file?name=samples_" in first_src, first_src
    page.wait_for_function("() => document.querySelector('img.gallery').naturalWidth === 16")
    gallery.locator('input[type="range"]').fill("0")
    expect(gallery).to_contain_text("step 0 of 2")
    assert image.get_attribute("src") != first_src
    for name in ("curve", "per_class", "accuracies", "residuals", "predictions"):
        expect(page.locator(f'.other[data-metric="{name}"] canvas').first).to_be_visible()
    expect(page.locator('.other[data-metric="confusion"] canvas')).to_be_visible()
    # An accuracy table: precision and recall of each class by threshold, not JSON.
    roc = page.locator('.other[data-metric="roc"]')
    expect(roc).to_have_attribute("data-series", "4")
    expect(roc.locator("canvas").first).to_be_visible()
    expect(roc).to_contain_text("dog recall")
    expect(roc).to_contain_text("probability threshold")
    expect(roc.locator("pre.json")).to_have_count(0)
    screenshot(page, "run-metric-kinds")

    # The environment's lock, next to the environment: its text and a download link.
    page.click("#environment summary")
    expect(page.locator("#lock")).to_contain_text("six==1.16.0 --hash=sha256:8abb")
    href = page.locator("#lock-download").get_attribute("href") or ""
    status, headers, body = http(url.rstrip("/") + href)
    assert status == 200
    assert headers["content-disposition"].startswith("attachment")
    assert body.decode().startswith("# python: 3.12.3")

    # Tags are edited on the page: set one, then remove it (POSTs with the page's token).
    page.fill('#tag-form input[name="key"]', "reviewed")
    page.fill('#tag-form input[name="value"]', "by me")
    page.click("#tag-form button")
    tags = page.locator("table.kv").first
    expect(tags).to_contain_text("by me")
    assert sws.cli("run", "show", "-r", run_id)["tags"]["reviewed"] == "by me"
    page.click('button[title="remove tag reviewed"]')
    expect(page.locator("text=by me")).to_have_count(0)
    assert "reviewed" not in sws.cli("run", "show", "-r", run_id)["tags"]

    # Stored files: a non-ASCII name downloads under its name; HTML never runs as a page.
    status, headers, body = http(f"{url}runs/{run_id}/file?name={quote('notes/résumé ü.txt')}")
    assert status == 200
    assert body.decode() == "résumé"
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%C3%BC.txt" in headers["content-disposition"]
    status, headers, _ = http(f"{url}runs/{run_id}/file?name=outputs/page.html")
    assert status == 200
    assert headers["content-disposition"].startswith("attachment")
    assert headers["content-security-policy"].startswith("sandbox")
    assert headers["content-type"] == "application/octet-stream"
    # Tags are edited with run.tag()'s rules: a bad key is a 400 that says why.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    status, _, body = http(
        f"{url}runs/{run_id}/tags",
        "POST",
        {"Origin": url.rstrip("/"), "Content-Type": "application/x-www-form-urlencoded"},
        f"csrf={token}&key=a%00b&value=1".encode(),
    )
    assert status == 400, body
