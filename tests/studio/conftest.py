"""Fixtures of the studio tests: a workspace used only through other processes, a real
``runner studio`` process over it, and a real browser (Debian's chromium driven by
Playwright for Python through ``executable_path``; Playwright cannot download its own
browser here).

Outside CI the browser tests skip when chromium or Playwright is missing, saying how to
enable them; with ``CI=true`` they fail instead (scripts/browser_services.sh installs
chromium as root, scripts/test.sh installs Playwright with the test extra).

Screenshots of the main pages go to ``build/studio-screenshots`` (or
``$STUDIO_SCREENSHOTS``): test artefacts, to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    REPO,
    in_ci,
    run_cli,
    run_code,
    script_env,
    stop_daemon_of,
    wait_until,
)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
SCREENSHOTS = Path(os.environ.get("STUDIO_SCREENSHOTS", REPO / "build" / "studio-screenshots"))
ENABLE = (
    "install chromium (as root: apt-get install -y chromium, or bash scripts/browser_services.sh) "
    "and Playwright (pip install -e '.[test]')"
)


class StudioWorkspace:
    """A workspace folder that only other processes open, a studio serving it, and the
    runs the test submits (scripts from tests/studio/scripts, steered by marker files)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.path = tmp / "ws"
        self.source = tmp / "src"
        self.source.mkdir()
        for script in SCRIPTS.glob("*.py"):
            shutil.copy(script, self.source / script.name)
        self.env = {"RUNNER_WORKSPACE": str(self.path), "RUNNER_DAEMON_IDLE_S": "120"}
        self.markers: list[Path] = []
        self.studios: list[subprocess.Popen[str]] = []
        created = run_code(
            "import sys; from runner import Workspace; Workspace.create(sys.argv[1])",
            self.path,
            env=self.env,
        )
        assert created.returncode == 0, created.stderr

    def cli(self, *argv: Any) -> Any:
        """``python -m runner ARGV -o json`` in its own process; its JSON answer."""
        done = run_cli(*map(str, argv), cwd=self.tmp, env=self.env)
        assert done.returncode == 0, f"runner {argv} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def submit(self, script: str, experiment: str = "studio", *args: Any) -> tuple[str, Path]:
        """Submit SCRIPT with a fresh markers folder as its first argument (from a CLI
        process that exits at once); (run id, markers folder)."""
        markers = self.tmp / f"markers-{len(self.markers)}"
        markers.mkdir()
        self.markers.append(markers)
        answer = self.cli(
            "run", "submit-script", "-e", experiment, "-d", self.source, script, markers, *args
        )
        return str(answer["runId"]), markers

    def start_studio(self, *args: str) -> str:
        """Start ``runner studio --port 0 ARGS`` and return the first URL it prints."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "studio", "-w", str(self.path), "--port", "0", *args],
            env=script_env(self.env),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.studios.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"runner studio printed {line!r}; stderr:\n{err}")
        return line.split(" at ", 1)[1].strip()

    def close(self) -> None:
        for markers in self.markers:  # release every run still waiting
            for name in ("more", "finish"):
                (markers / name).touch()
        for proc in self.studios:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        stop_daemon_of(self.path)


@pytest.fixture
def sws(tmp_path: Path) -> Iterator[StudioWorkspace]:
    ws = StudioWorkspace(tmp_path)
    try:
        yield ws
    finally:
        ws.close()


def http(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    # S310: the URLs are the studio's own http:// ones.
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            return exc.code, dict(exc.headers), exc.read()


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium (Debian's) under Playwright, one per test (the process check
    of tests/conftest.py wants none left after a test)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci():
            pytest.fail("CI=true and Playwright is not installed: " + ENABLE, pytrace=False)
        pytest.skip("the studio's browser tests need Playwright: " + ENABLE)
    executable = chromium_path()
    if executable is None:
        if in_ci():
            pytest.fail("CI=true and no chromium on PATH: " + ENABLE, pytrace=False)
        pytest.skip("the studio's browser tests need chromium: " + ENABLE)
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chrome
        finally:
            chrome.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (its own context: no cookies shared between tests); console
    errors and CSP violations fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not problems, f"the page reported errors: {problems}"


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_file(path: Path, timeout_s: float = 30.0) -> str:
    """The text of ``path`` once it exists."""
    wait_until(path.exists, timeout_s, message=f"{path} to appear")
    return path.read_text()
