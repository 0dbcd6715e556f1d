"""SSH targets: runs on a host reached with the system's OpenSSH client.

Why the OpenSSH client and not a Python SSH library: it is on every machine that has
``ssh``, it reads the user's ``~/.ssh/config`` (aliases, ProxyJump, agents, certificates)
and known_hosts exactly as the user's own ``ssh`` does, and its ControlMaster keeps one
authenticated connection per host that every later command reuses (a new channel costs
a few milliseconds instead of a handshake). paramiko/asyncssh would add a compiled
dependency and reimplement all of that less faithfully.

The remote side is runner's own in-run client plus ``runner.remote_agent`` (standard
library only), copied to ``~/.runner-remote/client/<version>`` once per version. One
``session`` per run carries the snapshot (only contents the host lacks), prepares the
interpreter, starts the script in its own session, and then streams the driver log and
the run's journal back from offsets the supervisor keeps, with heartbeats. When the link
drops, the run goes on over there; the handle reports the link lost (the run becomes
NotResponding), reconnects, and resumes both streams where they stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

from runner.errors import ConfigError, TargetUnavailableError
from runner.remote_agent import read_frame, write_frame

#: Where runner keeps its files on a remote host.
REMOTE_BASE = "$HOME/.runner-remote"
#: Exit codes of the bootstrap command (127 is the shell's "command not found").
_NO_CLIENT, _OLD_PYTHON, _NO_PYTHON = 86, 87, 127
_BOOTSTRAP = (
    "import sys; sys.version_info >= (3, 9) or sys.exit(87); import os; "
    "os.path.isfile(sys.argv[1] + '/runner/remote_agent.py') or sys.exit(86); "
    "sys.path.insert(0, sys.argv[1]); from runner.remote_agent import main; "
    "sys.exit(main(sys.argv[2:]))"
)
_INSTALL = (
    "import io, os, sys, tarfile, tempfile; d = sys.argv[1]; "
    "os.makedirs(os.path.dirname(d), exist_ok=True); "
    "t = tempfile.mkdtemp(dir=os.path.dirname(d)); "
    "tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())).extractall(t); "
    "os.path.isdir(d) or os.rename(t, d)"
)


#: ssh asks "Enter passphrase for key ..." or "user@host's password:".
_ASKPASS = """#!/bin/sh
case "$1" in
  *assphrase*) sed -n 2p "$RUNNER_SSH_SECRETS" ;;
  *) sed -n 1p "$RUNNER_SSH_SECRETS" ;;
esac
"""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host."""

    name: str  #: the target's name
    address: str
    port: int
    user: str
    key_file: str | None
    password: str | None = field(repr=False)  #: from the keyvault; never in repr or logs
    known_hosts: tuple[str, ...] = ()  #: files checked for the host key, in order
    passphrase: str | None = field(default=None, repr=False)  #: of an encrypted key_file

    @staticmethod
    def of(
        ws: Any,
        name: str,
        config: Mapping[str, Any],
        *,
        password: str | None = None,
        passphrase: str | None = None,
    ) -> Endpoint:
        """The endpoint of a target: secrets as given (attach, before they are stored), else
        from the workspace keyvault."""
        vault = ws.get_default_keyvault()
        if password is None and config.get("password_secret"):
            password = vault.get_secret(config["password_secret"])
        if passphrase is None and config.get("passphrase_secret"):
            passphrase = vault.get_secret(config["passphrase_secret"])
        key = config.get("private_key_file")
        return Endpoint(
            name=name,
            address=str(config["address"]),
            port=int(config.get("ssh_port") or 22),
            user=str(config["username"]),
            key_file=os.path.expanduser(key) if key else None,
            password=password,
            known_hosts=known_hosts_files(ws),
            passphrase=passphrase,
        )

    @property
    def host_label(self) -> str:
        """The host as known_hosts names it: ``host`` or ``[host]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def known_hosts_files(ws: Any) -> tuple[str, ...]:
    """The workspace's accepted host keys first, then the user's own known_hosts."""
    return (str(Path(ws.path) / "ssh" / "known_hosts"), os.path.expanduser("~/.ssh/known_hosts"))


class Connection:
    """``ssh`` to one host over a shared ControlMaster connection."""

    #: Seconds without an answer from the server before ssh gives the link up.
    ALIVE_INTERVAL_S = 1
    ALIVE_COUNT = 3

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        digest = hashlib.sha256(repr(endpoint).encode()).hexdigest()[:16]
        # Unix socket paths are limited to ~100 bytes: a short folder in /tmp.
        folder = Path(tempfile.gettempdir()) / f"runner-ssh-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        self.control_path = str(folder / digest)
        self._lock = threading.Lock()

    def options(self) -> list[str]:
        """The ssh options every command of this connection uses."""
        e = self.endpoint
        opts = [
            "-p",
            str(e.port),
            "-l",
            e.user,
            "-o",
            f"ControlPath={self.control_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "UserKnownHostsFile=" + " ".join(shlex.quote(f) for f in e.known_hosts),
            "-o",
            f"ServerAliveInterval={self.ALIVE_INTERVAL_S}",
            "-o",
            f"ServerAliveCountMax={self.ALIVE_COUNT}",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]
        if e.key_file:
            opts += ["-i", e.key_file, "-o", "IdentitiesOnly=yes"]
        if e.password is None and e.passphrase is None:
            opts += ["-o", "BatchMode=yes"]
        else:  # answered by the askpass helper, never by a terminal
            opts += ["-o", "NumberOfPasswordPrompts=1"]
        return opts

    @contextlib.contextmanager
    def _askpass_env(self) -> Iterator[dict[str, str]]:
        """Environment for ssh: with a password or key passphrase, an askpass helper that
        answers ssh's prompts (nothing waits for a terminal).

        The secrets sit in a 0600 file only while the master logs in (``-f`` returns after
        authentication): never in a variable, which the long-lived master would keep
        readable in /proc/PID/environ.
        """
        env = dict(os.environ)
        e = self.endpoint
        if e.password is None and e.passphrase is None:
            yield env
            return
        folder = Path(self.control_path).parent
        helper = folder / "askpass-v3.sh"
        if not helper.exists():
            tmp = folder / f".askpass.{os.getpid()}"
            tmp.write_text(_ASKPASS)
            tmp.chmod(0o700)
            os.replace(tmp, helper)
        fd, secrets = tempfile.mkstemp(dir=folder, prefix=".secrets-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{e.password or ''}\n{e.passphrase or ''}\n")
            env.update(
                SSH_ASKPASS=str(helper),
                SSH_ASKPASS_REQUIRE="force",
                RUNNER_SSH_SECRETS=secrets,
                DISPLAY=env.get("DISPLAY", ":0"),
            )
            yield env
        finally:
            with contextlib.suppress(OSError):
                os.unlink(secrets)

    def master_alive(self) -> bool:
        """Whether the shared connection is up."""
        proc = subprocess.run(
            ["ssh", *self.options(), "-O", "check", self.endpoint.address],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def ensure_master(self) -> None:
        """Open the shared connection if it is not up; clear errors for the usual faults."""
        with self._lock:
            if self.master_alive():
                return
            with tempfile.TemporaryFile() as err, self._askpass_env() as env:
                proc = subprocess.run(
                    [
                        "ssh",
                        *self.options(),
                        "-M",
                        "-N",
                        "-f",
                        "-o",
                        "ControlPersist=600",
                        self.endpoint.address,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,  # a file, not a pipe: the backgrounded master keeps it open
                    env=env,
                    check=False,
                    timeout=60,
                )
                err.seek(0)
                message = err.read().decode("utf-8", "replace").strip()
            if proc.returncode != 0:
                raise explain_ssh_failure(self.endpoint, message)

    def argv(self, remote_command: str) -> list[str]:
        """A command over the shared connection (which must be up)."""
        # BatchMode: a command must never log in by itself (and prompt on a terminal)
        # when the shared connection went away meanwhile; it fails, and is retried.
        return [
            "ssh",
            *self.options(),
            "-o",
            "ControlMaster=no",
            "-o",
            "BatchMode=yes",
            self.endpoint.address,
            remote_command,
        ]

    def run(
        self, remote_command: str, stdin: bytes | None = None, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command on the host and wait for it."""
        self.ensure_master()
        return subprocess.run(
            self.argv(remote_command),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            check=False,
            timeout=timeout_s,
        )

    def close(self) -> None:
        """Stop the shared connection."""
        subprocess.run(
            ["ssh", *self.options(), "-O", "exit", self.endpoint.address],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )


def explain_ssh_failure(endpoint: Endpoint, message: str) -> TargetUnavailableError:
    """The error (with its fix) for what ssh printed when it could not connect."""
    where = f"{endpoint.user}@{endpoint.address}:{endpoint.port} (target {endpoint.name!r})"
    low = message.lower()
    if "remote host identification has changed" in low:
        return TargetUnavailableError(
            f"the host key of {where} CHANGED since it was accepted: someone may be "
            "intercepting the connection, or the host was reinstalled",
            hint=f"if the change is expected, remove its old key with `ssh-keygen -R "
            f"'{endpoint.host_label}' -f {endpoint.known_hosts[0]}` and attach again",
        )
    if "host key verification failed" in low or ("no " in low and "host key is known" in low):
        return TargetUnavailableError(
            f"the host key of {where} is not known",
            hint=f"attach the target again (`runner target attach {endpoint.name} ...`) to "
            "see its fingerprint and accept it",
        )
    if "permission denied" in low and endpoint.password is not None:
        return TargetUnavailableError(
            f"{where} refused the login ({message.splitlines()[-1] if message else ''})",
            hint=f"the password stored for target {endpoint.name!r} in the workspace keyvault "
            "was refused; detach and attach again with the right password",
        )
    if "permission denied" in low:
        key = endpoint.key_file or "your default keys"
        return TargetUnavailableError(
            f"{where} refused the login ({message.splitlines()[-1] if message else ''})",
            hint=f"check that the public key of {key} is in ~{endpoint.user}/.ssh/"
            "authorized_keys on the host, or attach with the right private_key_file/password",
        )
    if endpoint.key_file and not os.path.exists(endpoint.key_file):
        return TargetUnavailableError(
            f"private key file {endpoint.key_file} of {where} does not exist",
            hint="attach the target again with an existing private_key_file",
        )
    return TargetUnavailableError(
        f"cannot reach {where}: {message or 'ssh failed'}",
        hint="check that the host is up and sshd listens on that port",
    )


def python_problem(endpoint: Endpoint, exit_code: int | None) -> TargetUnavailableError | None:
    """The error for a host whose python3 is missing or too old (by the exit code of a
    command that ran it), else None."""
    where = f"host {endpoint.address} (target {endpoint.name!r})"
    if exit_code == _NO_PYTHON:
        return TargetUnavailableError(
            f"{where} has no python3 on PATH",
            hint="install Python 3.9 or newer there (runner needs nothing else on the host)",
        )
    if exit_code == _OLD_PYTHON:
        return TargetUnavailableError(
            f"python3 on {where} is older than 3.9", hint="install Python 3.9 or newer there"
        )
    return None


# -- the agent ---------------------------------------------------------------------------


class RemoteError(TargetUnavailableError):
    """The remote side answered a request with an error (the link itself is fine)."""


class AgentSession:
    """One ``remote_agent session`` process over the shared connection."""

    def __init__(self, conn: Connection, client_dir: Path) -> None:
        self.conn = conn
        self.client_dir = client_dir
        self.remote_client = f"{REMOTE_BASE}/client/{client_dir.name}"
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = self._start()

    def _command(self) -> str:
        return f'exec python3 -c "{_BOOTSTRAP}" "{self.remote_client}" session'

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
            if code != _NO_CLIENT:
                raise
        self._install()
        self.proc = self._start()
        return self.request({"op": "hello"})[0]

    def _install(self) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(str(self.client_dir / "runner"), arcname="runner")
        data = buf.getvalue()
        proc = self.conn.run(f'exec python3 -c "{_INSTALL}" "{self.remote_client}"', stdin=data)
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
        if code == _NO_CLIENT:
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


def environment_request(env: Any) -> dict[str, Any]:
    """What the host needs to prepare ``env``; ConfigError for kinds it cannot prepare."""
    from environments.selection import kind_of

    kind = kind_of(env)
    if kind == "user_managed":
        return {"kind": "user_managed", "python": env.python.interpreter_path}
    if kind == "venv":
        from environments.venv import pip_install_args

        requirements, options, _ = pip_install_args(env)
        wanted = [*options, *requirements]
        key = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:16]
        return {"kind": "venv", "key": key, "requirements": wanted}
    if kind == "docker":
        from environments.docker_image import (
            DEFAULT_PYTHON,
            conda_packages,
            dockerfile_for,
            image_tag,
        )

        if conda_packages(env):
            raise ConfigError(
                f"environment {env.name!r} has conda packages in a docker image, which remote "
                "(SSH) targets cannot build yet; use pip packages in the image, or a base "
                "image that has them"
            )
        env.validate()
        return {
            "kind": "docker",
            "tag": image_tag(env),
            "dockerfile": dockerfile_for(env, env.spec_hash(), with_ca=False),
            "python": env.python.interpreter_path or DEFAULT_PYTHON,
            "shm_size": env.docker.shm_size,
        }
    raise ConfigError(
        f"environment {env.name!r} is a {kind} environment, which remote (SSH) targets cannot "
        "prepare yet; use pip packages (a venv), a docker image, or a user-managed "
        "interpreter on the host"
    )


_PROBED: dict[str, float] = {}


class SshTarget:
    """Runs scripts on one SSH host."""

    kind: ClassVar[str] = "ssh"

    def __init__(
        self, ws: Any, name: str, config: Mapping[str, Any], endpoint: Endpoint | None = None
    ) -> None:
        self.ws = ws
        self.name = name
        self.endpoint = endpoint or Endpoint.of(ws, name, config)
        self.conn = Connection(self.endpoint)

    @classmethod
    def from_endpoint(cls, ws: Any, endpoint: Endpoint) -> SshTarget:
        """A target not recorded (yet): attach checks the login with it."""
        return cls(ws, endpoint.name, {}, endpoint)

    def check(self) -> None:
        """Host key, login and python3 on the host: a clear error now, not a failed run."""
        if self.endpoint.key_file and not os.path.exists(self.endpoint.key_file):
            raise explain_ssh_failure(self.endpoint, "")
        if self.conn.control_path in _PROBED and self.conn.master_alive():
            return
        proc = self.conn.run(
            'exec python3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 87)"',
            timeout_s=60,
        )
        problem = python_problem(self.endpoint, proc.returncode)
        if problem is not None:
            raise problem
        if proc.returncode != 0:
            raise explain_ssh_failure(self.endpoint, proc.stderr.decode("utf-8", "replace"))
        _PROBED[self.conn.control_path] = time.time()

    def open_session(self, client_dir: Path) -> AgentSession:
        """A session with runner's remote side (installed first if needed)."""
        session = AgentSession(self.conn, client_dir)
        session.hello()
        return session

    def reattach(self, described: Mapping[str, str]) -> SshHandle:
        """A handle for a run launched earlier."""
        return SshHandle(self, str(described["run_id"]))

    def close(self) -> None:
        """The shared connection stays up for the next run (ControlPersist ends it)."""


def sync_snapshot(session: AgentSession, blobs: Any, snapshot: Any) -> int:
    """Make the host hold the snapshot; returns the content bytes sent (0 when it had all)."""
    if session.request({"op": "snapshot", "id": snapshot.id})[0].get("have"):
        return 0
    entries = [[e.path, e.digest, e.size, e.executable] for e in snapshot.entries]
    answer, _ = session.request({"op": "snapshot", "id": snapshot.id, "entries": entries})
    sent = 0
    for digest in answer.get("missing") or []:
        data = blobs.read_bytes(digest)
        session.send({"op": "blob", "digest": digest}, data)
        sent += len(data)
    session.request({"op": "snapshot_done", "id": snapshot.id})
    return sent


LinkCallback = Callable[[bool], None]


class SshHandle:
    """A run on a host: follows its log and journal, reconnecting when the link drops."""

    def __init__(self, target: SshTarget, run_id: str) -> None:
        self.target = target
        self.run_id = run_id
        self._code: int | None = None
        self._exited = threading.Event()
        self._session: AgentSession | None = None
        self._thread: threading.Thread | None = None
        self.link_up = True
        self.error: str | None = None
        self._client_dir: Path | None = None

    # -- following -----------------------------------------------------------------------

    def follow(
        self,
        store: Any,
        blobs: Any,
        driver_log: Path,
        client_dir: Path,
        on_link: LinkCallback,
        session: AgentSession | None = None,
        heartbeat_s: float = 2.0,
    ) -> None:
        """Start streaming the run's log and journal into this machine's history."""
        self._session = session
        self._client_dir = client_dir
        self._thread = threading.Thread(
            target=self._follow_loop,
            args=(store, blobs, driver_log, on_link, heartbeat_s),
            name=f"ssh-follow-{self.run_id}",
            daemon=True,
        )
        self._thread.start()

    def _follow_loop(
        self, store: Any, blobs: Any, driver_log: Path, on_link: LinkCallback, heartbeat_s: float
    ) -> None:
        from runner.journal import applied_offset

        client_dir = self._client_dir
        assert client_dir is not None  # noqa: S101 - set by follow()

        delay = 0.5
        while not self._exited.is_set():
            session = self._session
            try:
                if session is None:
                    session = self.target.open_session(client_dir)
                    self._session = session
                log_offset = driver_log.stat().st_size if driver_log.exists() else 0
                session.send(
                    {
                        "op": "follow",
                        "run_id": self.run_id,
                        "log": log_offset,
                        "journal": applied_offset(store, self.run_id),
                        "hb": heartbeat_s,
                    }
                )
                for header, payload in self._frames(session, heartbeat_s * 3 + 2):
                    if not self.link_up:
                        self.link_up = True
                        on_link(True)
                    delay = 0.5
                    self._take(header, payload, store, blobs, driver_log)
                    if self._exited.is_set():
                        return
                raise TargetUnavailableError("no heartbeat from the host")
            except RemoteError as exc:  # not the link: trying again would not help
                self.error = str(exc)
                self._code = -1
                self._exited.set()
                return
            except (TargetUnavailableError, OSError, ValueError) as exc:
                if session is not None:
                    session.kill()
                    with contextlib.suppress(Exception):
                        session.close()
                self._session = None
                if self._exited.is_set():
                    return
                self.error = str(exc)
                if self.link_up:
                    self.link_up = False
                    on_link(False)
                self._exited.wait(delay)
                delay = min(delay * 2, 5.0)

    def _frames(
        self, session: AgentSession, timeout_s: float
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Frames of the session; ends when none came for ``timeout_s`` (the link is gone)."""
        frames: queue.Queue[tuple[dict[str, Any], bytes] | BaseException] = queue.Queue()

        def reader() -> None:
            try:
                while True:
                    frame = session.receive()
                    frames.put(frame)
                    if frame[0].get("s") == "exit":
                        return  # what follows answers the supervisor's own requests
            except BaseException as exc:  # the end of the session, whatever ended it
                frames.put(exc)

        threading.Thread(target=reader, daemon=True).start()
        while True:
            try:
                item = frames.get(timeout=timeout_s)
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item[0].get("s") == "exit":
                return

    def _take(
        self, header: dict[str, Any], payload: bytes, store: Any, blobs: Any, driver_log: Path
    ) -> None:
        from runner.journal import apply

        stream = header.get("s")
        if stream == "log":
            size = driver_log.stat().st_size if driver_log.exists() else 0
            offset = int(header["o"])
            if offset + len(payload) > size:  # resent bytes we have are skipped
                with open(driver_log, "ab") as f:
                    f.write(payload[max(0, size - offset) :])
        elif stream == "journal":
            apply(store, self.run_id, int(header["o"]), payload)
        elif stream == "blob":
            blobs.put_bytes(payload)
        elif stream == "exit":
            code = header.get("code")
            if header.get("missing"):
                self.error = "the run's folder on the host is gone"
            self._code = -1 if code is None else int(code)
            self._exited.set()

    # -- RunHandle -----------------------------------------------------------------------

    def poll(self) -> int | None:
        """The exit code once the host reported it."""
        return self._code if self._exited.is_set() else None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code."""
        self._exited.wait(timeout_s)
        return self.poll()

    def cancel(self, grace_s: float = 10.0) -> None:
        """TERM the run's session on the host, wait ``grace_s``, KILL the rest.

        Over a new connection, so it works while the follower is cut off; retried until
        the host answers or the run is known to have ended.
        """
        if self._exited.is_set():
            return  # the agent already ended what the script left behind
        if self._client_dir is None:
            raise TargetUnavailableError(f"run {self.run_id} is not being followed")
        command = (
            f'exec python3 -c "{_BOOTSTRAP}" "{REMOTE_BASE}/client/{self._client_dir.name}" '
            f"cancel {shlex.quote(self.run_id)} {float(grace_s)}"
        )
        delay = 0.5
        while not self._exited.is_set():
            try:
                proc = self.target.conn.run(command, timeout_s=grace_s + 60)
                if proc.returncode == 0:
                    return
            except (TargetUnavailableError, OSError, subprocess.TimeoutExpired):
                pass
            self._exited.wait(delay)
            delay = min(delay * 2, 5.0)

    def fetch_outputs(self, dest: Path) -> None:
        """Copy the run's ./outputs and ./logs from the host into ``dest``, then remove
        the run's folder there."""
        session = self._session
        if session is None:
            if self._client_dir is None:
                raise TargetUnavailableError(f"run {self.run_id} is not being followed")
            session = self.target.open_session(self._client_dir)
        try:
            _, data = session.request({"op": "outputs", "run_id": self.run_id})
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                if hasattr(tarfile, "data_filter"):  # refuses links and paths that escape
                    tar.extractall(dest, filter="data")
                else:  # pragma: no cover - Python before 3.11.4
                    tar.extractall(dest)  # noqa: S202
            session.request({"op": "cleanup", "run_id": self.run_id})
        finally:  # the run has ended: its session is done
            session.close()
            self._session = None

    def describe(self) -> dict[str, str]:
        """Enough to follow the run again after a restart."""
        return {"kind": "ssh", "target": self.target.name, "run_id": self.run_id}
