"""A shared GPU box: a second, real user of the machine against the owner's workspace.

The second user (``runner-peer``, created here as root) runs a standard-library script
(scripts/lc_intruder.py) that sends every daemon request straight to the socket and tries
to read every file and folder of the workspace, while the owner's run is live. The owner
submits, and checks what happened, from processes of their own. The workspace sits in a
folder everybody can enter, so only runner's own protection stands in the way.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import daemon_pid, end_leftover_runs, stop_daemons_under, wait_until
from tests.lifecycle.conftest import SCRIPTS, Lifecycle

PEER = "runner-peer"
TEAM = "runner-team"
OPS = ["ping", "wake", "status", "cancel", "wait", "configure", "keep", "stop"]


@dataclass(frozen=True)
class Peer:
    """The second user, and how to run a script as them."""

    uid: int
    gid: int
    team: int  #: gid of a group the peer is not a member of unless asked
    python: str

    def run(
        self, script: Path, *args: object, groups: str | None = None, timeout_s: float = 60
    ) -> dict[str, object]:
        """Run SCRIPT as the peer (supplementary groups: none, or ``groups``); its JSON."""
        argv = [*self.argv(groups), str(script), *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stderr}"
        result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
        assert result.get("uid", self.uid) == self.uid
        return result

    def argv(self, groups: str | None = None) -> list[str]:
        """The command prefix that runs a Python script as the peer."""
        group_args = [f"--groups={groups}"] if groups else ["--clear-groups"]
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", *group_args,
                self.python, "-I"]  # fmt: skip


def _ensure(kind: str, name: str, *create: str) -> None:
    if subprocess.run(["getent", kind, name], capture_output=True, check=False).returncode:
        subprocess.run(list(create), check=True, capture_output=True)


@pytest.fixture(scope="session")
def peer() -> Peer:
    """The second user of the machine (created if missing: it takes root)."""
    if os.geteuid() != 0:
        message = "creating a second user takes root; run the tests as root (CI does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    _ensure("group", TEAM, "groupadd", "--system", TEAM)
    _ensure("passwd", PEER, "useradd", "--system", "--no-create-home",
            "--shell", "/usr/sbin/nologin", PEER)  # fmt: skip
    entry = pwd.getpwnam(PEER)
    for python in (sys.executable, "/usr/bin/python3"):
        probe = Peer(entry.pw_uid, entry.pw_gid, grp.getgrnam(TEAM).gr_gid, python)
        ok = subprocess.run([*probe.argv(), "-c", "pass"], capture_output=True, check=False)
        if ok.returncode == 0:
            return probe
    pytest.fail(f"no Python that user {PEER} can run ({sys.executable}, /usr/bin/python3)")


@pytest.fixture
def box() -> Iterator[Lifecycle]:
    """A workspace in a folder every user of the machine can enter (not tmp_path: pytest
    keeps that private, which would hide whether runner keeps the workspace private)."""
    base = Path(tempfile.mkdtemp(prefix="runner-box-", dir="/tmp"))
    base.chmod(0o755)
    # The intruder's script where the peer can read it (the checkout may not be).
    shutil.copy(SCRIPTS / "lc_intruder.py", base / "lc_intruder.py")
    (base / "lc_intruder.py").chmod(0o644)
    box = Lifecycle(base)
    try:
        yield box
    finally:
        for proc in box.background:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        (box.markers / "all.release").touch()
        problems = stop_daemons_under(base) + end_leftover_runs(base, box.pids, wait_s=10.0)
        shutil.rmtree(base, ignore_errors=True)
        assert not problems, problems


def _every_path(ws: Path) -> list[str]:
    paths = [str(ws)]
    for folder, dirs, files in os.walk(ws):
        paths += [os.path.join(folder, d) for d in dirs]
        paths += [os.path.join(folder, f) for f in files]
    return paths


def _hold_a_run(box: Lifecycle) -> str:
    src = box.source("lc_train.py")
    (run_id,) = box.submit(
        src, "lc_train.py", "--value", "1", "--output", "secret", "--hold", box.markers,
        experiment="owner",
    )  # fmt: skip
    box.wait_started(run_id)
    return run_id


def test_a_second_user_can_neither_use_the_daemon_nor_read_anything(
    box: Lifecycle, peer: Peer
) -> None:
    run_id = _hold_a_run(box)
    box.py(SCRIPTS / "lc_create.py", box.ws, "--secret", "token=s3cr3t")
    daemon = daemon_pid(box.ws)
    paths = _every_path(box.ws)
    listing = box.tmp / "paths.json"
    listing.write_text(json.dumps(paths))
    listing.chmod(0o644)

    answers = peer.run(box.tmp / "lc_intruder.py", "requests", box.ws, run_id)["requests"]
    readable = peer.run(box.tmp / "lc_intruder.py", "read", listing)["read"]

    assert answers == dict.fromkeys(OPS, "unreachable"), answers
    assert readable == [], f"{len(readable)} of {len(paths)} paths readable: {readable[:10]}"
    print(f"requests refused to {PEER}: {len(OPS)} of {len(OPS)}; "
          f"paths readable by them: 0 of {len(paths)}")  # fmt: skip
    # The owner, from processes of their own: the run and the daemon did not notice.
    assert box.read(run_id)[run_id]["status"] == "Running"
    assert daemon_pid(box.ws) == daemon
    box.release(run_id)
    box.wait_completed(run_id)


def test_the_daemon_refuses_other_users_even_in_an_opened_folder(
    box: Lifecycle, peer: Peer
) -> None:
    run_id = _hold_a_run(box)
    daemon = daemon_pid(box.ws)
    # A careless `chmod -R a+rwX`: the socket file is reachable now; the daemon's check of
    # the caller's credentials is what is left.
    subprocess.run(["chmod", "-R", "a+rwX", str(box.ws)], check=True)

    answers = peer.run(box.tmp / "lc_intruder.py", "requests", box.ws, run_id)["requests"]

    assert answers == dict.fromkeys(OPS, "refused"), answers
    log = (box.ws / "daemon" / "daemon.log").read_text()
    assert f"(uid {peer.uid}): not the owner of this workspace" in log, box.daemon_log()
    assert box.read(run_id)[run_id]["status"] == "Running"
    assert daemon_pid(box.ws) == daemon
    box.release(run_id)
    box.wait_completed(run_id)


def test_a_squatted_socket_is_reported_and_never_obeyed(box: Lifecycle, peer: Peer) -> None:
    box.py(SCRIPTS / "lc_create.py", box.ws)  # a private workspace, no daemon yet
    assert daemon_pid(box.ws) is None
    (box.ws / "daemon").mkdir(exist_ok=True)
    subprocess.run(["chmod", "0777", str(box.ws), str(box.ws / "daemon")], check=True)
    record = box.tmp / "squatter-received"
    record.touch()
    record.chmod(0o666)
    squatter = subprocess.Popen(
        [*peer.argv(), str(box.tmp / "lc_intruder.py"), "squat", box.ws, record],
        stdout=subprocess.PIPE,
        text=True,
    )
    box.background.append(squatter)  # type: ignore[arg-type]
    assert squatter.stdout is not None
    assert "squatting" in squatter.stdout.readline()

    status = box.cli("daemon", "status", "-o", "json", check=False)
    src = box.source("lc_train.py")
    (run_id,) = box.submit(src, "lc_train.py", experiment="squat")
    box.wait_completed(run_id)

    report = json.loads(status.stdout)
    assert report["running"] is False, report
    assert f"answered by pid {squatter.pid}" in report["problem"], report
    assert record.read_bytes() == b"", "a request reached the squatter"
    # The real daemon replaced the socket and serves the owner.
    served = box.cli_json("daemon", "status")
    assert served["running"] is True
    assert served["pid"] == daemon_pid(box.ws) != squatter.pid


def test_a_shared_workspace_serves_its_group_and_nobody_else(box: Lifecycle, peer: Peer) -> None:
    box.py(SCRIPTS / "lc_create.py", box.ws, "--shared-group", TEAM)
    run_id = _hold_a_run(box)
    assert (box.ws.stat().st_mode & 0o7777, box.ws.stat().st_gid) == (0o2770, peer.team)
    intruder = box.tmp / "lc_intruder.py"

    # (only requests that change nothing: a member could cancel the run, and may)
    member = peer.run(intruder, "requests", box.ws, run_id, "ping", "status", groups=TEAM)
    member = member["requests"]
    outsider = peer.run(intruder, "requests", box.ws, run_id)["requests"]

    assert member["ping"].startswith("obeyed"), member
    assert member["status"].startswith("obeyed"), member
    assert outsider == dict.fromkeys(OPS, "unreachable"), outsider
    assert _modes(box.ws, 0o007) == []
    assert {os.stat(p).st_gid for p in _every_path(box.ws)} == {peer.team}
    box.release(run_id)
    box.wait_completed(run_id)


def test_sharing_an_existing_workspace_and_taking_it_back(box: Lifecycle, peer: Peer) -> None:
    """`runner workspace access` (each step its own process) opens a private workspace
    to the group with its daemon running, and closes it again."""
    run_id = _hold_a_run(box)
    intruder = box.tmp / "lc_intruder.py"
    before = peer.run(intruder, "requests", box.ws, run_id, "ping", groups=TEAM)["requests"]
    assert before == {"ping": "unreachable"}, before

    shared = box.cli_json("workspace", "access", "--group", TEAM)
    assert (shared["shared"], shared["group"], shared["daemonStopped"]) == (True, TEAM, True), (
        shared,
        box.daemon_log(),
    )
    assert shared["changed"] > 0
    box.cli("daemon", "start")  # a new daemon, with the new access
    member = peer.run(intruder, "requests", box.ws, run_id, "ping", "status", groups=TEAM)
    assert member["requests"]["ping"].startswith("obeyed"), member
    assert _modes(box.ws, 0o007) == []
    assert {os.stat(p).st_gid for p in _every_path(box.ws)} == {peer.team}

    private = box.cli_json("workspace", "access", "--private")
    assert (private["shared"], private["daemonStopped"]) == (False, True), (
        private,
        box.daemon_log(),
    )
    box.cli("daemon", "start")
    after = peer.run(intruder, "requests", box.ws, run_id, "ping", groups=TEAM)["requests"]
    assert after == {"ping": "unreachable"}, after
    assert _modes(box.ws, 0o077) == []
    box.release(run_id)
    box.wait_completed(run_id)


def test_sharing_with_a_group_that_does_not_exist_is_one_line(box: Lifecycle) -> None:
    box.py(SCRIPTS / "lc_create.py", box.ws)
    proc = box.cli("workspace", "access", "--group", "no-such-group-here", check=False)
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "no group 'no-such-group-here'" in proc.stderr
    assert "shared_gid" not in (box.ws / "workspace.json").read_text()


def test_oversized_requests_and_idle_connections_are_bounded(box: Lifecycle) -> None:
    box.cli("daemon", "start")
    pid = daemon_pid(box.ws)
    assert pid is not None
    path = str(box.ws / "daemon" / "daemon.sock")

    def threads() -> int:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))

    def cpu_s() -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    baseline = threads()
    cpu_before = cpu_s()
    with socket.socket(socket.AF_UNIX) as big:
        big.connect(path)
        big.settimeout(10)
        started = time.monotonic()
        # The daemon stops reading past its limit and closes: the rest cannot be sent.
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            big.sendall(b'{"op": "ping", "pad": "' + b"x" * (40 << 20) + b'"}\n')
    assert time.monotonic() - started < 5
    assert cpu_s() - cpu_before < 1.0

    idle = []
    try:
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            idle.append(sock)
        wait_until(lambda: threads() <= baseline + 64 + 2, 5, message="threads bounded")
        assert threads() <= baseline + 64 + 2
    finally:
        for sock in idle:
            sock.close()
    # Served again once the idle connections are gone.
    wait_until(
        lambda: box.run([sys.executable, "-m", "runner", "daemon", "status", "-o", "json"],
                        check=False).stdout.count('"running": true'),
        15, message="the daemon answering again",
    )  # fmt: skip
    assert daemon_pid(box.ws) == pid


def _modes(ws: Path, bits: int) -> list[str]:
    """Paths of runner's own files with any of ``bits`` set in their mode.

    A run's work folder is left out: what the script writes there has the mode the
    user's umask gives it, as anywhere else (the folders above keep it from others).
    """
    return [
        f"{os.stat(p).st_mode & 0o7777:o} {p}"
        for p in _every_path(ws)
        if os.stat(p).st_mode & bits and "/work/" not in p[len(str(ws)) :]
    ]


@pytest.mark.parametrize(
    ("umask", "shared"), [("0", False), ("022", False), ("077", True), ("022", True)]
)
def test_workspace_files_keep_their_modes_whatever_the_umask(
    lc: Lifecycle, umask: str, shared: bool, request: pytest.FixtureRequest
) -> None:
    if shared:
        peer = request.getfixturevalue("peer")  # (creates the group)
    umasked = {"RUNNER_TEST_UMASK": umask}
    wrap = ["sh", "-c", 'umask "$RUNNER_TEST_UMASK"; exec "$@"', "umasked"]
    create = [*wrap, sys.executable, str(SCRIPTS / "lc_create.py"), lc.ws, "--secret", "k=v"]
    lc.run(create + (["--shared-group", TEAM] if shared else []), env=umasked)
    src = lc.source("lc_train.py")
    lc.run(
        [*wrap, sys.executable, str(SCRIPTS / "lc_submit.py"), "-e", "umask", "-s", src,
         "--wait", "lc_train.py", "--", "--value", "2", "--output", "x", "--say", "hi"],
        env=umasked,
    )  # fmt: skip
    cli = [*wrap, sys.executable, "-m", "runner"]
    lc.run([*cli, "run", "list", "-e", "umask"], env=umasked)
    lc.run([*cli, "daemon", "start", "--max-concurrent", "4"], env=umasked)  # settings.json
    (held,) = lc.submit(
        src, "lc_train.py", "--value", "3", "--hold", lc.markers, experiment="umask"
    )  # fmt: skip
    lc.wait_started(held)
    lc.run([*cli, "run", "cancel", "-r", held], env=umasked)  # the cancel marker
    lc.wait_statuses("umask", {held: "Canceled"})
    lc.py(SCRIPTS / "lc_create.py", lc.ws, "--secret", "k2=v2", env=umasked)
    assert (lc.ws / "runner.db-wal").exists()  # (WAL and SHM are checked too)

    if not shared:
        assert _modes(lc.ws, 0o077) == []
        return
    assert _modes(lc.ws, 0o007) == []
    paths = [p for p in _every_path(lc.ws) if "/work/" not in p[len(str(lc.ws)) :]]
    assert {os.stat(p).st_gid for p in paths} == {peer.team}
    blobs = str(lc.ws / "blobs") + "/"
    unshared = [
        f"{os.stat(p).st_mode & 0o7777:o} {p}"
        for p in paths
        if os.stat(p).st_mode & 0o7777
        not in ((0o2770,) if os.path.isdir(p) else (0o440,) if p.startswith(blobs) else (0o660,))
    ]
    assert unshared == [], unshared
