"""runner's remote side, driven over pipes as ssh would drive it, on every Python it
supports (the host's python3 may be as old as 3.9)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.remote_agent import read_frame, write_frame
from tests.helpers import REPO

PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")
PYTHONS = [sys.executable, *([str(PY39)] if PY39.exists() else [])]


class Agent:
    """One ``session`` of the agent with its base folder in a temp dir."""

    def __init__(self, python: str, base: Path) -> None:
        env = {**os.environ, "RUNNER_REMOTE_BASE": str(base), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [python, "-m", "runner.remote_agent", "session"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def request(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        self.send(header, payload)
        return self.receive()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        assert self.proc.stdin is not None
        write_frame(self.proc.stdin, header, payload)  # type: ignore[arg-type]

    def receive(self) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout is not None
        frame = read_frame(self.proc.stdout)  # type: ignore[arg-type]
        assert frame is not None, "the agent ended"
        return frame

    def close(self) -> None:
        self.send({"op": "bye"})
        assert self.proc.wait(timeout=10) == 0
        self.release()

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture(params=PYTHONS, ids=lambda p: Path(p).name)
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Agent]:
    a = Agent(request.param, tmp_path / "base")
    yield a
    a.release()


def snapshot(files: dict[str, bytes]) -> tuple[str, list[list[Any]], dict[str, bytes]]:
    entries = [[p, hashlib.sha256(d).hexdigest(), len(d), False] for p, d in sorted(files.items())]
    snap_id = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return snap_id, entries, {hashlib.sha256(d).hexdigest(): d for d in files.values()}


def send_snapshot(agent: Agent, files: dict[str, bytes]) -> tuple[str, list[str]]:
    snap_id, entries, blobs = snapshot(files)
    if agent.request({"op": "snapshot", "id": snap_id})[0].get("have"):
        return snap_id, []
    answer, _ = agent.request({"op": "snapshot", "id": snap_id, "entries": entries})
    for digest in answer["missing"]:
        agent.send({"op": "blob", "digest": digest}, blobs[digest])
    assert agent.request({"op": "snapshot_done", "id": snap_id})[0] == {"ok": True, "n": 0}
    return snap_id, answer["missing"]


def follow(agent: Agent, run_id: str) -> tuple[bytes, bytes, dict[str, Any]]:
    agent.send({"op": "follow", "run_id": run_id, "log": 0, "journal": 0, "hb": 0.5})
    log, journal = b"", b""
    while True:
        header, payload = agent.receive()
        if header.get("s") == "log":
            assert header["o"] == len(log)
            log += payload
        elif header.get("s") == "journal":
            assert header["o"] == len(journal)
            journal += payload
        elif header.get("s") == "exit":
            return log, journal, header


SCRIPT = b"""
import sys
from runner import Run
run = Run.get_context()
run.log("x", 1)
run.tag("py", "%d.%d" % sys.version_info[:2])
print("hello", sys.argv[1:])
open("outputs/o.txt", "w").write("out")
"""


def test_a_run_from_snapshot_to_outputs(agent: Agent) -> None:
    hello = agent.request({"op": "hello"})[0]
    assert hello["version"] >= [3, 9]
    snap_id, missing = send_snapshot(agent, {"train.py": SCRIPT, "data/d.txt": b"d"})
    assert len(missing) == 2
    assert send_snapshot(agent, {"train.py": SCRIPT, "data/d.txt": b"d"}) == (snap_id, [])
    prepared = agent.request({"op": "prepare", "kind": "user_managed", "python": None})[0]
    assert Path(prepared["python"]).is_file()
    answer = agent.request(
        {
            "op": "launch",
            "run_id": "exp_1_abc",
            "snapshot": snap_id,
            "experiment": "exp",
            "tags": {"k": "v"},
            "properties": {},
            "python": prepared["python"],
            "argv": ["{python}", "train.py", "a b"],
            "env": {},
        }
    )[0]
    assert answer["pid"] > 0
    log, journal, end = follow(agent, "exp_1_abc")
    assert end["code"] == 0
    assert b"hello ['a b']" in log
    events = [json.loads(line) for line in journal.splitlines()]
    kinds = [e["e"] for e in events]
    assert "meta" in kinds
    assert "metrics" in kinds
    assert {"e": "tags", "id": "exp_1_abc", "tags": {"py": hello_version(hello)}} in events
    _, tar = agent.request({"op": "outputs", "run_id": "exp_1_abc"})
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.extractfile("outputs/o.txt").read() == b"out"  # type: ignore[union-attr]
    agent.request({"op": "cleanup", "run_id": "exp_1_abc"})
    # Followed again after the cleanup: the run is gone, and the agent says so.
    agent.send({"op": "follow", "run_id": "exp_1_abc", "log": 0, "journal": 0})
    assert agent.receive()[0]["missing"] is True
    agent.close()


def hello_version(hello: dict[str, Any]) -> str:
    major, minor = hello["version"][:2]
    return f"{major}.{minor}"


def test_cancel_ends_the_session_of_the_run(agent: Agent, tmp_path: Path) -> None:
    script = b"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\ntime.sleep(60)\n"
    snap_id, _ = send_snapshot(agent, {"s.py": script})
    agent.request(
        {
            "op": "launch",
            "run_id": "exp_2_abc",
            "snapshot": snap_id,
            "experiment": "exp",
            "python": sys.executable,
            "argv": ["{python}", "s.py"],
            "env": {},
        }
    )
    time.sleep(0.5)
    env = {**os.environ, "RUNNER_REMOTE_BASE": str(tmp_path / "base"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [agent.proc.args[0], "-m", "runner.remote_agent", "cancel", "exp_2_abc", "1"],  # type: ignore[index]
        capture_output=True,
        env=env,
        check=True,
        timeout=30,
    )
    assert json.loads(proc.stdout)["signaled"] >= 2
    _, _, end = follow(agent, "exp_2_abc")
    assert end["code"] in (-15, 143, None)
    agent.close()


def test_a_bad_request_is_an_error_answer_and_the_session_goes_on(agent: Agent) -> None:
    assert "unknown request" in agent.request({"op": "nope"})[0]["error"]
    assert "damaged" in agent.request({"op": "blob", "digest": "0" * 64}, b"x")[0]["error"]
    assert agent.request({"op": "hello"})[0]["pid"] == agent.proc.pid
    agent.close()


RECORDS = b"""
import os
from runner import Run, ScriptRunConfig
run = Run.get_context()
os.makedirs("code", exist_ok=True)
for i in range(30):  # enough small files that the snapshot packs them
    open("code/f%d.py" % i, "w").write("print(%d)" % i)
run.take_snapshot("code")
run.upload_file("outputs/m.bin", "code/f0.py")
run.register_model("m", "outputs/m.bin")
run.submit_child(ScriptRunConfig("code", "f1.py"))
"""


def test_the_blobs_a_journal_line_names_come_before_it(agent: Agent) -> None:
    snap_id, _ = send_snapshot(agent, {"train.py": RECORDS})
    prepared = agent.request({"op": "prepare", "kind": "user_managed", "python": None})[0]
    agent.request(
        {
            "op": "launch",
            "run_id": "exp_2_abc",
            "snapshot": snap_id,
            "experiment": "exp",
            "target": "box",
            "python": prepared["python"],
            "argv": ["{python}", "train.py"],
            "env": {},
        }
    )
    agent.send({"op": "follow", "run_id": "exp_2_abc", "log": 0, "journal": 0, "hb": 0.5})
    arrived: set[str] = set()
    kinds: list[str] = []
    log = b""
    while True:
        header, payload = agent.receive()
        if header.get("s") == "blob":
            assert hashlib.sha256(payload).hexdigest() == header["digest"]
            arrived.add(header["digest"])
        elif header.get("s") == "log":
            log += payload
        elif header.get("s") == "journal":
            for line in payload.splitlines():
                event = json.loads(line)
                kinds.append(event["e"])
                assert set(event.get("blobs") or ()) <= arrived, event["e"]
        elif header.get("s") == "exit":
            assert header["code"] == 0, log.decode()
            break
    assert {"snapshot", "files", "model", "submit"} <= set(kinds)
    assert "run" not in kinds  # the child is handed over, not a record of the host's
    # 30 snapshot files + the manifest; the model's and the upload's content is one of them.
    assert len(arrived) == 31
    agent.request({"op": "cleanup", "run_id": "exp_2_abc"})
    agent.close()


def test_a_snapshot_another_session_completes_meanwhile_is_taken_as_there(
    agent: Agent, tmp_path: Path
) -> None:
    """Two runs of the same source start on one host at once: one session finds the
    snapshot missing, then another session stores it before the first sends its entries.
    The first must take it as there (it once failed the run: 'was not announced')."""
    from runner.snapshot import Snapshot, SnapshotEntry
    from targets.ssh import sync_snapshot

    files = {"train.py": b"print('hi')\n", "data.txt": b"42\n"}
    snap_id, entries, contents = snapshot(files)
    other = Agent(sys.executable, tmp_path / "base")

    class Racing:
        """The first session; the other one completes the snapshot after its first answer."""

        def __init__(self) -> None:
            self.asked = 0

        def request(self, header: dict[str, Any], payload: bytes = b"") -> Any:
            answer = agent.request(header, payload)
            assert "error" not in answer[0], answer[0]  # as AgentSession raises RemoteError
            self.asked += 1
            if self.asked == 1:
                assert answer[0] == {"have": False, "n": 0}
                send_snapshot(other, files)
            return answer

        def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
            agent.send(header, payload)

    class Blobs:
        def read_bytes(self, digest: str) -> bytes:
            return contents[digest]

    snap = Snapshot(id=snap_id, entries=tuple(SnapshotEntry(*e) for e in entries))
    try:
        assert sync_snapshot(Racing(), Blobs(), snap) == 0  # type: ignore[arg-type]
        assert agent.request({"op": "snapshot", "id": snap_id})[0] == {"have": True, "n": 0}
    finally:
        other.release()
