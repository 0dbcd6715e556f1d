"""Attaching SSH hosts: host keys shown and accepted explicitly, the login checked, nothing
recorded on failure, and detach cleaning up. Real sshd hosts (tests/ssh/conftest.py)."""

from __future__ import annotations

import io
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.compute import ComputeTarget, RemoteCompute
from runner.errors import ConfigError, HostKeyError, TargetUnavailableError
from runner.workspace import Workspace
from targets.ssh import SshTarget
from tests.helpers import CliResult, call_cli
from tests.ssh.conftest import SshHost

pytestmark = pytest.mark.ssh

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()
GLOBAL_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


@pytest.fixture(autouse=True)
def users_known_hosts_untouched() -> Iterator[None]:
    """Attaching writes the workspace's known_hosts, never the user's own."""
    before = USER_KNOWN_HOSTS.read_bytes() if USER_KNOWN_HOSTS.exists() else None
    yield
    after = USER_KNOWN_HOSTS.read_bytes() if USER_KNOWN_HOSTS.exists() else None
    assert after == before, f"{USER_KNOWN_HOSTS} was changed"


def _known_outside(host: SshHost) -> bool:
    """Whether ssh would trust ``host`` anyway, from the user's or the global known_hosts."""
    for path in (USER_KNOWN_HOSTS, GLOBAL_KNOWN_HOSTS):
        if path.exists():
            found = subprocess.run(
                ["ssh-keygen", "-F", host.known_hosts_name, "-f", str(path)],
                capture_output=True,
                check=False,
            )
            if found.returncode == 0 and found.stdout.strip():
                return True
    return False


@pytest.fixture
def host(ssh_host: SshHost) -> SshHost:
    """127.0.0.1:2222, whose key this machine's user does not know."""
    if _known_outside(ssh_host):
        pytest.skip(f"{ssh_host.known_hosts_name} is in ~/.ssh or /etc/ssh known_hosts already")
    return ssh_host


def config(host: SshHost, **kwargs: Any) -> Any:
    kwargs.setdefault("private_key_file", str(host.key))
    return RemoteCompute.attach_configuration(
        address=host.address, ssh_port=host.port, username=host.user, **kwargs
    )


def ws_known_hosts(ws: Workspace) -> Path:
    return Path(ws.path) / "ssh" / "known_hosts"


def host_line(host: SshHost) -> str:
    """The host's line in the fixture's known_hosts (what attaching should add)."""
    for line in host.known_hosts.read_text().splitlines():
        if line.split()[0] == host.known_hosts_name:
            return line
    raise LookupError(host.known_hosts_name)


def assert_nothing_recorded(ws: Workspace) -> None:
    assert list(ws.compute_targets) == ["local"]
    assert ws.get_default_keyvault().list_secrets() == []
    path = ws_known_hosts(ws)
    assert not path.exists() or path.read_text() == ""


# -- the API -------------------------------------------------------------------------------


def test_unknown_host_key_is_shown_and_nothing_recorded(ws: Workspace, host: SshHost) -> None:
    fingerprint = host.fingerprint()
    with pytest.raises(HostKeyError, match=r"not known yet") as info:
        ComputeTarget.attach(ws, "box", config(host))
    err = info.value
    assert (err.host, err.key_type, err.fingerprint) == (
        "[127.0.0.1]:2222",
        "ssh-ed25519",
        fingerprint,
    )
    assert err.unknown
    assert err.exit_code == 2
    assert isinstance(err, TargetUnavailableError)
    message = str(err)
    assert "[127.0.0.1]:2222" in message
    assert f"host_key_fingerprint='{fingerprint}'" in message
    assert f"--accept-host-key {fingerprint}" in message
    assert_nothing_recorded(ws)


def test_right_fingerprint_attaches_and_adds_the_key(ws: Workspace, host: SshHost) -> None:
    target = ComputeTarget.attach(ws, "box", config(host, host_key_fingerprint=host.fingerprint()))
    assert (target.name, target.type) == ("box", "remote")
    assert target.config == {
        "address": "127.0.0.1",
        "ssh_port": 2222,
        "username": "jobrunner",
        "private_key_file": str(host.key),
    }
    path = ws_known_hosts(ws)
    assert path.read_text() == host_line(host) + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    found = subprocess.run(
        ["ssh-keygen", "-F", host.known_hosts_name, "-f", str(path)],
        capture_output=True,
        check=False,
    )
    assert found.returncode == 0

    # runs connect with strict host key checking against that file
    ssh_target = SshTarget(ws, "box", target.config)
    try:
        ssh_target.check()
    finally:
        ssh_target.conn.close()

    # the key is known now: another name for the same host needs no fingerprint
    ComputeTarget.attach(ws, "box-2", config(host))
    assert sorted(ws.compute_targets) == ["box", "box-2", "local"]
    assert path.read_text() == host_line(host) + "\n"


def test_fingerprint_is_taken_as_ssh_keygen_prints_it(ws: Workspace, host: SshHost) -> None:
    pasted = "  sha256:" + host.fingerprint()[7:] + "=\n"
    assert config(host, host_key_fingerprint=pasted).host_key_fingerprint == host.fingerprint()
    with pytest.raises(ConfigError, match=r"'MD5:aa:bb' is not a SHA256 host key fingerprint"):
        config(host, host_key_fingerprint="MD5:aa:bb")


def test_wrong_fingerprint_names_both(ws: Workspace, host: SshHost, nopython_host: SshHost) -> None:
    wrong = nopython_host.fingerprint()  # a real fingerprint, of another host
    assert wrong != host.fingerprint()
    with pytest.raises(HostKeyError, match=r"man in the middle") as info:
        ComputeTarget.attach(ws, "box", config(host, host_key_fingerprint=wrong))
    message = str(info.value)
    assert host.fingerprint() in message
    assert wrong in message
    assert (info.value.expected, info.value.unknown) == (wrong, False)
    assert_nothing_recorded(ws)


def test_changed_host_key_is_refused(ws: Workspace, host: SshHost, nopython_host: SshHost) -> None:
    # the workspace knows another key for 127.0.0.1:2222: as after a reinstall, or a MITM
    other_key = host_line(nopython_host).split(maxsplit=1)[1]
    path = ws_known_hosts(ws)
    path.parent.mkdir(mode=0o700)
    path.write_text(f"{host.known_hosts_name} {other_key}\n")
    with pytest.raises(HostKeyError, match=r"CHANGED.*ssh-keygen -R '\[127.0.0.1\]:2222'") as info:
        ComputeTarget.attach(ws, "box", config(host, host_key_fingerprint=host.fingerprint()))
    assert info.value.changed
    assert info.value.fingerprint == host.fingerprint()
    assert list(ws.compute_targets) == ["local"]
    assert path.read_text() == f"{host.known_hosts_name} {other_key}\n"


def test_refused_key_records_nothing(ws: Workspace, host: SshHost, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
        check=True,
        capture_output=True,
    )
    cfg = config(host, private_key_file=str(stranger), host_key_fingerprint=host.fingerprint())
    with pytest.raises(TargetUnavailableError, match=r"refused the login.*authorized_keys"):
        ComputeTarget.attach(ws, "box", cfg)
    assert_nothing_recorded(ws)


def test_refused_password_leaves_no_secret(ws: Workspace, host: SshHost) -> None:
    password = "not a credential"  # noqa: S105 - sshd there takes no passwords at all
    cfg = config(
        host, private_key_file=None, password=password, host_key_fingerprint=host.fingerprint()
    )
    with pytest.raises(TargetUnavailableError, match=r"refused the login"):
        ComputeTarget.attach(ws, "box", cfg)
    assert_nothing_recorded(ws)


def test_missing_private_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"private_key_file='.*/nope': no such file"):
        RemoteCompute.attach_configuration(
            address="127.0.0.1", username="u", private_key_file=str(tmp_path / "nope")
        )


def test_host_without_python(ws: Workspace, nopython_host: SshHost) -> None:
    cfg = config(nopython_host, host_key_fingerprint=nopython_host.fingerprint())
    with pytest.raises(TargetUnavailableError, match=r"host 127.0.0.3 .* has no python3 on PATH"):
        ComputeTarget.attach(ws, "nopy", cfg)
    assert_nothing_recorded(ws)


def test_unreachable_host(ws: Workspace, host: SshHost) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = RemoteCompute.attach_configuration(
        address="127.0.0.1", ssh_port=port, username="u", private_key_file=str(host.key)
    )
    with pytest.raises(TargetUnavailableError, match=rf"cannot reach u@127.0.0.1:{port}.*refused"):
        ComputeTarget.attach(ws, "box", cfg)
    assert_nothing_recorded(ws)


def test_taken_name_fails_before_connecting(ws: Workspace, host: SshHost) -> None:
    ComputeTarget.attach(ws, "box", config(host, host_key_fingerprint=host.fingerprint()))
    with pytest.raises(ValueError, match=r"a compute target named 'box' exists"):
        ComputeTarget.attach(ws, "box", config(host))


def test_detach_removes_secrets_and_the_key_when_no_target_uses_it(
    ws: Workspace, host: SshHost
) -> None:
    path = ws_known_hosts(ws)
    path.parent.mkdir(mode=0o700)
    unrelated = "[10.9.9.9]:2222 " + host_line(host).split(maxsplit=1)[1]
    path.write_text(unrelated + "\n")
    fingerprint = host.fingerprint()
    # a passphrase is stored in the keyvault like a password (the key has none; ssh ignores it)
    passphrase = "pp"  # noqa: S105 - not a credential
    first = ComputeTarget.attach(
        ws, "a", config(host, private_key_passphrase=passphrase, host_key_fingerprint=fingerprint)
    )
    ComputeTarget.attach(ws, "b", config(host))
    secret = first.config["passphrase_secret"]
    assert ws.get_default_keyvault().get_secret(secret) == "pp"
    assert path.read_text() == f"{unrelated}\n{host_line(host)}\n"

    first.detach()
    assert [s["name"] for s in ws.get_default_keyvault().list_secrets()] == []
    assert host_line(host) in path.read_text()  # "b" still uses that host

    ComputeTarget(ws, "b").detach()
    assert path.read_text() == unrelated + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(ws.compute_targets) == ["local"]


# -- the CLI -------------------------------------------------------------------------------


Result = CliResult
runner_cli = call_cli


def attach_argv(ws: Workspace, host: SshHost, name: str = "box") -> list[object]:
    return [
        "-w",
        ws.path,
        "target",
        "attach",
        name,
        "--address",
        host.address,
        "--ssh-port",
        host.port,
        "--username",
        host.user,
        "--private-key-file",
        host.key,
    ]


class Terminal(io.StringIO):
    """Typed answers on a terminal (stdin.isatty() is what the command asks)."""

    def isatty(self) -> bool:
        return True


def test_cli_unknown_host_without_a_terminal_exits_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ws: Workspace,
    host: SshHost,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: never asked
    result = runner_cli(capsys, *attach_argv(ws, host))
    assert (result.code, result.out) == (2, "")
    (line,) = result.err.splitlines()
    assert line.startswith("runner: error: the host key of [127.0.0.1]:2222 is not known yet")
    assert f"ssh-ed25519 {host.fingerprint()}" in line
    assert line.endswith(f"run the command again with --accept-host-key {host.fingerprint()}")
    assert_nothing_recorded(ws)


def test_cli_accept_host_key_then_list_and_detach(
    capsys: pytest.CaptureFixture[str], ws: Workspace, host: SshHost
) -> None:
    fingerprint = host.fingerprint()
    result = runner_cli(capsys, *attach_argv(ws, host), "--accept-host-key", fingerprint)
    assert (result.code, result.err) == (0, "")
    row = {
        "name": "box",
        "type": "remote",
        "address": "127.0.0.1",
        "sshPort": 2222,
        "username": "jobrunner",
        "privateKeyFile": str(host.key),
        "password": None,
    }
    assert result.json == row
    assert ws_known_hosts(ws).read_text() == host_line(host) + "\n"

    base = ["-w", ws.path, "target"]
    listed = runner_cli(capsys, *base, "list")
    assert listed.json == [
        {
            "name": "local",
            "type": "local",
            "address": None,
            "sshPort": None,
            "username": None,
            "privateKeyFile": None,
            "password": None,
        },
        row,
    ]
    table = runner_cli(capsys, *base, "list", "-o", "table").out.splitlines()
    assert table[0].split() == ["Name", "Type", "Address", "SshPort", "Username"]
    assert table[3].split() == ["box", "remote", "127.0.0.1", "2222", "jobrunner"]

    wrong = runner_cli(capsys, *attach_argv(ws, host, "other"), "--accept-host-key", "SHA256:x")
    assert wrong.code == 2
    assert "is not a SHA256 host key fingerprint" in wrong.err

    detached = runner_cli(capsys, *base, "detach", "box")
    assert detached.json == {"name": "box", "detached": True}
    assert ws_known_hosts(ws).read_text() == ""
    assert runner_cli(capsys, *base, "list", "--query", "[].name").json == ["local"]


def test_cli_asks_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ws: Workspace,
    host: SshHost,
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = runner_cli(capsys, *attach_argv(ws, host))
    assert declined.code == 2
    assert f"fingerprint: {host.fingerprint()}" in declined.err
    assert "key type:    ssh-ed25519" in declined.err
    assert "Accept this host key? [y/N]" in declined.err
    assert declined.err.splitlines()[-1].startswith("Accept this host key? [y/N] runner: error:")
    assert "nothing was attached" in declined.err
    assert_nothing_recorded(ws)

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    accepted = runner_cli(capsys, *attach_argv(ws, host))
    assert accepted.code == 0, accepted.err
    assert accepted.json["name"] == "box"
    assert f"accepted the ssh-ed25519 key {host.fingerprint()}" in accepted.err
    assert ws_known_hosts(ws).read_text() == host_line(host) + "\n"


def test_cli_refused_login_is_one_line(
    capsys: pytest.CaptureFixture[str], ws: Workspace, nopython_host: SshHost
) -> None:
    result = runner_cli(
        capsys,
        *attach_argv(ws, nopython_host, "nopy"),
        "--accept-host-key",
        nopython_host.fingerprint(),
    )
    assert (result.code, result.out) == (1, "")
    (line,) = result.err.splitlines()
    assert "has no python3 on PATH" in line
    assert_nothing_recorded(ws)
