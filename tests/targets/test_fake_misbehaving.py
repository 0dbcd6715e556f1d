"""What the supervisor does when a target misbehaves, told to by FakeTarget (as tests
tell httpx's MockTransport what to answer): a launch that fails, and a link to the host
that drops while the run goes on. Through separate processes, as in contract.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_code, stop_daemons_under
from tests.targets.contract import TERMINAL, Rig, details, source, status_of, submit

ATTACH = """
import json, sys
from runner import ComputeTarget, Workspace
from targets.testing import FakeTarget

told = json.loads(sys.argv[2])
if told.get("link_down_s"):
    told["link_down_s"] = tuple(told["link_down_s"])
ComputeTarget.attach(Workspace(sys.argv[1]), "pretend", FakeTarget.attach_configuration(**told))
"""


@pytest.fixture
def rig_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """rig_of(**misbehaviour): a workspace with a FakeTarget told to misbehave."""
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", "0.2")
    variables = {"RUNNER_TARGETS": "fake=targets.testing:KIND", "RUNNER_HEARTBEAT_S": "0.2"}

    def make(**told: object) -> Rig:
        import json

        ws = tmp_path / "ws"
        proc = run_code(
            "import sys; from runner import Workspace; Workspace.create(sys.argv[1])", ws
        )
        assert proc.returncode == 0, proc.stderr
        proc = run_code(ATTACH, ws, json.dumps(told), env=variables)
        assert proc.returncode == 0, proc.stderr
        return Rig("fake", ws, "pretend", variables=variables)

    yield make
    problems = stop_daemons_under(tmp_path)
    assert not problems, problems


def statuses_until_the_end(rig: Rig, run_id: str, timeout_s: float = 60.0) -> list[str]:
    """Every distinct status the run goes through, read from the store every 20 ms."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = status_of(rig, run_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not end in {timeout_s} s: {seen}")


@pytest.mark.slow
def test_a_launch_the_target_refuses_fails_the_run_saying_why(rig_of, tmp_path: Path) -> None:
    rig = rig_of(launch_error="the pretend host refused the job (quota)")
    run_id = submit(rig, source(tmp_path), "quick", 0, 0)
    seen = statuses_until_the_end(rig, run_id)
    assert seen[-1] == "Failed", seen
    assert "Running" not in seen, seen
    found = details(rig, run_id)
    assert "the pretend host refused the job (quota)" in str(found["error"]), found
    assert found["metrics"] == {}  # the script never ran


@pytest.mark.slow
def test_a_dropped_link_makes_the_run_not_responding_until_it_is_back(
    rig_of, tmp_path: Path
) -> None:
    rig = rig_of(link_down_s=[1.0, 1.5])
    run_id = submit(rig, source(tmp_path), "sleep", 4, 0)
    seen = statuses_until_the_end(rig, run_id)
    assert seen[-1] == "Completed", seen
    down = seen.index("NotResponding")
    assert "Running" in seen[:down], seen
    assert "Running" in seen[down:], seen  # back before it ended
    found = details(rig, run_id)
    assert found["metrics"] == {"score": 0.5}
    assert found["properties"]["runner.fake_host"]  # type: ignore[index]
