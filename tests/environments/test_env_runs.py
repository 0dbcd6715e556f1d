"""Environments through the real submit path: Experiment.submit -> daemon -> builder -> run.

Every run here is a real script submitted with ``Experiment.submit(ScriptRunConfig)`` and an
Environment; the workspace daemon is started on demand by the first submit and inherits
``RUNNER_ENV_CACHE`` (a folder of this test) and ``RUNNER_DAEMON_IDLE_S=30``, both set before
that submit; it is stopped at teardown (``daemon_client.stop_daemon``).

pip environments need PyPI (or the index in UV_INDEX_URL/PIP_INDEX_URL): with CI=true these
tests fail when it is unreachable, elsewhere they are skipped with the reason. uv's own
download cache is shared on purpose. conda environments come from the hand-made local channel
of ``tests/environments/conda_channel.py`` (offline).

A slow build, for the cases that must catch a run while it is Preparing, is a local package
whose in-tree build backend (``backend-path``, no build requirements, so no network) touches a
``started`` marker and then waits for a ``release`` marker (at most 60 s): the test decides
when the build ends, with no sleep-and-hope.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from environments.conda import conda_platform
from environments.venv import SYSTEM_CA_BUNDLE, VenvBuilder
from runner import daemon_client
from runner.cli import main
from runner.conda_dependencies import CondaDependencies
from runner.config import ScriptRunConfig
from runner.envbuild import LogFollower, _lock_python, load_definition, rebuild_from_run
from runner.environment import Environment
from runner.errors import ConfigError, NotFoundError
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import Workspace
from tests.environments.conda_channel import LocalChannel, build_channel
from tests.helpers import StatusRecorder, in_ci, source_folder, wait_until

HERE_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
PREP_LOG = "azureml-logs/55_environment_prep_log.txt"
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
TERMINAL = ("Completed", "Failed", "Canceled")
RUN_TIMEOUT_S = 120.0
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted(d.metadata['Name'].lower() + '==' + d.version "
    "for d in m.distributions())))"
)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pypi() -> None:
    """PyPI (or the configured index) is reachable, and uv is installed."""
    problem = None
    try:
        from uv import find_uv_bin

        find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        problem = f"uv is not installed ({exc}); pip install uv"
    if problem is None:
        index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
        url = (index or "https://pypi.org/simple").rstrip("/") + "/six/"
        cafile = os.environ.get("SSL_CERT_FILE") or (
            str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else None
        )
        try:
            context = ssl.create_default_context(cafile=cafile)
            with urllib.request.urlopen(url, timeout=15, context=context) as response:  # noqa: S310
                response.read(1)
        except (OSError, urllib.error.URLError) as exc:
            problem = f"the package index is unreachable ({url}: {exc})"
    if problem is not None:
        if in_ci():
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def conda_tools() -> None:
    """py-rattler and conda-lock are installed (found without importing py-rattler here)."""
    missing = [m for m in ("rattler", "conda_lock") if importlib.util.find_spec(m) is None]
    if missing:
        problem = f"{', '.join(missing)} not installed; pip install py-rattler conda-lock"
        if in_ci():
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory, conda_tools: None) -> LocalChannel:
    return build_channel(tmp_path_factory.mktemp("conda-channel"), conda_platform())


@pytest.fixture(autouse=True)
def env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's RUNNER_ENV_CACHE and a short daemon idle time (set before any submit);
    at teardown, every daemon of a workspace under tmp_path is stopped."""
    root = tmp_path / "env cache"  # a space, as in real home folders
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(root))
    monkeypatch.setenv("RUNNER_DAEMON_IDLE_S", "30")
    yield root
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        if "workspace.json" in filenames:
            daemon_client.stop_daemon(Path(dirpath), timeout_s=15)
            dirnames[:] = []


def pip_env(*packages: str, name: str = "pip-env") -> Environment:
    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=list(packages), python_version=HERE_VERSION
    )
    return env


source = source_folder  # a source folder holding one script


def submit(exp: Experiment, src: Path, env: Environment | None, script: str = "main.py") -> Run:
    config = ScriptRunConfig(str(src), script)
    if env is not None:
        config.run_config.environment = env
    return exp.submit(config)


def wait_end(run: Run, timeout_s: float = RUN_TIMEOUT_S) -> str:
    def ended() -> str | None:
        status = run.get_status()
        return status if status in TERMINAL else None

    return wait_until(ended, timeout_s, interval_s=0.05, message=f"run {run.id} to end")


def log_text(run: Run, name: str) -> str:
    path = run.get_details()["logFiles"].get(name)
    return Path(path).read_text(encoding="utf-8", errors="replace") if path else ""


def builds_in(text: str) -> int:
    """How many builds a prep log reports starting ('building environment KEY in PATH...')."""
    return sum(
        1
        for line in text.splitlines()
        if line.startswith("building environment ") and " in " in line and "failed" not in line
    )


def distributions(python: str) -> list[str]:
    done = subprocess.run(
        [python, "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def cache_folders(root: Path) -> list[str]:
    return (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if root.exists()
        else []
    )


class SlowPackage:
    """A local package whose build waits for the test: ``started`` then ``release``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started = folder / "started"
        self.release_marker = folder / "release"
        folder.mkdir(parents=True)
        (folder / "pyproject.toml").write_text(
            textwrap.dedent(
                """
                [build-system]
                requires = []
                build-backend = "slow_backend"
                backend-path = ["."]

                [project]
                name = "slowpkg"
                version = "0.1"
                """
            ),
            encoding="utf-8",
        )
        (folder / "slow_backend.py").write_text(
            textwrap.dedent(
                f"""
                import base64, hashlib, time, zipfile
                from pathlib import Path

                STARTED = Path({str(self.started)!r})
                RELEASE = Path({str(self.release_marker)!r})
                FILES = {{
                    "slowpkg/__init__.py": b"VERSION = '0.1'\\n",
                    "slowpkg-0.1.dist-info/METADATA":
                        b"Metadata-Version: 2.1\\nName: slowpkg\\nVersion: 0.1\\n",
                    "slowpkg-0.1.dist-info/WHEEL":
                        b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n"
                        b"Tag: py3-none-any\\n",
                }}

                def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
                    STARTED.touch()
                    deadline = time.monotonic() + 60
                    while not RELEASE.exists() and time.monotonic() < deadline:
                        time.sleep(0.02)
                    name = "slowpkg-0.1-py3-none-any.whl"
                    record = []
                    for path, data in FILES.items():
                        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
                        record.append(f"{{path}},sha256={{digest.rstrip(b'=').decode()}},{{len(data)}}")
                    record.append("slowpkg-0.1.dist-info/RECORD,,")
                    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as wheel:
                        for path, data in FILES.items():
                            wheel.writestr(path, data)
                        wheel.writestr("slowpkg-0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
                    return name
                """
            ),
            encoding="utf-8",
        )

    @property
    def requirement(self) -> str:
        return f"slowpkg @ {self.folder.as_uri()}"

    def release(self) -> None:
        self.release_marker.touch()


@pytest.fixture
def slow_package(tmp_path: Path) -> Iterator[SlowPackage]:
    package = SlowPackage(tmp_path / "slowpkg")
    yield package
    package.release()  # never leave a build waiting (before the daemon is stopped)


# --- pip environments -----------------------------------------------------------------------


@pytest.mark.usefixtures("pypi")
def test_pip_environment_run_prepares_imports_and_stores_the_lock(
    exp: Experiment, tmp_path: Path, env_cache: Path
):
    src = source(
        tmp_path,
        """
        import sys, six
        print("six", six.__version__, "from", sys.executable)
        """,
    )
    with StatusRecorder(exp.workspace) as recorder:
        run = submit(exp, src, pip_env("six==1.16.0"))
        assert wait_end(run) == "Completed", run.get_details().get("error")
        history = recorder.history(run.id)
    assert "Preparing" in history, history
    assert history.index("Preparing") < history.index("Running") < history.index("Completed")

    key = VenvBuilder.cache_key(pip_env("six==1.16.0"))
    driver = log_text(run, DRIVER_LOG)
    assert f"six 1.16.0 from {env_cache / key / 'bin' / 'python'}" in driver
    prep = log_text(run, PREP_LOG)
    assert builds_in(prep) == 1, prep
    assert "uv pip install" in prep
    assert "six==1.16.0" in prep
    assert f"built environment {key}" in prep
    assert "azureml-environment/requirements.lock" in run.get_file_names()
    lock = Path(run.download_file("azureml-environment/requirements.lock", str(tmp_path)))
    assert lock.read_text() == (env_cache / key / "requirements.lock").read_text()
    assert "six==1.16.0" in lock.read_text().splitlines()


@pytest.mark.usefixtures("pypi")
def test_five_runs_at_once_build_the_new_environment_once(exp: Experiment, tmp_path: Path):
    src = source(tmp_path, "import packaging, six; print('ok', six.__version__)\n")
    env = pip_env("six==1.16.0", "packaging")
    runs = [submit(exp, src, env) for _ in range(5)]

    assert [wait_end(run) for run in runs] == ["Completed"] * 5
    logs = [log_text(run, PREP_LOG) for run in runs]
    assert sum(builds_in(text) for text in logs) == 1, "\n=====\n".join(logs)
    for text in logs:
        if builds_in(text) == 0:
            assert "cache hit" in text or "waiting" in text, text
    pythons = {line for run in runs for line in log_text(run, DRIVER_LOG).splitlines()}
    assert pythons == {"ok 1.16.0"}


@pytest.mark.usefixtures("pypi")
def test_unknown_package_fails_the_run_with_the_build_log_and_leaves_nothing(
    exp: Experiment, tmp_path: Path, env_cache: Path
):
    marker = tmp_path / "script-ran"
    src = source(tmp_path, f"open({str(marker)!r}, 'w').close()\n")
    missing = "runner-test-no-such-package-4f1c9e"
    run = submit(exp, src, pip_env(f"{missing}==1.0"))  # submit cannot know: it succeeds

    assert wait_end(run) == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["kind"] == "environment_failed"
    assert missing in error["message"]
    assert "building environment venv-" in error["logTail"]
    assert missing in error["logTail"]  # uv's own words are in the tail
    assert not marker.exists()
    assert cache_folders(env_cache) == []  # nothing half-made in the cache
    assert "failed" in log_text(run, PREP_LOG)
    assert "azureml-environment/requirements.lock" not in run.get_file_names()
    with pytest.raises(ConfigError, match=r"nothing to rebuild: it ended Failed .*never built"):
        rebuild_from_run(exp.workspace, run.id)


@pytest.mark.usefixtures("pypi")
def test_two_workspaces_share_the_cache(exp: Experiment, tmp_path: Path, env_cache: Path):
    src = source(tmp_path, "import six; print(six.__version__)\n")
    env = pip_env("six==1.16.0")
    first = submit(exp, src, env)
    assert wait_end(first) == "Completed"
    assert builds_in(log_text(first, PREP_LOG)) == 1

    other = Workspace.create(tmp_path / "ws2")
    env2 = pip_env("six==1.16.0", name="same-definition-other-name")
    second = submit(Experiment(other, "test"), src, env2)
    assert wait_end(second) == "Completed"
    prep = log_text(second, PREP_LOG)
    assert builds_in(prep) == 0, prep
    assert f"cache hit: {env_cache / VenvBuilder.cache_key(env)}" in prep
    assert cache_folders(env_cache) == [VenvBuilder.cache_key(env)]


@pytest.mark.usefixtures("pypi")
def test_rebuild_from_a_runs_lock_with_a_fresh_cache_gives_the_same_packages(
    exp: Experiment,
    tmp_path: Path,
    env_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    env = pip_env("python-dateutil==2.9.0.post0")  # six comes as a dependency, unpinned
    run = submit(exp, source(tmp_path, "import dateutil, six\n"), env)
    assert wait_end(run) == "Completed"
    original = str(env_cache / VenvBuilder.cache_key(env) / "bin" / "python")

    fresh = tmp_path / "fresh cache"
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(fresh))
    log = tmp_path / "rebuild.log"
    prepared = rebuild_from_run(exp.workspace, run.id, log)

    assert Path(prepared.python).is_relative_to(fresh)
    assert Path(prepared.python).parent.parent.name.startswith("venv-lock-")
    assert distributions(prepared.python) == distributions(original)
    assert any(d.startswith("six==") for d in distributions(prepared.python))
    text = log.read_text()
    assert f"rebuilding the environment of run {run.id}" in text
    assert "uv pip sync" in text
    assert "uv pip install" not in text
    assert prepared.lock_file is not None
    locked = Path(prepared.lock_file).read_text()
    assert locked == (env_cache / VenvBuilder.cache_key(env) / "requirements.lock").read_text()

    # the CLI: the same rebuild is now a cache hit; progress on stderr, JSON on stdout
    capsys.readouterr()
    assert main(["env", "build", "--from-run", run.id, "-w", str(exp.workspace.path)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["runId"] == run.id
    assert result["kind"] == "venv"
    assert result["python"] == prepared.python
    assert result["lockFile"] == str(prepared.lock_file)
    assert result["cacheKey"] == Path(prepared.python).parent.parent.name
    assert isinstance(result["seconds"], float)
    assert "cache hit" in err
    assert Path(result["log"]).is_file()


@pytest.mark.usefixtures("pypi")
def test_show_output_streams_the_build_log_while_preparing(
    exp: Experiment,
    tmp_path: Path,
    slow_package: SlowPackage,
    capsys: pytest.CaptureFixture[str],
):
    run = submit(
        exp,
        source(tmp_path, "import slowpkg; print('slowpkg', slowpkg.VERSION)\n"),
        pip_env(slow_package.requirement),
    )
    result: dict[str, Any] = {}

    def follow() -> None:
        result["details"] = run.wait_for_completion(show_output=True, raise_on_error=False)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    seen = io.StringIO()

    def streamed_while_preparing() -> bool:
        seen.write(capsys.readouterr().out)
        text = seen.getvalue()
        return "building environment" in text and "uv pip install" in text

    try:
        wait_until(slow_package.started.exists, 60, message="the slow build to start")
        wait_until(streamed_while_preparing, 30, message="the build log on stdout")
        assert run.get_status() == "Preparing"  # the build still waits for the test
    finally:
        slow_package.release()
    follower.join(RUN_TIMEOUT_S)
    assert not follower.is_alive()
    seen.write(capsys.readouterr().out)
    assert result["details"]["status"] == "Completed"
    text = seen.getvalue()
    assert text.index("building environment") < text.index("built environment")
    assert text.index("built environment") < text.index("slowpkg 0.1")


@pytest.mark.usefixtures("pypi")
def test_cancel_while_preparing_never_starts_the_script(
    exp: Experiment, tmp_path: Path, env_cache: Path, slow_package: SlowPackage
):
    marker = tmp_path / "script-ran"
    src = source(tmp_path, f"open({str(marker)!r}, 'w').close()\n")
    run = submit(exp, src, pip_env(slow_package.requirement))
    try:
        wait_until(slow_package.started.exists, 60, message="the slow build to start")
        assert run.get_status() == "Preparing"
        run.cancel()
        wait_until(
            lambda: run.get_status() in ("CancelRequested", "Canceled"),
            10,
            message="the cancel request to be recorded",
        )
    finally:
        slow_package.release()  # whether or not the daemon stops a build in progress
    assert wait_end(run) == "Canceled"
    assert not marker.exists()
    assert "azureml-logs/70_driver_log.txt" not in run.get_file_names()
    for folder in cache_folders(env_cache):  # built to the end, or not at all: never half
        assert (env_cache / folder / ".complete").is_file(), folder


# --- conda environments ---------------------------------------------------------------------


def conda_env(channel: LocalChannel, packages: list[str]) -> Environment:
    cd = CondaDependencies.create(conda_packages=packages, python_version=HERE_VERSION)
    cd.remove_channel("conda-forge")
    cd.add_channel(channel.url)
    env = Environment("conda-run")
    env.python.conda_dependencies = cd
    return env


def conda_meta(prefix: Path) -> set[str]:
    return {p.stem for p in (prefix / "conda-meta").glob("*.json")}


def test_conda_environment_run_from_the_local_channel_and_its_exact_rebuild(
    exp: Experiment,
    tmp_path: Path,
    channel: LocalChannel,
    monkeypatch: pytest.MonkeyPatch,
):
    src = source(
        tmp_path,
        """
        import os, pyhello
        print("pyhello", pyhello.__version__, "in", os.environ["CONDA_PREFIX"])
        """,
    )
    run = submit(exp, src, conda_env(channel, ["pyhello"]))
    assert wait_end(run) == "Completed", run.get_details().get("error")
    driver = log_text(run, DRIVER_LOG)
    assert "pyhello 1.1 in " in driver
    prefix = Path(driver.split(" in ", 1)[1].strip())
    prep = log_text(run, PREP_LOG)
    assert builds_in(prep) == 1
    assert "rattler: solving ['pyhello']" in prep
    assert "azureml-environment/conda-lock.yml" in run.get_file_names()

    monkeypatch.setenv("RUNNER_ENV_CACHE", str(tmp_path / "fresh cache"))
    log = tmp_path / "rebuild.log"
    prepared = rebuild_from_run(exp.workspace, run.id, log)
    rebuilt = Path(prepared.env["CONDA_PREFIX"])
    assert rebuilt.name.startswith(f"conda-lock-{conda_platform()}-")
    assert (
        conda_meta(rebuilt)
        == conda_meta(prefix)
        == {
            f"python-{channel.python_version}-0_shim",
            "pyhello-1.1-py_0",
            "hello-data-0.2-0",
        }
    )
    assert "rattler: solving" not in log.read_text()  # installed from the lock as it is


# --- what cannot be rebuilt, and the CLI's errors ------------------------------------------


def test_a_user_managed_run_has_nothing_to_rebuild(
    exp: Experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run = submit(exp, source(tmp_path, "print('hi')\n"), None)  # the default: user-managed
    assert wait_end(run) == "Completed"
    assert not [n for n in run.get_file_names() if n.startswith("azureml-environment/")]
    with pytest.raises(ConfigError, match=r"nothing to rebuild: .*user-managed"):
        rebuild_from_run(exp.workspace, run.id)

    capsys.readouterr()
    code = main(["env", "build", "--from-run", run.id, "-w", str(exp.workspace.path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("runner: error: ")
    assert "nothing to rebuild" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["env", "build"], "nothing to build"),
        (["env", "build", "x", "--from-run", "r"], "give only one of NAME, --from-run"),
        (["env", "build", "--file", "f", "--version", "2"], "--version goes with NAME"),
        (["env", "build", "--from-run", "no_such_run"], "no run 'no_such_run'"),
        (["env", "build", "no-such-env"], "no-such-env"),
        (["env", "build", "--file", "no/such/file.txt"], "no environment definition at"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(
    ws: Workspace, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    code = main([*argv, "-w", str(ws.path)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("runner: error: "), err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1


def test_rebuild_of_an_unknown_run_is_not_found(ws: Workspace):
    with pytest.raises(NotFoundError, match="no run 'nope'"):
        rebuild_from_run(ws, "nope")


@pytest.mark.usefixtures("pypi")
def test_cli_builds_a_registered_environment_and_the_same_definition_from_a_folder(
    ws: Workspace, tmp_path: Path, env_cache: Path, capsys: pytest.CaptureFixture[str]
):
    env = pip_env("six==1.16.0", name="six-env")
    env.register(ws)
    assert main(["env", "build", "six-env", "-w", str(ws.path)]) == 0
    out, err = capsys.readouterr()
    built = json.loads(out)
    assert (built["name"], built["version"], built["kind"]) == ("six-env", None, "venv")
    assert built["cacheKey"] == VenvBuilder.cache_key(env)
    assert built["python"] == str(env_cache / built["cacheKey"] / "bin" / "python")
    assert "building environment" in err
    assert "uv pip install" in err

    saved = tmp_path / "saved"
    env.save_to_directory(saved)
    assert load_definition(saved).spec_hash() == env.spec_hash()
    assert main(["env", "build", "--file", str(saved), "-w", str(ws.path), "-q"]) == 0
    out, err = capsys.readouterr()
    again = json.loads(out)
    assert again["cacheKey"] == built["cacheKey"]  # the same definition: a cache hit
    assert err == ""  # -q


def test_log_follower_copies_lines_as_they_are_written(tmp_path: Path):
    log = tmp_path / "build.log"
    log.write_text("before the build\n")
    out = io.StringIO()
    with LogFollower(log, out, poll_s=0.005), open(log, "a") as handle:
        handle.write("one\ntw")
        handle.flush()
        wait_until(lambda: out.getvalue() == "one\n", 5, message="the first line")
        handle.write("o\nthree")  # the last line has no newline yet
        handle.flush()
        wait_until(lambda: "two\n" in out.getvalue(), 5, message="the second line")
    assert out.getvalue() == "one\ntwo\nthree\n"


def test_load_definition_reads_pip_and_conda_files(tmp_path: Path):
    requirements = tmp_path / "my requirements.txt"
    requirements.write_text("six==1.16.0\n")
    env = load_definition(requirements)
    assert env.name == "my-requirements"
    assert env.python.conda_dependencies is not None
    assert list(env.python.conda_dependencies.pip_packages) == ["six==1.16.0"]
    conda_file = tmp_path / "environment.yml"
    conda_file.write_text("name: x\ndependencies:\n  - python=3.11\n  - numpy\n")
    env = load_definition(conda_file)
    assert env.python.conda_dependencies is not None
    assert "numpy" in list(env.python.conda_dependencies.conda_packages)


HERE_FULL = ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize(
    ("header", "interpreter_path", "expected", "logged"),
    [
        (f"# python: {HERE_FULL}", None, HERE_FULL, ""),
        (f"# python: {HERE_VERSION}.999", None, HERE_VERSION, "is not installed here; using"),
        ("", None, HERE_VERSION, "the lock names no Python"),
        (f"# python: {HERE_FULL}", sys.executable, sys.executable, ""),
        (f"# python: {HERE_FULL}", "/no/such/python", HERE_FULL, "not using the run's"),
    ],
)
def test_the_python_of_a_venv_rebuild(
    tmp_path: Path, header: str, interpreter_path: str | None, expected: str, logged: str
):
    env = pip_env("six==1.16.0")
    env.python.interpreter_path = interpreter_path
    log = tmp_path / "log"
    lock = f"# runner venv lock\n{header}\nsix==1.16.0\n"
    assert _lock_python(lock, env, log) == expected
    text = log.read_text() if log.exists() else ""
    assert (logged in text) if logged else text == ""


def test_a_venv_rebuild_needs_the_python_minor_version_of_its_lock(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"Python 3\.99 is not installed"):
        _lock_python("# python: 3.99.1\nsix==1.16.0\n", pip_env("six"), tmp_path / "log")
