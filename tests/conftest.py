"""Fixtures for every test: an isolated default workspace, a leak check, weird paths.

- Each test gets ``RUNNER_WORKSPACE`` pointing at a fresh folder and runs in its own
  ``tmp_path``, so nothing touches ``~/.runner`` or the repository.
- Each test must leave no process behind: psutil children (recursive) are compared
  before and after, leftovers get up to 5 s to exit, then the test fails naming them.
- Nothing here skips tests: infrastructure tests run the same with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runner import store as _store_module
from runner.experiment import Experiment
from runner.workspace import Workspace

#: How long a test's leftover processes get to exit on their own before it fails
#: (shortened only by the test of this check itself, which runs an inner session).
LEAK_GRACE_S = float(os.environ.get("RUNNER_TESTS_LEAK_GRACE_S", "5"))

#: A folder name with spaces, both quotes, ';', a newline and non-ASCII letters.
WEIRD_NAME = "we ird 'sq' \"dq\" ;semi\nnew line ü é 日本"


@pytest.fixture(autouse=True)
def isolated_runner_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh default workspace folder per test, and the test's tmp_path as cwd."""
    default_ws = tmp_path / "default-workspace"
    monkeypatch.setenv("RUNNER_WORKSPACE", str(default_ws))
    monkeypatch.delenv("RUNNER_RUN_ID", raising=False)
    monkeypatch.delenv("RUNNER_EXPERIMENT", raising=False)
    monkeypatch.chdir(tmp_path)
    return default_ws


@pytest.fixture(autouse=True)
def close_stores_opened_by_the_test() -> Iterator[None]:
    """Close the workspace databases a test opened, so connections and writer threads
    do not pile up over the session (closing also flushes, as at interpreter exit)."""
    before = set(_store_module._STORES)
    yield
    for key in set(_store_module._STORES) - before:
        store = _store_module._STORES.pop(key, None)
        if store is not None:
            store.close()


def _key(proc: psutil.Process) -> tuple[int, float]:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, 0.0


def _running_children(me: psutil.Process) -> list[psutil.Process]:
    alive = []
    for proc in me.children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:  # gone between listing and asking
            continue
    return alive


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} {proc.name()!r}: {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid} (exited while being described)"


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves processes behind (after giving them LEAK_GRACE_S to exit)."""
    me = psutil.Process()
    before = {_key(p) for p in _running_children(me)}
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        left = [p for p in _running_children(me) if _key(p) not in before]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if left:
        names = [_describe(p) for p in left]
        for proc in left:  # so that the next tests start clean
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(left, timeout=5)
        pytest.fail(
            f"the test left {len(left)} process(es) running:\n  " + "\n  ".join(names),
            pytrace=False,
        )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A new workspace in ``tmp_path / 'ws'``."""
    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def exp(ws: Workspace) -> Experiment:
    """The experiment 'test' in ``ws``."""
    return Experiment(ws, "test")


@pytest.fixture
def weird_path(tmp_path: Path) -> Path:
    """An existing folder whose name has spaces, quotes, ';', a newline and non-ASCII."""
    path = tmp_path / WEIRD_NAME
    path.mkdir()
    return path
