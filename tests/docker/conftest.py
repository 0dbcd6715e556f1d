"""The Docker engine for tests/docker: real containers, no fakes.

With ``CI=true`` the engine must be there: when none answers, ``scripts/ci_services.sh``
(root only) installs and starts it and builds the base test image, and a failure fails the
tests. Elsewhere the tests are skipped with the command that enables them.

Every test gets its own environment cache and a daemon idle time (set before any submit);
at teardown the daemons of its workspaces are stopped and no container of them may be left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import daemon_client
from tests.helpers import REPO, require_service

#: The image the tests build FROM (made by scripts/ci_services.sh without any registry).
BASE_IMAGE = os.environ.get("RUNNER_TEST_IMAGE", "runner-test/python:3.11-bookworm")
ENABLE = "bash /work/shared/recipes/docker_local.sh (or, as root, bash scripts/ci_services.sh)"


def _problem() -> str | None:
    from environments.docker_image import docker_client
    from runner.errors import TargetUnavailableError

    try:
        client = docker_client(timeout_s=10)
    except TargetUnavailableError as exc:
        return str(exc)
    try:
        client.images.get(BASE_IMAGE)
    except Exception as exc:
        return f"base image {BASE_IMAGE!r}: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def engine() -> Any:
    """A docker client for a running engine that has BASE_IMAGE."""
    require_service("Docker engine", _problem, REPO / "scripts" / "ci_services.sh", ENABLE)
    import docker

    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def docker_session(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's RUNNER_ENV_CACHE and daemon idle time; at teardown its daemons are
    stopped and none of its containers may be left."""
    root = tmp_path / "env cache"
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(root))
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    yield root
    workspaces = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        if "workspace.json" in filenames:
            workspaces.append(Path(dirpath).resolve())
            daemon_client.stop_daemon(Path(dirpath), timeout_s=15)
            dirnames[:] = []
    left = []
    for ws in workspaces:
        for c in engine.containers.list(all=True, filters={"label": f"runner.workspace={ws}"}):
            left.append(f"{c.name} ({c.status})")
            c.remove(force=True)
    assert not left, f"containers left behind: {left}"
