"""``env.docker.base_image_registry`` with a login, through the real Docker engine (issue 14).

No registry image can be had offline, so the registry is FakeRegistryThatOnlyAsksForLogin:
a few lines of http.server on 127.0.0.1 that asks for Basic auth and has no images. What
is checked is runner's part: the engine is asked to pull ADDRESS/IMAGE with the login, the
run ends Failed naming the registry, and the password never shows in the run's details.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.helpers import run_code, stop_daemon_of

SECRET = "s3cr3t"  # noqa: S105 (a test login, not a credential)


class FakeRegistryThatOnlyAsksForLogin(http.server.BaseHTTPRequestHandler):
    """Answers every request 401 (Basic) and keeps the Authorization headers it saw."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="fake"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistryThatOnlyAsksForLogin)
    FakeRegistryThatOnlyAsksForLogin.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_base_image_is_pulled_with_the_login_and_the_password_never_shows(
    registry: str, tmp_path: Path
) -> None:
    ws, src = tmp_path / "ws", tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never runs')\n")
    submitted = run_code(
        """
        import sys
        from runner import ContainerRegistry, Environment, Experiment, ScriptRunConfig, Workspace
        ws = Workspace.create(sys.argv[1])
        env = Environment.from_docker_image(
            "private", "team/train:1.0",
            container_registry=ContainerRegistry(sys.argv[3], "me", sys.argv[4]))
        run = Experiment(ws, "registry").submit(ScriptRunConfig(sys.argv[2], "train.py",
                                                                environment=env))
        print(run.id)
        """,
        ws, src, registry, SECRET,
    )  # fmt: skip
    try:
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.split()[-1]
        done = run_code(
            """
            import json, sys
            from runner import Run, Workspace
            run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
            run.wait_for_completion(raise_on_error=False)
            print(json.dumps(run.get_details()))
            """,
            ws, run_id, timeout_s=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        details = json.loads(done.stdout.splitlines()[-1])
        assert details["status"] == "Failed", details
        message = details["error"]["error"]["message"]
        assert f"pulling {registry}/team/train:1.0 from registry {registry} as me" in message
        login = "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode()
        assert login in FakeRegistryThatOnlyAsksForLogin.seen, FakeRegistryThatOnlyAsksForLogin.seen
        shown = json.dumps(details)
        assert SECRET not in shown
        env = details["runDefinition"]["environment"]["docker"]["baseImageRegistry"]
        assert env == {"address": registry, "username": "me", "password": "***"}
    finally:
        stop_daemon_of(ws)
