"""Reaching one host: its endpoint, a shared OpenSSH connection, and the errors (with
their fixes) for what goes wrong when connecting."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import TargetUnavailableError

#: Where runner keeps its files on a remote host.
REMOTE_BASE = "$HOME/.runner-remote"
#: Exit codes of the bootstrap command (127 is the shell's "command not found").
NO_CLIENT, OLD_PYTHON, NO_PYTHON = 86, 87, 127
BOOTSTRAP = (
    "import sys; sys.version_info >= (3, 9) or sys.exit(87); import os; "
    "os.path.isfile(sys.argv[1] + '/runner/remote_agent.py') or sys.exit(86); "
    "sys.path.insert(0, sys.argv[1]); from runner.remote_agent import main; "
    "sys.exit(main(sys.argv[2:]))"
)
INSTALL = (
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
    if exit_code == NO_PYTHON:
        return TargetUnavailableError(
            f"{where} has no python3 on PATH",
            hint="install Python 3.9 or newer there (runner needs nothing else on the host)",
        )
    if exit_code == OLD_PYTHON:
        return TargetUnavailableError(
            f"python3 on {where} is older than 3.9", hint="install Python 3.9 or newer there"
        )
    return None
