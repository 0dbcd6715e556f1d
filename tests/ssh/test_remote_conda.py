"""Conda environments on an SSH host: locked here, installed there (issue 18).

Real sshd (127.0.0.1:2222, user jobrunner), real py-rattler on both sides, the hand-made
offline channel of tests/environments/conda_channel.py. The channel lies in this test's tmp
folder, which the host's user cannot read: every archive reaches the host over the agent
session, as on a host without channel access. Its stand-in ``python`` package runs the
host's /usr/bin/python3 (the interpreter the host's user may execute).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from environments.cache import EnvironmentCache
from environments.conda import CondaBuilder
from environments.conda_definition import conda_platform
from environments.conda_remote import (
    archive_file,
    describe_archives,
    installer_fits,
    locked_archives,
)
from environments.conda_worker import WORKER_SCRIPT
from runner import CondaDependencies, Environment, Experiment, Run, ScriptRunConfig, Workspace
from runner.errors import ConfigError
from runner.remote_agent import conda_host, read_frame, write_frame
from tests.environments.conda_channel import LocalChannel, build_channel
from tests.helpers import REPO, run_code
from tests.ssh.conftest import SshHost
from tests.ssh.test_remote_runs import (  # the same host set-up and teardown as those runs
    attach,
    driver_log,
    finish,
    prep_log,
    source,
    ssh_session,  # noqa: F401 - autouse fixture
)

pytestmark = pytest.mark.ssh

HOST_PYTHON = "/usr/bin/python3"
REMOTE_ENVS = Path("/home/jobrunner/.runner-remote/envs")
SCRIPT = """
import os, subprocess, sys
import pyhello
from runner import Run
pyhello.main()
print("prefix", os.environ["CONDA_PREFIX"])
print("greeting", os.environ.get("GREETING"))
# the prefix's bin/ comes first on PATH: its entry point runs
print(subprocess.run(["pyhello"], capture_output=True, text=True, check=True).stdout.strip())
Run.get_context().log("pyhello_version", float(pyhello.__version__))
"""


@pytest.fixture(scope="module")
def conda_tools() -> None:
    """py-rattler and conda-lock are installed (found without importing py-rattler here)."""
    missing = [m for m in ("rattler", "conda_lock") if importlib.util.find_spec(m) is None]
    if missing:
        problem = f"{', '.join(missing)} not installed; pip install py-rattler conda-lock"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def host_channel(tmp_path_factory: pytest.TempPathFactory, conda_tools: None) -> LocalChannel:
    """A new channel per session (a new lock: the host has built nothing from it yet)."""
    version = subprocess.run(
        [HOST_PYTHON, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return build_channel(
        tmp_path_factory.mktemp("host-channel"),
        conda_platform(),
        (HOST_PYTHON, version),
        tag=os.urandom(8).hex(),  # archives the host has not been given in an earlier session
    )


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for this module's tests: the py-rattler bundle is made once."""
    return tmp_path_factory.mktemp("env-cache")


@pytest.fixture(autouse=True)
def env_cache(module_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RUNNER_ENV_CACHE, set before the first submit starts the daemon."""
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(module_cache))
    return module_cache


def spec_file(folder: Path, channel: LocalChannel, *packages: str) -> Path:
    """An environment.yml naming only the test channel."""
    major_minor = ".".join(channel.python_version.split(".")[:2])
    lines = [f"  - {p}\n" for p in (f"python={major_minor}", *packages)]
    path = folder / "environment.yml"
    path.write_text(
        f"name: hello-remote\nchannels:\n  - {channel.url}\ndependencies:\n"
        + "".join(lines)
        + "variables:\n  GREETING: hi from the spec\n"
    )
    return path


def sent_bytes(log: str) -> int:
    """What the prep log says was sent for the conda environment."""
    line = next(x for x in log.splitlines() if x.startswith("conda: sent"))
    return int(line.split(" bytes")[0].rsplit(" ", 1)[1])


def test_a_conda_run_from_another_process_installs_there_and_is_reused(
    ws: Workspace, ssh_host: SshHost, host_channel: LocalChannel, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    # The host cannot read the channel: what it installs came over the session.
    probe = subprocess.run(
        ssh_host.ssh_argv(f"test -r {host_channel.path / 'noarch' / 'repodata.json'}"),
        capture_output=True,
        check=False,
    )
    assert probe.returncode == 1, probe.stderr
    src = source(tmp_path, SCRIPT)
    spec = spec_file(tmp_path, host_channel, "pyhello=1.0")
    # Submitted by a script that exits at once; checked from here.
    submitted = run_code(
        """
        import sys
        from runner import Environment, Experiment, ScriptRunConfig, Workspace
        ws = Workspace(sys.argv[1])
        env = Environment.from_conda_specification("hello-remote", sys.argv[2])
        config = ScriptRunConfig(sys.argv[3], "train.py", compute_target="box", environment=env)
        print(Experiment(ws, "remote-conda").submit(config).id)
        """,
        ws.path,
        spec,
        src,
    )
    assert submitted.returncode == 0, submitted.stderr
    first = Run.get(ws, submitted.stdout.strip())
    assert finish(first, 180) == "Completed", prep_log(first)
    log = prep_log(first)
    assert "with runner's py-rattler" in log
    assert "package(s) installed in" in log
    # The three archives (and the py-rattler bundle, unless an earlier session sent it).
    solved = ("python-", "hello-data-0.2-", "pyhello-1.0-")
    archives = [p for p in host_channel.packages if p.split("/")[1].startswith(solved)]
    assert len(archives) == 3
    assert sent_bytes(log) >= sum((host_channel.path / p).stat().st_size for p in archives)
    out = driver_log(first)
    assert "pyhello 1.0 | hello from a local conda channel (data 0.2)" in out
    assert "greeting hi from the spec" in out
    prefix = next(x for x in out.splitlines() if x.startswith("prefix ")).split(" ", 1)[1]
    assert Path(prefix).parent == REMOTE_ENVS
    assert Path(prefix).name.startswith("conda-")
    assert out.count("pyhello 1.0 |") == 2  # the import and the entry point
    assert first.get_metrics() == {"pyhello_version": 1.0}
    # The lock made here is the run's, with the channel's own URLs.
    first.download_file("azureml-environment/conda-lock.yml", str(tmp_path / "lock.yml"))
    lock_text = (tmp_path / "lock.yml").read_text()
    assert f"{host_channel.url}/noarch/pyhello-1.0-py_0.tar.bz2" in lock_text
    assert (Path(prefix) / "conda-lock.yml").read_text() == lock_text

    # Again: the host's prefix is reused, nothing is sent.
    env = Environment.from_conda_specification("hello-remote", str(spec))
    second = Experiment(ws, "remote-conda").submit(
        ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env)
    )
    assert finish(second, 120) == "Completed", prep_log(second)
    log = prep_log(second)
    assert f"conda environment {prefix}: cached" in log
    assert sent_bytes(log) == 0
    assert f"prefix {prefix}" in driver_log(second)


def test_another_lock_sends_only_the_archives_the_host_lacks(
    ws: Workspace, ssh_host: SshHost, host_channel: LocalChannel, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    src = source(tmp_path, SCRIPT)
    exp = Experiment(ws, "remote-conda")
    runs = []
    for pin in ("pyhello=1.0", "pyhello=1.1"):
        env = Environment.from_conda_specification(
            "hello-remote", str(spec_file(tmp_path, host_channel, pin))
        )
        run = exp.submit(
            ScriptRunConfig(str(src), "train.py", compute_target="box", environment=env)
        )
        assert finish(run, 180) == "Completed", prep_log(run)
        runs.append(run)
    # pyhello 1.1 is the only archive the second lock adds (python and hello-data are there).
    archive = host_channel.path / "noarch" / "pyhello-1.1-py_0.tar.bz2"
    assert sent_bytes(prep_log(runs[1])) == archive.stat().st_size
    assert "pyhello 1.1 |" in driver_log(runs[1])
    assert runs[1].get_metrics() == {"pyhello_version": 1.1}


def test_an_unknown_package_fails_in_prepare_naming_it(
    ws: Workspace, ssh_host: SshHost, host_channel: LocalChannel, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    env = Environment.from_conda_specification(
        "broken", str(spec_file(tmp_path, host_channel, "pyhello", "nosuchpkg=1.0"))
    )
    run = Experiment(ws, "remote-conda").submit(
        ScriptRunConfig(
            str(source(tmp_path, SCRIPT)), "train.py", compute_target="box", environment=env
        )
    )
    assert finish(run, 120) == "Failed"
    error = json.dumps(run.get_details()["error"])
    assert "nosuchpkg not found in the channel(s)" in error
    assert host_channel.url in error
    assert "add_channel" in error  # the fix
    assert "conda: sent" not in prep_log(run)  # failed here, before the host was given anything


def test_a_pip_section_is_refused_at_submit(
    ws: Workspace, ssh_host: SshHost, host_channel: LocalChannel, tmp_path: Path
) -> None:
    attach(ws, "box", ssh_host)
    env = Environment("conda-and-pip")
    cd = CondaDependencies.create(conda_packages=["pyhello"], pip_packages=["requests"])
    cd.remove_channel("conda-forge")
    cd.add_channel(host_channel.url)
    env.python.conda_dependencies = cd
    config = ScriptRunConfig(
        str(source(tmp_path, "")), "train.py", compute_target="box", environment=env
    )
    with pytest.raises(ConfigError, match=r"pip packages \['requests'\].*make them conda"):
        Experiment(ws, "remote-conda").submit(config)
    assert list(Run.list(Experiment(ws, "remote-conda"))) == []


def test_the_host_description_matches_py_rattler_here(conda_tools: None) -> None:
    """The agent's stdlib description of a host (this one) is what py-rattler detects."""
    host = conda_host()
    assert host["platform"] == conda_platform()
    assert installer_fits(host)
    detected = run_code(
        """
        import json, os, sys
        from rattler.virtual_package import VirtualPackage
        found = [str(v.into_generic()) for v in VirtualPackage.detect()]
        sys.stdout.write(json.dumps(found) + "\\n"); sys.stdout.flush()
        os._exit(0)
        """
    )
    found = json.loads(detected.stdout)
    names = {v[0] for v in host["virtual"]}
    for name in ("__unix", "__linux", "__glibc"):
        assert name in names
        assert any(name in text for text in found), found
    glibc = next(v[1] for v in host["virtual"] if v[0] == "__glibc")
    assert any(f"__glibc={glibc}" in text for text in found), found
    # A host of another CPU, or with an older glibc or Python, gets the host's own py-rattler.
    assert not installer_fits({**host, "machine": "aarch64"})
    assert not installer_fits({**host, "glibc": "2.5"})
    assert not installer_fits({**host, "python": [3, 8, 10]})


def test_an_agent_whose_python_has_py_rattler_installs_with_it(
    tmp_path: Path, conda_tools: None
) -> None:
    """The fallback when runner's bundle does not fit a host: the agent is told no bundle,
    and installs with the py-rattler its own interpreter imports. (An agent session on this
    machine, over pipes as ssh would carry it: the test host's python3 has no py-rattler.)"""
    channel = build_channel(tmp_path / "channel", conda_platform(), tag=os.urandom(8).hex())
    base = tmp_path / "host"
    agent = subprocess.Popen(
        [sys.executable, "-m", "runner.remote_agent", "session"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "RUNNER_REMOTE_BASE": str(base)},
    )
    stdin = cast("BinaryIO", agent.stdin)
    stdout = cast("BinaryIO", agent.stdout)

    def request(header: dict[str, Any], payload: bytes = b"") -> dict[str, Any]:
        write_frame(stdin, header, payload)
        frame = read_frame(stdout)
        assert frame is not None
        assert "error" not in frame[0], frame[0]
        return frame[0]

    try:
        host = request({"op": "conda_host"})
        assert host["rattler"] is True
        env = Environment.from_conda_specification(
            "hello-local", str(spec_file(tmp_path, channel, "pyhello=1.1"))
        )
        log = tmp_path / "prep.log"
        lock = CondaBuilder(EnvironmentCache(tmp_path / "cache")).lock_for_host(
            env, log, platform=str(host["platform"]), virtual_packages=host["virtual"]
        )
        archives = locked_archives(lock, str(host["platform"]))
        prepare = {
            "op": "prepare",
            "kind": "conda",
            "key": "0123456789abcdef",
            "platform": host["platform"],
            "lock": lock.read_text(),
            "packages": describe_archives(archives),
            "installer": None,
            "worker": WORKER_SCRIPT.read_text(),
        }
        answer = request(prepare)
        assert sorted(answer["missing"]) == sorted(a.sha256 for a in archives)
        for archive in archives:
            write_frame(
                agent.stdin,
                {"op": "blob", "digest": archive.sha256},
                archive_file(archive).read_bytes(),
            )
        answer = request(prepare)
        assert f"$ {sys.executable} {base}/conda/rattler_worker-" in str(answer["log"])
        prefix = base / "envs" / "conda-0123456789abcdef"
        assert answer["python"] == str(prefix / "bin" / "python")
        greeting = subprocess.run(
            [str(prefix / "bin" / "pyhello")], capture_output=True, text=True, check=True
        )
        assert (
            greeting.stdout.strip() == "pyhello 1.1 | hello from a local conda channel (data 0.2)"
        )
        assert "cached" in str(request(prepare)["log"])
        write_frame(stdin, {"op": "bye"})
        assert agent.wait(timeout=10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        stdin.close()
        stdout.close()
