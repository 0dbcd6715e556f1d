"""The SSH test hosts themselves: logins, host keys, link cuts, the host without python."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.ssh.conftest import NetnsHosts, SshHost

pytestmark = pytest.mark.ssh


def _ssh(host: SshHost, command: str, **options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        host.ssh_argv(command, options=options),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(params=["ssh_host", "nopython_host", "h1", "h2"])
def any_host(request: pytest.FixtureRequest) -> SshHost:
    if request.param in ("h1", "h2"):
        hosts: NetnsHosts = request.getfixturevalue("netns_hosts")
        return hosts.hosts[request.param]
    host: SshHost = request.getfixturevalue(request.param)
    return host


def test_login_runs_as_the_user(any_host: SshHost) -> None:
    proc = _ssh(any_host, "id -un")
    assert (proc.returncode, proc.stdout) == (0, f"{any_host.user}\n"), proc.stderr


def test_fingerprint_is_the_one_ssh_keygen_finds(any_host: SshHost) -> None:
    out = subprocess.run(
        ["ssh-keygen", "-lF", any_host.known_hosts_name, "-f", str(any_host.known_hosts)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = [line.split()[2] for line in out.splitlines() if not line.startswith("#")]
    assert found == [any_host.fingerprint()]
    assert found[0].startswith("SHA256:")


def test_nopython_host_has_a_shell_but_no_python(nopython_host: SshHost) -> None:
    for name in ("python3", "python"):
        proc = _ssh(nopython_host, f"command -v {name}")
        assert (proc.returncode, proc.stdout) == (127, ""), proc.stdout
    proc = _ssh(
        nopython_host,
        'd=$(mktemp -d) && mkdir -p "$d/a b" && echo ok | cat > "$d/a b/f" && cat "$d/a b/f"'
        ' && rm -r "$d"',
    )
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


def test_cut_fails_new_connections_until_restored(netns_hosts: NetnsHosts) -> None:
    h1, h2 = netns_hosts.hosts["h1"], netns_hosts.hosts["h2"]
    netns_hosts.cut("h1")
    try:
        t0 = time.monotonic()
        proc = _ssh(h1, "true", ConnectTimeout="2")
        elapsed = time.monotonic() - t0
        assert proc.returncode == 255, proc.stderr
        assert elapsed < 2 + 2, f"took {elapsed:.1f} s with ConnectTimeout=2"
        assert _ssh(h2, "true").returncode == 0, "cutting h1 cut h2 as well"
    finally:
        netns_hosts.restore("h1")
    netns_hosts.restore("h1")  # twice is fine
    proc = _ssh(h1, "id -un")
    assert (proc.returncode, proc.stdout) == (0, "jobrunner\n"), proc.stderr


def test_cut_stalls_an_established_session(netns_hosts: NetnsHosts) -> None:
    h1 = netns_hosts.hosts["h1"]
    options = {"ServerAliveInterval": "1", "ServerAliveCountMax": "3"}
    with subprocess.Popen(
        h1.ssh_argv("echo up; exec sleep 20", options=options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "up\n"
            netns_hosts.cut("h1")
            t0 = time.monotonic()
            rc = proc.wait(timeout=10)
            elapsed = time.monotonic() - t0
        finally:
            netns_hosts.restore("h1")
            if proc.poll() is None:
                proc.kill()
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert rc == 255, err
    assert "not responding" in err
    assert 2 <= elapsed < 6, f"ssh noticed the cut after {elapsed:.1f} s"
