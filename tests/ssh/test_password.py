"""A host that takes a password and nothing else (issue 7): the password lives in the
workspace keyvault only, and the system ssh client gets it from an askpass helper."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil
import pytest

from runner import ComputeTarget, Experiment, RemoteCompute, ScriptRunConfig, Workspace
from runner.errors import TargetUnavailableError
from targets.ssh import Connection, Endpoint
from tests.helpers import script_env
from tests.ssh.conftest import PasswordHost
from tests.ssh.test_remote_runs import (  # noqa: F401 - ssh_session: autouse fixture
    driver_log,
    finish,
    source,
    ssh_session,
)

pytestmark = pytest.mark.ssh


def attach_with_password(ws: Workspace, name: str, host: PasswordHost) -> ComputeTarget:
    """Attach ``host`` by password, trusting the key in its test known_hosts file."""
    folder = ws.path / "ssh"
    folder.mkdir(mode=0o700, exist_ok=True)
    with open(folder / "known_hosts", "a") as f:
        f.write(host.known_hosts.read_text())
    config = RemoteCompute.attach_configuration(
        address=host.address, ssh_port=host.port, username=host.user, password=host.password
    )
    return ComputeTarget.attach(ws, name, config)


def stored_config(ws: Workspace, name: str) -> dict[str, object]:
    rows = ws._store.query("SELECT config FROM compute_targets WHERE name = ?", (name,))
    assert len(rows) == 1
    config: dict[str, object] = json.loads(rows[0][0])
    return config


def test_a_password_host_runs_a_script_and_keeps_the_password_secret(
    ws: Workspace, password_host: PasswordHost, tmp_path: Path
) -> None:
    password = password_host.password
    attach_with_password(ws, "pwbox", password_host)
    config = stored_config(ws, "pwbox")
    assert config.get("private_key_file") is None
    assert password not in json.dumps(config, ensure_ascii=False)
    secret = config["password_secret"]
    assert isinstance(secret, str)
    assert ws.get_default_keyvault().get_secret(secret) == password
    src = source(
        tmp_path,
        """
        import os
        from runner import Run
        run = Run.get_context()
        run.log("loss", 0.5)
        run.log("loss", 0.25)
        print("hello by password from", os.environ["USER"], flush=True)
        """,
    )
    run = Experiment(ws, "remote").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="pwbox")
    )
    assert finish(run, 60) == "Completed", run.get_details()
    assert run.get_metrics() == {"loss": [0.5, 0.25]}
    assert "hello by password from jobrunner-pw" in driver_log(run)
    assert run.get_details()["target"] == "pwbox"
    # In no file of the workspace but the keyvault: not in the database (nor its -wal/-shm
    # files), not in the run's logs or records.
    ws._store.flush()
    database = Path(ws._store.db_path)
    assert database.is_file()
    assert database.is_relative_to(ws.path)
    # as is, or escaped in JSON (the test password has quotes and a backslash)
    needles = {password.encode(), json.dumps(password)[1:-1].encode()}
    holders = sorted(
        str(path.relative_to(ws.path))
        for path in ws.path.rglob("*")
        if path.is_file() and any(n in path.read_bytes() for n in needles)
    )
    assert holders == [str(ws.get_default_keyvault().path.relative_to(ws.path))], holders
    # Nor in the environment of a process (the shared connection lives for minutes), nor
    # in a file left next to the askpass helper.
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            environ = "\0".join(f"{k}={v}" for k, v in proc.environ().items())
            assert password not in environ, proc.cmdline()
    sockets = Path(f"/tmp/runner-ssh-{os.getuid()}")
    assert not [p for p in sockets.iterdir() if p.name.startswith(".secrets-")]


def test_a_wrong_password_fails_at_submit_quickly(
    ws: Workspace, password_host: PasswordHost, tmp_path: Path
) -> None:
    attach_with_password(ws, "pwbox", password_host)
    secret = stored_config(ws, "pwbox")["password_secret"]
    assert isinstance(secret, str)
    ws.get_default_keyvault().set_secret(secret, password_host.password + "-wrong")
    config = ScriptRunConfig(str(source(tmp_path, "")), "train.py", compute_target="pwbox")
    start = time.monotonic()
    with pytest.raises(TargetUnavailableError, match="refused the login") as caught:
        Experiment(ws, "remote").submit(config)
    # No prompt waited for (ssh gets no TTY to ask on, and one try only): a few seconds.
    assert time.monotonic() - start < 10
    assert "jobrunner-pw@127.0.0.4:2222" in str(caught.value)
    assert "password" in str(caught.value)
    assert password_host.password not in str(caught.value)
    assert list(Experiment(ws, "remote").get_runs()) == []


def under_terminal(argv: list[str], timeout_s: float = 5) -> tuple[int | None, str]:
    """Run ``argv`` in a new session whose controlling terminal is a fresh pty (as from an
    interactive shell); (exit code, what it wrote to the terminal). The exit code is None
    when it had not ended after ``timeout_s`` (it is killed then: it waited for input)."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # in the child, before exec
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=script_env(),
            preexec_fn=take_terminal,
        )
        os.close(slave)
        output = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the pty's other end is gone
                    chunk = b""
                output += chunk
                if not chunk and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        code = proc.poll()
        if code is None:
            proc.kill()
        proc.wait()
        return code, output.decode("utf-8", "replace")
    finally:
        os.close(master)


def test_a_wrong_password_does_not_prompt_on_a_terminal(
    ws: Workspace, password_host: PasswordHost
) -> None:
    """Submitting from an interactive shell: ssh could ask there, and must not."""
    attach_with_password(ws, "pwbox", password_host)
    secret = stored_config(ws, "pwbox")["password_secret"]
    assert isinstance(secret, str)
    ws.get_default_keyvault().set_secret(secret, "wrong")
    code = (
        "import sys; from runner import ComputeTarget, Workspace; from targets.ssh import "
        "SshTarget; ws = Workspace(sys.argv[1]); "
        "SshTarget(ws, 'pwbox', ComputeTarget(ws, 'pwbox').config).check()"
    )
    exit_code, output = under_terminal([sys.executable, "-c", code, str(ws.path)])
    assert exit_code == 1, output
    assert "TargetUnavailableError" in output
    assert "refused the login" in output
    assert "password:" not in output.replace("password)", "")


def test_a_command_without_the_shared_connection_does_not_prompt_on_a_terminal(
    ws: Workspace, password_host: PasswordHost
) -> None:
    """A command meant for the shared connection finds none (it ended a moment before:
    the link dropped, ControlPersist ran out): it must fail, not ask for the password."""
    attach_with_password(ws, "pwbox", password_host)
    endpoint = Endpoint.of(ws, "pwbox", stored_config(ws, "pwbox"))
    conn = Connection(endpoint)
    conn.close()
    assert not conn.master_alive()
    exit_code, output = under_terminal(conn.argv("echo ran"))
    assert exit_code == 255, output
    assert "password:" not in output.replace("password)", "")
