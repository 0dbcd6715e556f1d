"""Real sshd hosts for tests/ssh: system OpenSSH, key-only auth, strict host keys, no fakes.

``scripts/ssh_services.sh`` (root only) sets them up:

- ``ssh_host``: 127.0.0.1:2222, user ``jobrunner`` (state in /tmp/infra-ssh);
- ``netns_hosts``: h1=10.213.0.11 and h2=10.213.0.12, port 22, user ``jobrunner``, each in
  its own network namespace behind a veth pair (state in /tmp/infra-netns); their links can
  be cut and restored;
- ``nopython_host``: 127.0.0.3:2222, user ``jobrunner-nopy``, whose sessions find no
  ``python3`` or ``python`` but have ``sh``, ``cat``, ``mkdir``, ``tar`` and such (state in
  /tmp/infra-ssh-nopy);
- ``password_host``: 127.0.0.4:2222, user ``jobrunner-pw``, password login only (no keys, no
  keyboard-interactive, ``UsePAM no``); the password, random per machine, is in
  /tmp/infra-ssh-pw/password (root only), and /tmp/infra-ssh-pw/askpass prints it.

With ``CI=true`` the hosts must be there: when one does not answer, the script is run (as
root, once per session), and a host still unusable fails the tests. Elsewhere the tests are
skipped with the command that enables them.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, require_service

SETUP_SCRIPT = REPO / "scripts" / "ssh_services.sh"
ENABLE = "sudo bash scripts/ssh_services.sh"
#: How long a login may take to connect before a host counts as not there (or cut off).
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class SshHost:
    """One sshd to log in to: where, as whom, with which key, trusting which host key."""

    address: str
    port: int
    user: str
    key: Path
    known_hosts: Path

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``addr`` on port 22, else ``[addr]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def ssh_argv(self, *command: str, options: Mapping[str, str] | None = None) -> list[str]:
        """A full ``ssh`` argv running ``command`` on this host (no command: a login).

        No config file is read (``-F none``); ``options`` (``-o NAME=VALUE``) come first, so
        they win over the defaults here (for ssh the first value of an option counts), e.g.
        ``options={"ConnectTimeout": "2", "ServerAliveInterval": "1"}``.
        """
        opts = dict(options or {})
        for name, value in (
            ("BatchMode", "yes"),
            ("IdentitiesOnly", "yes"),
            ("StrictHostKeyChecking", "yes"),
            ("UserKnownHostsFile", str(self.known_hosts)),
            ("GlobalKnownHostsFile", "/dev/null"),
            ("ConnectTimeout", str(CONNECT_TIMEOUT_S)),
        ):
            opts.setdefault(name, value)
        argv = ["ssh", "-F", "none", "-i", str(self.key), "-p", str(self.port)]
        for name, value in opts.items():
            argv += ["-o", f"{name}={value}"]
        return [*argv, f"{self.user}@{self.address}", *command]

    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint as ``ssh-keygen -l`` prints it (``SHA256:...``),
        from this host's line in known_hosts."""
        return _fingerprint(self.known_hosts, self.known_hosts_name)


def _fingerprint(known_hosts: Path, name: str) -> str:
    for line in known_hosts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and name in fields[0].split(","):
            digest = hashlib.sha256(base64.b64decode(fields[2])).digest()
            return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    raise LookupError(f"{name} is not in {known_hosts}")


@dataclass(frozen=True, slots=True)
class PasswordHost:
    """An sshd that takes a password and nothing else: where, as whom, with which password,
    trusting which host key."""

    address: str
    port: int
    user: str
    known_hosts: Path
    password: str = dataclasses.field(repr=False)

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``addr`` on port 22, else ``[addr]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint (``SHA256:...``), from known_hosts."""
        return _fingerprint(self.known_hosts, self.known_hosts_name)


MAIN_HOST = SshHost(
    "127.0.0.1",
    2222,
    "jobrunner",
    Path("/tmp/infra-ssh/client_key"),
    Path("/tmp/infra-ssh/known_hosts"),
)
NOPYTHON_HOST = SshHost(
    "127.0.0.3",
    2222,
    "jobrunner-nopy",
    Path("/tmp/infra-ssh-nopy/client_key"),
    Path("/tmp/infra-ssh-nopy/known_hosts"),
)
NETNS_HOSTS = {
    name: SshHost(
        f"10.213.0.{11 + i}",
        22,
        "jobrunner",
        Path("/tmp/infra-netns/client_key"),
        Path("/tmp/infra-netns/known_hosts"),
    )
    for i, name in enumerate(("h1", "h2"))
}
#: The password-only host: its state folder (password, askpass, known_hosts).
PASSWORD_STATE = Path("/tmp/infra-ssh-pw")
#: Prints the login name, then ``nopython`` when neither python3 nor python is found.
PROBE = 'echo "$(id -un) $(command -v python3 || command -v python || echo nopython)"'


def _problem(host: SshHost, python: bool = True) -> str | None:
    """None when ``host`` takes a login (and finds python, or does not, as asked)."""
    for path in (host.key, host.known_hosts):
        if not os.access(path, os.R_OK):
            return f"{path} is missing or unreadable"
    try:
        proc = subprocess.run(
            host.ssh_argv(PROBE),
            capture_output=True,
            text=True,
            timeout=3 * CONNECT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"ssh to {host.known_hosts_name} hung"
    where = f"ssh {host.user}@{host.known_hosts_name}"
    if proc.returncode != 0:
        return f"{where}: exit {proc.returncode}: {proc.stderr.strip()}"
    user, _, found = proc.stdout.strip().partition(" ")
    if user != host.user:
        return f"{where}: logged in as {user!r}"
    if python and found == "nopython":
        return f"{where}: no python3 on its PATH"
    if not python and found != "nopython":
        return f"{where}: python found: {found!r}"
    return None


def _password_problem() -> str | None:
    """None when the password host takes a password login (as jobrunner-pw, with python3)."""
    for name in ("password", "askpass", "known_hosts"):
        if not os.access(PASSWORD_STATE / name, os.R_OK):
            return f"{PASSWORD_STATE / name} is missing or unreadable"
    argv = ["ssh", "-F", "none", "-p", "2222"]
    for option in (
        "PubkeyAuthentication=no",
        "PreferredAuthentications=password",
        "NumberOfPasswordPrompts=1",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={PASSWORD_STATE / 'known_hosts'}",
        "GlobalKnownHostsFile=/dev/null",
        f"ConnectTimeout={CONNECT_TIMEOUT_S}",
    ):
        argv += ["-o", option]
    env = dict(os.environ, SSH_ASKPASS=str(PASSWORD_STATE / "askpass"))
    env.update(SSH_ASKPASS_REQUIRE="force", DISPLAY=env.get("DISPLAY", ":0"))
    try:
        proc = subprocess.run(
            [*argv, "jobrunner-pw@127.0.0.4", PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=3 * CONNECT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "ssh to [127.0.0.4]:2222 hung"
    where = "ssh jobrunner-pw@[127.0.0.4]:2222 with its password"
    if proc.returncode != 0:
        return f"{where}: exit {proc.returncode}: {proc.stderr.strip()}"
    if proc.stdout.split() != ["jobrunner-pw", "/usr/bin/python3"]:
        return f"{where}: printed {proc.stdout.strip()!r}, not 'jobrunner-pw /usr/bin/python3'"
    return None


def _require(what: str, problem: Callable[[], str | None]) -> None:
    """Skip (or with CI=true, set up or fail) unless ``problem()`` finds nothing."""
    require_service(what, problem, SETUP_SCRIPT, ENABLE)


@pytest.fixture(scope="session")
def ssh_host() -> SshHost:
    """sshd on 127.0.0.1:2222, user jobrunner."""
    _require("sshd on 127.0.0.1:2222", lambda: _problem(MAIN_HOST))
    return MAIN_HOST


@pytest.fixture(scope="session")
def nopython_host() -> SshHost:
    """sshd on 127.0.0.3:2222, user jobrunner-nopy: no python3/python on its PATH (a folder
    of symlinks to sh, cat, mkdir, tar, ...); /usr/bin/python3 by full path would still run."""
    _require("host without python on 127.0.0.3:2222", lambda: _problem(NOPYTHON_HOST, False))
    return NOPYTHON_HOST


@pytest.fixture(scope="session")
def password_host() -> PasswordHost:
    """sshd on 127.0.0.4:2222, user jobrunner-pw, password login only (python3 on PATH)."""
    _require("password-only sshd on 127.0.0.4:2222", _password_problem)
    return PasswordHost(
        "127.0.0.4",
        2222,
        "jobrunner-pw",
        PASSWORD_STATE / "known_hosts",
        (PASSWORD_STATE / "password").read_text(),
    )


class NetnsHosts:
    """h1 and h2, each in its own network namespace, and a way to cut them off.

    ``cut(name)`` sets the root end of the host's veth pair down (``ip link set veth-h1
    down``): its only link goes dark, and packets both ways are dropped silently, with no
    RST and no ICMP, as when a cable is pulled. The host and its processes keep running. A
    new connection then times out (``ConnectTimeout``); an established one stalls: ssh with
    ``ServerAliveInterval=1 ServerAliveCountMax=3`` gives up after about 3-4 s ("Timeout,
    server ... not responding", exit 255), and one without keep-alives hangs until TCP gives
    up. The host's sshd is not told either: its sessions (and their commands) live on.

    A link was chosen over iptables DROP rules: nothing depends on which iptables (legacy or
    nft) is installed or on the rules dockerd keeps rewriting, nothing is left behind but a
    link state, and scripts/ssh_services.sh sets every link up again. Unlike a cut further
    away, the host itself sees its link lose carrier; for TCP that makes no difference.

    ``restore(name)`` sets the link up again and waits until port 22 answers; it may be
    called any number of times. Needs root (as does setting the hosts up).
    """

    def __init__(self, hosts: Mapping[str, SshHost]) -> None:
        self.hosts: dict[str, SshHost] = dict(hosts)

    def _link(self, name: str, state: str) -> None:
        if name not in self.hosts:
            raise KeyError(f"no netns host {name!r}; there are {sorted(self.hosts)}")
        proc = subprocess.run(
            ["ip", "link", "set", f"veth-{name}", state],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"ip link set veth-{name} {state}: {proc.stderr.strip()}", pytrace=False)

    def cut(self, name: str) -> None:
        """Cut ``name`` off the network: packets to and from it are dropped from now on."""
        self._link(name, "down")

    def restore(self, name: str, timeout_s: float = 5.0) -> None:
        """Put ``name`` back on the network; return once a TCP connect to its sshd works."""
        self._link(name, "up")
        host = self.hosts[name]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection((host.address, host.port), timeout=0.5):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not answer after restore: {exc}", pytrace=False)
                time.sleep(0.05)


@pytest.fixture(scope="session")
def netns_hosts() -> Iterator[NetnsHosts]:
    """h1 (10.213.0.11) and h2 (10.213.0.12), port 22, user jobrunner; every link is
    restored at teardown."""
    hosts = NetnsHosts(NETNS_HOSTS)
    for name in hosts.hosts:
        # a link a crashed session left cut would read as "not there"
        if os.geteuid() == 0:
            subprocess.run(["ip", "link", "set", f"veth-{name}", "up"], capture_output=True)
    _require(
        "netns hosts h1, h2 (10.213.0.11-12)",
        lambda: next(filter(None, map(_problem, hosts.hosts.values())), None),
    )
    yield hosts
    for name in hosts.hosts:
        hosts.restore(name)
