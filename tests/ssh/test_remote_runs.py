"""Runs on SSH hosts: real sshd, real remote processes, a real link cut (issue 7)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner import (
    ComputeTarget,
    CondaDependencies,
    Environment,
    Experiment,
    RemoteCompute,
    Run,
    ScriptRunConfig,
    Workspace,
)
from runner.errors import TargetUnavailableError
from targets.ssh import Connection, Endpoint
from tests.helpers import daemon_pid, stop_daemons_under, wait_until, workspaces_under
from tests.ssh.conftest import SshHost

pytestmark = pytest.mark.ssh

REMOTE_RUNS = Path("/home/jobrunner/.runner-remote/runs")


def remote_processes(run_id: str) -> list[psutil.Process]:
    """Live processes on the (loopback or namespaced) host carrying the run's id."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("RUNNER_RUN_ID") == run_id:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def ssh_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast heartbeats; at teardown daemons stopped, shared connections closed."""
    monkeypatch.setenv("RUNNER_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    yield
    problems = stop_daemons_under(tmp_path)
    # A failed test may leave its script running on the host: end it, and say so.
    for ws_path in workspaces_under(tmp_path):
        ids = [r[0] for r in Workspace(ws_path)._store.query("SELECT id FROM runs")]
        for run_id in ids:
            left = remote_processes(run_id)
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            if left:
                problems.append(f"run {run_id} left {len(left)} process(es) on the host")
        # Close the shared connections of this test's targets (not other processes' ones).
        ws = Workspace(ws_path)
        for name, target in ws.compute_targets.items():
            if target.type == "remote":
                Connection(Endpoint.of(ws, name, target.config)).close()
    assert not problems, problems


def attach(ws: Workspace, name: str, host: SshHost, **overrides: Any) -> ComputeTarget:
    """Attach ``host``, trusting the key in its test known_hosts file."""
    folder = ws.path / "ssh"
    folder.mkdir(mode=0o700, exist_ok=True)
    with open(folder / "known_hosts", "a") as f:
        f.write(host.known_hosts.read_text())
    settings: dict[str, Any] = {
        "address": host.address,
        "ssh_port": host.port,
        "username": host.user,
        "private_key_file": str(host.key),
    }
    settings.update(overrides)
    return ComputeTarget.attach(ws, name, RemoteCompute.attach_configuration(**settings))


def record_target(ws: Workspace, name: str, host: SshHost, key: Path | None = None) -> None:
    """Record a target as if attached earlier (the host changed since: the checks at
    attach would refuse it now)."""
    config = {
        "address": host.address,
        "ssh_port": host.port,
        "username": host.user,
        "private_key_file": str(key or host.key),
    }
    with ws._store.write() as conn:
        conn.execute(
            "INSERT INTO compute_targets(name, kind, config, created_utc) VALUES (?,?,?,?)",
            (name, "remote", json.dumps(config), time.time()),
        )


def source(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body))
    return folder


TERMINAL = ("Completed", "Failed", "Canceled")


def finish(run: Run, timeout_s: float = 60) -> str:
    """Wait (at most ``timeout_s``) for the run to end; its final status."""
    wait_until(lambda: run.get_status() in TERMINAL, timeout_s, 0.05, f"run {run.id} to end")
    return run.get_status()


def prep_log(run: Run) -> str:
    return run.get_details_with_logs()["logFiles"]["azureml-logs/55_environment_prep_log.txt"]


def driver_log(run: Run) -> str:
    return run.get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"]


def test_a_script_on_the_host_records_here(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(
        tmp_path,
        """
        import os, sys
        from runner import Run
        run = Run.get_context()
        for i in range(5):
            run.log("loss", 1.0 / (i + 1))
        run.log_list("acc", [0.1, 0.2])
        run.tag("user", os.environ["USER"])
        run.add_properties({"host_python": sys.executable})
        child = run.child_run("fold-0")
        child.log("score", 7)
        child.tag("fold", "0")
        child.complete()
        run.upload_file("uploaded/note.txt", __file__)
        os.makedirs("outputs/deep", exist_ok=True)
        open("outputs/deep/result.txt", "w").write("from " + os.getcwd())
        print("hello from", os.environ["USER"], flush=True)
        """,
    )
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="box"), tags={"k": "v"}
    )
    finish(run, 60)
    assert run.get_status() == "Completed", run.get_details()
    assert run.get_metrics() == {"loss": [1.0, 0.5, 1 / 3, 0.25, 0.2], "acc": [0.1, 0.2]}
    assert run.get_tags() == {"k": "v", "user": "jobrunner"}
    assert run.get_properties()["host_python"] == "/usr/bin/python3"
    (child,) = run.get_children()
    assert child.id == f"{run.id}_0"
    assert child.get_status() == "Completed"
    assert child.get_metrics() == {"score": 7}
    assert child.get_tags() == {"fold": "0"}
    names = run.get_file_names()
    assert "outputs/deep/result.txt" in names
    assert "uploaded/note.txt" in names
    run.download_file("outputs/deep/result.txt", str(tmp_path / "result.txt"))
    assert (tmp_path / "result.txt").read_text() == f"from {REMOTE_RUNS}/{run.id}/work"
    run.download_file("uploaded/note.txt", str(tmp_path / "note.py"))
    assert "child_run" in (tmp_path / "note.py").read_text()
    assert "hello from jobrunner" in driver_log(run)
    assert run.get_details()["target"] == "box"
    # The run's folder on the host is gone once its outputs are here.
    assert not (REMOTE_RUNS / run.id).exists()


def test_logs_and_metrics_arrive_while_the_script_runs(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    gate = Path(tempfile.mkdtemp(prefix="runner-gate-"))  # where the host's user can look
    gate.chmod(0o755)
    src = source(
        tmp_path,
        f"""
        import os, time
        from runner import Run
        run = Run.get_context()
        run.log("step", 1)
        run.tag("phase", "one")
        print("first line", flush=True)
        while not os.path.exists({str(gate / "go")!r}):
            time.sleep(0.05)
        run.log("step", 2)
        """,
    )
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="box")
    )
    wait_until(lambda: run.get_metrics().get("step") == 1, 30, message="the first metric")
    assert run.get_tags().get("phase") == "one"
    assert run.get_status() == "Running"
    wait_until(lambda: "first line" in _live_log(ws, run), 10, message="the first log line")
    (gate / "go").write_text("")
    finish(run, 60)
    shutil.rmtree(gate)
    assert run.get_metrics() == {"step": [1, 2]}
    assert run.get_status() == "Completed"


def _live_log(ws: Workspace, run: Run) -> str:
    path = ws.run_dir(run.id) / "logs" / "70_driver_log.txt"
    return path.read_text() if path.exists() else ""


def test_a_failing_script_fails_the_run_with_its_log_tail(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(tmp_path, "import sys\nprint('about to fail')\nsys.exit(3)\n")
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="box")
    )
    finish(run, 60)
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"]["exitCode"] == 3
    assert "about to fail" in details["error"]["error"]["logTail"]


def test_cancel_reaches_the_remote_tree(ws: Workspace, ssh_host: SshHost, tmp_path: Path) -> None:
    attach(ws, "box", ssh_host)
    src = source(
        tmp_path,
        """
        import signal, subprocess, sys, time
        from runner import Run
        run = Run.get_context()
        # A grandchild that ignores TERM: only the KILL after the grace period ends it.
        subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        run.log("started", 1)
        time.sleep(300)
        """,
    )
    config = ScriptRunConfig(str(src), "train.py", compute_target="box")
    config.run_config.cancel_grace_seconds = 1
    run = Experiment(ws, "remote").submit(config)
    wait_until(lambda: run.get_metrics().get("started") == 1, 30, message="the script to start")
    wait_until(lambda: len(remote_processes(run.id)) >= 3, 10, message="the remote tree")
    t0 = time.monotonic()
    run.cancel()
    finish(run, 60)
    assert run.get_status() == "Canceled"
    assert time.monotonic() - t0 < 20
    assert remote_processes(run.id) == []


def test_an_unchanged_snapshot_is_not_sent_again(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(tmp_path, "print('ok')\n")
    (src / "data.bin").write_bytes(os.urandom(200_000))
    exp = Experiment(ws, "remote")
    first = exp.submit(ScriptRunConfig(str(src), "train.py", compute_target="box"))
    finish(first, 60)
    (version,) = [p.name for p in (ws.path / "client").iterdir()]  # the daemon's client copy
    client = Path("/home/jobrunner/.runner-remote/client") / version
    assert (client / "runner" / "remote_agent.py").is_file()  # runner's remote side, shipped
    shipped = client.stat().st_mtime_ns
    second = exp.submit(ScriptRunConfig(str(src), "train.py", compute_target="box"))
    finish(second, 60)
    assert client.stat().st_mtime_ns == shipped  # once per version, not once per run
    assert second.get_status() == "Completed"
    sent_first = int(prep_log(first).split(" bytes of contents sent")[0].rsplit(" ", 1)[1])
    assert sent_first >= 200_000
    assert ": 0 bytes of contents sent" in prep_log(second)
    # One file changed: only that one goes over.
    # (New content: the host keeps contents of earlier test sessions too.)
    (src / "train.py").write_text(f"print('changed {os.urandom(4).hex()}')\n")
    third = exp.submit(ScriptRunConfig(str(src), "train.py", compute_target="box"))
    finish(third, 60)
    sent_third = int(prep_log(third).split(" bytes of contents sent")[0].rsplit(" ", 1)[1])
    assert 0 < sent_third < 1000
    assert "changed" in driver_log(third)


def test_a_pip_environment_is_a_venv_on_the_host(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(tmp_path, "import sys\nprint('prefix', sys.prefix)\n")
    env = Environment("remote-venv")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=[])
    config = ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env)
    run = Experiment(ws, "remote").submit(config)
    finish(run, 120)
    assert run.get_status() == "Completed", prep_log(run)
    assert "prefix /home/jobrunner/.runner-remote/envs/" in driver_log(run)


def test_an_unknown_host_key_fails_at_submit(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    record_target(ws, "box", ssh_host)  # its key was never accepted in this workspace
    config = ScriptRunConfig(str(source(tmp_path, "")), "train.py", compute_target="box")
    with pytest.raises(TargetUnavailableError, match="host key"):
        Experiment(ws, "remote").submit(config)
    assert list(Run.list(Experiment(ws, "remote"))) == []


def test_a_refused_key_fails_at_submit(ws: Workspace, ssh_host: SshHost, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (ws.path / "ssh").mkdir()
    shutil.copy(ssh_host.known_hosts, ws.path / "ssh" / "known_hosts")
    record_target(ws, "box", ssh_host, key=key)
    config = ScriptRunConfig(str(source(tmp_path, "")), "train.py", compute_target="box")
    with pytest.raises(TargetUnavailableError, match="refused the login"):
        Experiment(ws, "remote").submit(config)


def test_a_host_without_python_fails_at_submit(
    ws: Workspace, nopython_host: SshHost, tmp_path: Path
) -> None:
    (ws.path / "ssh").mkdir()
    shutil.copy(nopython_host.known_hosts, ws.path / "ssh" / "known_hosts")
    record_target(ws, "nopy", nopython_host)
    config = ScriptRunConfig(str(source(tmp_path, "")), "train.py", compute_target="nopy")
    with pytest.raises(TargetUnavailableError, match="no python3"):
        Experiment(ws, "remote").submit(config)


@pytest.mark.slow
def test_a_cut_link_makes_the_run_not_responding_and_nothing_is_lost(
    ws: Workspace, netns_hosts: Any, tmp_path: Path
) -> None:
    attach(ws, "h1", netns_hosts.hosts["h1"])
    src = source(
        tmp_path,
        """
        import time
        from runner import Run
        run = Run.get_context()
        for i in range(120):
            run.log("i", i)
            print("line", i, flush=True)
            if i % 40 == 0:
                run.child_run(f"c{i}").complete()
            time.sleep(0.1)
        """,
    )
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="h1")
    )
    wait_until(lambda: len(run.get_metrics().get("i") or []) >= 5, 30, message="first metrics")
    netns_hosts.cut("h1")
    try:
        wait_until(lambda: run.get_status() == "NotResponding", 15, 0.1, "NotResponding")
        seen = len(run.get_metrics().get("i") or [])
        time.sleep(2)  # the script goes on logging over there
    finally:
        netns_hosts.restore("h1")
    wait_until(lambda: run.get_status() in ("Running", "Finalizing", "Completed"), 30, 0.1, "back")
    finish(run, 60)
    assert run.get_status() == "Completed"
    assert seen < 120
    assert run.get_metrics()["i"] == list(range(120))
    log = driver_log(run)
    assert [line for line in log.splitlines() if line.startswith("line ")] == [
        f"line {i}" for i in range(120)
    ]
    assert sorted(c.name for c in run.get_children()) == ["c0", "c40", "c80"]


@pytest.mark.slow
def test_a_restarted_daemon_follows_a_remote_run_again(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(
        tmp_path,
        """
        import time
        from runner import Run
        run = Run.get_context()
        for i in range(30):
            run.log("i", i)
            time.sleep(0.1)
        """,
    )
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="box")
    )
    wait_until(lambda: len(run.get_metrics().get("i") or []) >= 3, 30, message="first metrics")
    pid = daemon_pid(ws.path)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(10)
    # The next submit (or any client) starts a daemon, which re-adopts the run.
    from runner import daemon_client

    daemon_client.ensure_daemon(ws.path)
    finish(run, 60)
    assert run.get_status() == "Completed"
    assert run.get_metrics()["i"] == list(range(30))


def _test_image() -> str:
    """The base image of tests/docker (scripts/ci_services.sh builds it without a registry)."""
    image = os.environ.get("RUNNER_TEST_IMAGE", "runner-test/python:3.11-bookworm")
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if probe.returncode != 0:
        message = f"no docker engine with image {image}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(f"{message}; to enable: sudo bash scripts/ci_services.sh")
    return image


def _docker_env() -> Environment:
    """The test image as it is, in a container."""
    env = Environment("remote-docker")
    env.docker.enabled = True
    env.docker.base_image = _test_image()
    env.python.user_managed_dependencies = True
    return env


def test_a_docker_environment_runs_in_a_container_on_the_host(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    env = _docker_env()
    attach(ws, "box", ssh_host)
    src = source(
        tmp_path,
        """
        import os
        from runner import Run
        run = Run.get_context()
        run.log("in_container", int(os.path.exists("/.dockerenv")))
        os.makedirs("outputs", exist_ok=True)
        open("outputs/o.txt", "w").write("from the container")
        print("uid", os.getuid())
        """,
    )
    exp = Experiment(ws, "remote")
    run = exp.submit(ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env))
    assert finish(run, 120) == "Completed", prep_log(run) + driver_log(run)
    assert run.get_metrics() == {"in_container": 1}
    assert f"uid {pwd.getpwnam('jobrunner').pw_uid}" in driver_log(run)
    run.download_file("outputs/o.txt", str(tmp_path / "o.txt"))
    assert (tmp_path / "o.txt").read_text() == "from the container"
    again = exp.submit(ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env))
    assert finish(again, 60) == "Completed"
    assert ": cached" in prep_log(again)


def test_cancel_stops_the_container_on_the_host(
    ws: Workspace, ssh_host: SshHost, tmp_path: Path
) -> None:
    env = _docker_env()
    attach(ws, "box", ssh_host)
    src = source(
        tmp_path,
        """
        import signal, time
        from runner import Run
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the KILL after the grace ends it
        Run.get_context().log("started", 1)
        time.sleep(300)
        """,
    )
    config = ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env)
    config.run_config.cancel_grace_seconds = 1
    run = Experiment(ws, "remote").submit(config)
    wait_until(lambda: run.get_metrics().get("started") == 1, 60, message="the script to start")
    run.cancel()
    assert finish(run, 60) == "Canceled"
    names = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=runner.run_id={run.id}", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert names == []


@pytest.mark.slow
def test_a_cancel_during_a_cut_reaches_the_host_once_the_link_is_back(
    ws: Workspace, netns_hosts: Any, tmp_path: Path
) -> None:
    attach(ws, "h1", netns_hosts.hosts["h1"])
    src = source(
        tmp_path,
        """
        import time
        from runner import Run
        Run.get_context().log("started", 1)
        time.sleep(300)
        """,
    )
    config = ScriptRunConfig(str(src), "train.py", compute_target="h1")
    config.run_config.cancel_grace_seconds = 1
    run = Experiment(ws, "remote").submit(config)
    wait_until(lambda: run.get_metrics().get("started") == 1, 30, message="the script to start")
    netns_hosts.cut("h1")
    try:
        wait_until(lambda: run.get_status() == "NotResponding", 15, 0.1, "NotResponding")
        run.cancel()
        time.sleep(1)
        assert run.get_status() not in TERMINAL  # it cannot be known to have ended yet
        assert remote_processes(run.id)  # and it has not: the host was out of reach
    finally:
        netns_hosts.restore("h1")
    assert finish(run, 60) == "Canceled"
    assert remote_processes(run.id) == []
