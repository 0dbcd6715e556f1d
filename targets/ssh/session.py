"""One ``remote_agent session`` process on a host: framed requests over ssh's stdio."""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from runner.errors import TargetUnavailableError
from runner.remote_agent import read_frame, write_frame
from targets.ssh.connection import (
    BOOTSTRAP,
    INSTALL,
    NO_CLIENT,
    REMOTE_BASE,
    Connection,
    python_problem,
)


class RemoteError(TargetUnavailableError):
    """The remote side answered a request with an error (the link itself is fine)."""


class AgentSession:
    """One ``remote_agent session`` process over the shared connection."""

    def __init__(
        self,
        conn: Connection,
        client_dir: Path,
        base: str = REMOTE_BASE,
        bootstrap: str = BOOTSTRAP,
        command: str = "session",
    ) -> None:
        self.conn = conn
        self.client_dir = client_dir
        self.base = base  #: runner's folder on the host (a shell word: may start $HOME)
        self.remote_client = f"{base}/client/{client_dir.name}"
        self.bootstrap = bootstrap
        self.command = command
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = self._start()

    def _command(self) -> str:
        env = "" if self.base == REMOTE_BASE else f'RUNNER_REMOTE_BASE="{self.base}" '
        return f'{env}exec python3 -c "{self.bootstrap}" "{self.remote_client}" {self.command}'

    def _start(self) -> subprocess.Popen[bytes]:
        self.conn.ensure_master()
        return subprocess.Popen(
            self.conn.argv(self._command()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
        )

    def hello(self) -> dict[str, Any]:
        """Start talking; ships runner's remote side first if this version is not there."""
        try:
            return self.request({"op": "hello"})[0]
        except TargetUnavailableError:
            code = self.proc.wait(timeout=30)
            if code != NO_CLIENT:
                raise
        self._install()
        self.proc = self._start()
        return self.request({"op": "hello"})[0]

    def _install(self) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(str(self.client_dir / "runner"), arcname="runner")
        data = buf.getvalue()
        proc = self.conn.run(f'exec python3 -c "{INSTALL}" "{self.remote_client}"', stdin=data)
        if proc.returncode != 0:
            raise TargetUnavailableError(
                f"could not install runner's remote side on {self.conn.endpoint.address}: "
                + proc.stderr.decode("utf-8", "replace").strip()
            )

    def _stdin(self) -> BinaryIO:
        if self.proc.stdin is None:
            raise self._failure()
        return cast("BinaryIO", self.proc.stdin)

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Send one frame."""
        try:
            write_frame(self._stdin(), header, payload)
        except (BrokenPipeError, OSError) as exc:
            raise self._failure() from exc

    def receive(self) -> tuple[dict[str, Any], bytes]:
        """The next frame; TargetUnavailableError when the session ended."""
        stdout = self.proc.stdout
        if stdout is None:
            raise self._failure()
        frame = read_frame(cast("BinaryIO", stdout))
        if frame is None:
            raise self._failure()
        header, payload = frame
        if "error" in header:
            raise RemoteError(f"on {self.conn.endpoint.address}: {header['error']}")
        return header, payload

    def request(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """Send a request and read its answer."""
        self.send(header, payload)
        return self.receive()

    def _failure(self) -> TargetUnavailableError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        code = self.proc.poll()
        self._err.seek(0)
        text = self._err.read().decode("utf-8", "replace").strip()
        host = self.conn.endpoint.address
        problem = python_problem(self.conn.endpoint, code)
        if problem is not None:
            return problem
        if code == NO_CLIENT:
            return TargetUnavailableError(f"runner's remote side is missing on {host}")
        return TargetUnavailableError(
            f"the connection to {host} ended (exit {code}){': ' + text if text else ''}"
        )

    def close(self) -> None:
        """End the session (and kill it if it does not end)."""
        with contextlib.suppress(Exception):
            self.send({"op": "bye"})
        with contextlib.suppress(Exception):
            self._stdin().close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()

    def kill(self) -> None:
        """Drop the session at once (the link is gone)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
