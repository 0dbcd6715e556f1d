"""Host keys of SSH targets: see the key a host presents, and accept it once, at attach.

Runs connect with ``StrictHostKeyChecking=yes`` against the workspace's
``WS/ssh/known_hosts`` and then the user's ``~/.ssh/known_hosts``
(``targets.ssh.known_hosts_files``), so a host's key must be known before its first run.
Attaching is where it becomes known (``verify_attach``):

1. ``presented_key``: one ``ssh`` connection with ``StrictHostKeyChecking=accept-new`` and
   a scratch file first in ``UserKnownHostsFile``, with every authentication method off,
   so no password or key is offered to a host whose key is not accepted yet. The ssh
   client decides, exactly as it will for runs (the user's ssh config, hashed entries, the
   global known_hosts, ``@revoked`` markers): a key it knows leaves the scratch file empty;
   a new key lands there, so we hold the very line ssh would have written; a key that
   differs from the known one fails ("REMOTE HOST IDENTIFICATION HAS CHANGED").
2. ``accept``: a new key is taken only when the caller gave its SHA256 fingerprint.
3. The login and python3 are checked (``SshTarget.check``) while the new key is still only
   in the scratch file, so a failed login leaves nothing behind.
4. ``add_known_host`` appends the line to WS/ssh/known_hosts (0600, folder 0700) once the
   target is recorded; ``remove_known_host`` takes it out again at detach.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import HostKeyError, TargetUnavailableError
from targets.ssh import Endpoint, SshTarget, explain_ssh_failure, known_hosts_files

#: ssh options of the host-key probe: no authentication at all, one plain known_hosts line.
_PROBE_OPTIONS = (
    "StrictHostKeyChecking=accept-new",
    "HashKnownHosts=no",
    "UpdateHostKeys=no",
    "CheckHostIP=no",
    "BatchMode=yes",
    "ConnectTimeout=10",
    "LogLevel=ERROR",
    "ControlMaster=no",
    "ControlPath=none",
    "PubkeyAuthentication=no",
    "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "GSSAPIAuthentication=no",
    "HostbasedAuthentication=no",
)
_SENT_BY_HOST = re.compile(
    r"fingerprint for the (\S+) key sent by the remote host is\s+(\S+?)\.?$", re.M
)
_OFFENDING = re.compile(r"^Offending \S+ key in (.+):(\d+)\s*$", re.M)


@dataclass(frozen=True, slots=True)
class HostKey:
    """One host key as a known_hosts line holds it."""

    label: str  #: the hosts field, e.g. ``[127.0.0.1]:2222``
    key_type: str  #: e.g. ``ssh-ed25519``
    key: str  #: the public key, base64

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        return fingerprint_of(self.key)

    @property
    def line(self) -> str:
        """The known_hosts line (no newline)."""
        return f"{self.label} {self.key_type} {self.key}"

    @staticmethod
    def parse(line: str) -> HostKey | None:
        """The key of a known_hosts line; None for comments, markers and broken lines."""
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")):
            return None
        try:
            fingerprint_of(fields[2])
        except ValueError:
            return None
        return HostKey(fields[0], fields[1], fields[2])


def fingerprint_of(key_b64: str) -> str:
    """The SHA256 fingerprint of a base64 public key (ValueError if it is not base64)."""
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not a base64 public key: {key_b64[:20]}...") from exc
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# -- seeing and accepting the key --------------------------------------------------------


def presented_key(endpoint: Endpoint, scratch: Path) -> HostKey | None:
    """The key the host presents when ssh does not know it yet; None when ssh already
    accepts it from ``endpoint.known_hosts``.

    Raises:
        HostKeyError: the host's key differs from the one known for it.
        TargetUnavailableError: the host cannot be reached (with the fix).
    """
    files = (str(scratch), *endpoint.known_hosts)
    argv = ["ssh", "-p", str(endpoint.port), "-l", endpoint.user]
    for option in (*_PROBE_OPTIONS, "UserKnownHostsFile=" + " ".join(map(shlex.quote, files))):
        argv += ["-o", option]
    argv += [endpoint.address, "true"]
    where = f"{endpoint.user}@{endpoint.address}:{endpoint.port} (target {endpoint.name!r})"
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TargetUnavailableError(
            f"cannot reach {where}: no answer in 60 s",
            hint="check that the host is up and sshd listens on that port",
        ) from exc
    text = proc.stderr.decode("utf-8", "replace").replace("\r", "").strip()
    if scratch.exists():
        for line in scratch.read_text(encoding="utf-8").splitlines():
            key = HostKey.parse(line)
            if key is not None:
                return key
    low = text.lower()
    if "remote host identification has changed" in low or "has changed and you" in low:
        raise _changed(endpoint, text)
    if proc.returncode == 0 or "permission denied" in low:
        return None  # the key is known and good: only the (disabled) login failed
    if "host key verification failed" in low:
        raise TargetUnavailableError(
            f"ssh refused the host key of {where}: {_one_line(text)}",
            hint="check the host's entries in your known_hosts files (a @revoked key?)",
        )
    raise explain_ssh_failure(endpoint, text)


def _changed(endpoint: Endpoint, text: str) -> HostKeyError:
    label = endpoint.host_label
    sent = _SENT_BY_HOST.search(text)
    key_type, fingerprint = (sent.group(1), sent.group(2)) if sent else ("unknown", "unknown")
    offending = _OFFENDING.search(text)
    where = f"{offending.group(1)} line {offending.group(2)}" if offending else "known_hosts"
    file = offending.group(1) if offending else endpoint.known_hosts[0]
    return HostKeyError(
        f"the host key of {label} (target {endpoint.name!r}) CHANGED: it presents {key_type} "
        f"{fingerprint}, not the key in {where}; someone may be intercepting the connection "
        "(man in the middle), or the host was reinstalled",
        host=label,
        key_type=key_type,
        fingerprint=fingerprint,
        changed=True,
        hint=f"if the change is expected, remove the old key with `ssh-keygen -R "
        f"'{label}' -f {shlex.quote(file)}` and attach again",
    )


def accept(key: HostKey, expected: str | None, name: str) -> None:
    """Nothing when ``expected`` is the fingerprint of ``key``; else HostKeyError saying
    how to accept it (none given) or that it is another key (possibly a man in the middle)."""
    fingerprint = key.fingerprint
    if expected == fingerprint:
        return
    if expected is None:
        raise HostKeyError(
            f"the host key of {key.label} (target {name!r}) is not known yet: it presents "
            f"{key.key_type} {fingerprint}",
            host=key.label,
            key_type=key.key_type,
            fingerprint=fingerprint,
            hint="if that is the host's key (on the host: `ssh-keygen -lf "
            f"/etc/ssh/ssh_host_*_key.pub`), attach again with host_key_fingerprint="
            f"'{fingerprint}' (or `runner target attach {name} ... --accept-host-key "
            f"{fingerprint}`)",
        )
    raise HostKeyError(
        f"the host key of {key.label} (target {name!r}) is {key.key_type} {fingerprint}, "
        f"not {expected} as given: someone may be intercepting the connection (man in the "
        "middle), or the fingerprint given is of another host or key",
        host=key.label,
        key_type=key.key_type,
        fingerprint=fingerprint,
        expected=expected,
        hint="nothing was attached; compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` "
        "run on the host itself",
    )


def verify_attach(
    ws: Any,
    name: str,
    config: dict[str, Any],
    password: str | None,
    fingerprint: str | None,
    passphrase: str | None = None,
    then: str | None = None,
) -> HostKey | None:
    """Everything attaching ``name`` needs from the host, before anything is recorded: an
    accepted host key, an accepted login, python3 >= 3.9, and what the kind of target
    checks besides (``then``: ``module:function(ws, endpoint, config)``, e.g. a Slurm
    cluster's commands). Returns the new key to add to WS/ssh/known_hosts (None when ssh
    knew it already); raises the error that says why not.
    """
    endpoint = Endpoint.of(ws, name, config, password=password, passphrase=passphrase)
    with tempfile.TemporaryDirectory(prefix="runner-hostkey-") as tmp:
        scratch = Path(tmp) / "known_hosts"
        new = presented_key(endpoint, scratch)
        if new is not None:
            accept(new, fingerprint, name)
        checked = dataclasses.replace(endpoint, known_hosts=(str(scratch), *endpoint.known_hosts))
        _check_login(ws, checked)
        if then is not None:
            module, _, function = then.partition(":")
            getattr(importlib.import_module(module), function)(ws, checked, config)
    return new


def _check_login(ws: Any, endpoint: Endpoint) -> None:
    """``SshTarget.check`` for a target not recorded yet: its password is not in the
    keyvault and its new host key only in a scratch file."""
    target = SshTarget.from_endpoint(ws, endpoint)
    try:
        target.check()
    finally:
        target.conn.close()  # its control path is of this check only


# -- the workspace's known_hosts -----------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The workspace's known_hosts, locked against other writers (its folder made 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_known_host(ws: Any, key: HostKey) -> None:
    """Append ``key`` to WS/ssh/known_hosts (mode 0600), unless it is there already."""
    path = Path(known_hosts_files(ws)[0])
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if key.line in text.splitlines():
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(("\n" if text and not text.endswith("\n") else "") + key.line + "\n")


def remove_known_host(ws: Any, label: str) -> int:
    """Remove the lines of host ``label`` from WS/ssh/known_hosts; how many there were."""
    path = Path(known_hosts_files(ws)[0])
    if not path.exists():
        return 0
    with _locked(path):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if label not in _hosts_of(line)]
        if len(kept) == len(lines):
            return 0
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, path)
    return len(lines) - len(kept)


def _hosts_of(line: str) -> list[str]:
    fields = line.split()
    if fields and fields[0].startswith("@"):  # @cert-authority, @revoked
        fields = fields[1:]
    if not fields or fields[0].startswith("#"):
        return []
    return fields[0].split(",")


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
