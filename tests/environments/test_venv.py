"""environments.cache and environments.venv: real uv, real PyPI, real processes.

Network tests need PyPI (or the index in UV_INDEX_URL/PIP_INDEX_URL): with CI=true they
fail when it is unreachable; elsewhere they are skipped with the reason. uv's own download
cache (~/.cache/uv) is shared on purpose: only the runner cache (RUNNER_ENV_CACHE) is per test.

Processes that race for one cache key are started with subprocess, not multiprocessing:
multiprocessing's spawn start method leaves its resource-tracker process running, which the
leaked-process check of tests/conftest.py (rightly) reports.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from environments.cache import COMPLETE_MARKER, EnvironmentCache, cache_root
from environments.venv import (
    SYSTEM_CA_BUNDLE,
    VenvBuilder,
    _pip_from_conda,
    _run_logged,
    find_interpreter,
    pip_install_args,
    uv_environment,
)
from runner.conda_dependencies import CondaDependencies
from runner.environment import Environment
from runner.errors import ConfigError, EnvironmentBuildError
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
HERE_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m; "
    "print(sorted(d.metadata['Name'].lower() + '==' + d.version for d in m.distributions()))"
)


# --- fixtures and helpers -----------------------------------------------------------------


def _index_probe_url() -> str:
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
    return (index or "https://pypi.org/simple").rstrip("/") + "/six/"


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
        cafile = os.environ.get("SSL_CERT_FILE") or (
            str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else None
        )
        context = ssl.create_default_context(cafile=cafile)
        url = _index_probe_url()
        try:
            with urllib.request.urlopen(url, timeout=15, context=context) as response:  # noqa: S310
                response.read(1)
        except (OSError, urllib.error.URLError) as exc:
            problem = f"the package index is unreachable ({url}: {exc})"
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "env cache"  # a space, as in real home folders
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(root))
    return root


@pytest.fixture
def builder(cache_dir: Path) -> VenvBuilder:
    return VenvBuilder()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "prepare.log"


def pip_env(*packages: str, name: str = "pip-env", python_version: str = HERE_VERSION):
    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=list(packages), python_version=python_version
    )
    return env


def run_python(python: str, code: str) -> str:
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cache_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.exists() else []


def start_racers(code: str, n: int, tmp_path: Path, *args: str) -> list[subprocess.Popen[str]]:
    """n Python processes that import what they need, then all run ``code`` at once."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        index, go = int(sys.argv[1]), Path(sys.argv[2])
        args = sys.argv[3:]
        {imports}
        Path(str(go) + f".ready{{index}}").touch()
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            time.sleep(0.002)
        {body}
        """
    )
    imports, _, body = code.partition("\n---\n")
    text = script.format(imports=imports.strip(), body=body.strip())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", text, str(i), str(go), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        wait_until(
            lambda: all(Path(f"{go}.ready{i}").exists() for i in range(n)),
            timeout_s=60,
            message="all racers imported",
        )
    finally:
        go.touch()
    return procs


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out.strip())
    return outs


# --- the cache, with a plain Python build (no network) ------------------------------------


def test_cache_root_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("RUNNER_ENV_CACHE", raising=False)
    assert cache_root() == Path.home() / ".cache" / "runner" / "envs"
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert EnvironmentCache().root == tmp_path / "c"


def test_cache_builds_once_then_hits(cache_dir: Path, log: Path):
    cache = EnvironmentCache()
    built: list[Path] = []

    def build(path: Path) -> None:
        built.append(path)
        path.mkdir()
        (path / "thing").write_text("x")

    first = cache.get_or_build("k1", build, log)
    t0 = time.perf_counter()
    second = cache.get_or_build("k1", build, log)
    assert time.perf_counter() - t0 < 0.05
    assert first == second == cache_dir / "k1"
    assert built == [first]
    assert (first / COMPLETE_MARKER).is_file()
    text = log.read_text()
    assert text.count("building environment k1") == 1
    assert f"cache hit: {first}" in text


def test_cache_failed_build_leaves_nothing_and_shows_the_log_tail(cache_dir: Path, log: Path):
    def build(path: Path) -> None:
        path.mkdir()
        (path / "half").write_text("x")
        with open(log, "a") as f:
            f.write("compiling...\nfatal: the compiler caught fire\n")
        raise RuntimeError("step 2 broke")

    with pytest.raises(EnvironmentBuildError, match="step 2 broke") as info:
        EnvironmentCache().get_or_build("k2", build, log)
    assert "the compiler caught fire" in str(info.value)
    assert info.value.log_path == str(log)
    assert cache_entries(cache_dir) == []


def test_cache_passes_user_errors_through(cache_dir: Path, log: Path):
    def build(path: Path) -> None:
        path.mkdir()
        raise ConfigError("Python 3.99 is not installed")

    with pytest.raises(ConfigError, match=r"3\.99"):
        EnvironmentCache().get_or_build("k3", build, log)
    assert cache_entries(cache_dir) == []


def test_cache_rebuilds_a_half_built_or_broken_folder(cache_dir: Path, log: Path):
    cache = EnvironmentCache()
    half = cache_dir / "k4"
    half.mkdir(parents=True)
    (half / "leftover").write_text("from a build that crashed")

    def build(path: Path) -> None:
        path.mkdir()
        (path / "ok").write_text("1")

    path = cache.get_or_build("k4", build, log)
    assert not (path / "leftover").exists()
    assert (path / "ok").is_file()
    assert "deleting the half-built environment" in log.read_text()
    # A complete entry that fails its validity check is rebuilt too.
    (path / "ok").unlink()
    cache.get_or_build("k4", build, log, is_valid=lambda p: (p / "ok").is_file())
    assert (path / "ok").is_file()
    assert "is broken; deleting and rebuilding" in log.read_text()


def test_cache_rebuilds_after_a_builder_was_killed(cache_dir: Path, tmp_path: Path, log: Path):
    started = tmp_path / "started"
    code = """
from environments.cache import EnvironmentCache
---
def build(path):
    path.mkdir()
    (path / "half").write_text("x")
    Path(args[0]).touch()
    time.sleep(120)  # killed here, holding the lock
EnvironmentCache().get_or_build("killed", build, Path(args[1]))
"""
    (proc,) = start_racers(code, 1, tmp_path, str(started), str(tmp_path / "killed.log"))
    try:
        wait_until(started.exists, timeout_s=30, message="the build started")
    finally:
        proc.kill()
        proc.communicate()
    assert (cache_dir / "killed" / "half").is_file()

    def build(path: Path) -> None:
        path.mkdir()
        (path / "whole").write_text("1")

    path = EnvironmentCache(lock_timeout_s=10).get_or_build("killed", build, log)
    assert sorted(p.name for p in path.iterdir()) == [COMPLETE_MARKER, "whole"]
    assert "deleting the half-built environment" in log.read_text()


def test_an_interrupted_build_kills_its_process_group_and_cleans_up(
    cache_dir: Path, tmp_path: Path, log: Path
):
    """Ctrl-C while uv runs: uv and whatever it started die, and the folder is deleted."""
    pid_file = tmp_path / "grandchild.pid"
    command = [
        sys.executable,
        "-c",
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        '\'import os, sys, time; open(sys.argv[1], "w").write(str(os.getpid())); '
        "time.sleep(60)', sys.argv[1]])",
        str(pid_file),
    ]

    def build(path: Path) -> None:
        path.mkdir()
        _run_logged(command, log, dict(os.environ), "slow step", tmp_path)

    def interrupt(signum, frame):
        raise KeyboardInterrupt("test alarm")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt, match="test alarm"):
            EnvironmentCache().get_or_build("interrupted", build, log)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pid_file.exists()
    grandchild = int(pid_file.read_text())
    wait_until(
        lambda: (
            not psutil.pid_exists(grandchild)
            or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        ),
        timeout_s=5,
        message="the grandchild is gone",
    )
    assert cache_entries(cache_dir) == []


def test_cache_refuses_a_key_that_is_a_path(cache_dir: Path, log: Path):
    with pytest.raises(ValueError, match="cache key"):
        EnvironmentCache().path_for("../escape")


def test_ten_processes_build_one_key_once(cache_dir: Path, tmp_path: Path):
    counter = tmp_path / "builds.txt"
    code = """
from environments.cache import EnvironmentCache
---
def build(path):
    with open(args[0], "a") as f:
        f.write("built\\n")
    path.mkdir()
    time.sleep(0.3)  # long enough for every racer to find the lock taken
    (path / "done").write_text("1")
log = Path(args[1] + f".{index}")
print(EnvironmentCache().get_or_build("shared", build, log))
"""
    procs = start_racers(code, 10, tmp_path, str(counter), str(tmp_path / "race.log"))
    outs = finish(procs)
    assert set(outs) == {str(cache_dir / "shared")}
    assert counter.read_text().count("built") == 1
    logs = [(tmp_path / f"race.log.{i}").read_text() for i in range(10)]
    assert sum(text.count("building environment shared") for text in logs) == 1
    assert sum("cache hit" in text for text in logs) == 9


# --- what a pip environment is (no network) -----------------------------------------------


def test_cache_key_follows_the_spec_hash():
    key = VenvBuilder.cache_key
    assert key(pip_env("six==1.16.0")) != key(pip_env("six==1.15.0"))
    assert key(pip_env("six", "packaging")) == key(pip_env("packaging", "six", name="other"))
    assert key(pip_env("six")).startswith("venv-")


def test_pip_install_args_from_requirements_and_options():
    env = pip_env("six==1.16.0")
    conda = env.python.conda_dependencies
    conda.add_conda_package("pip=24.0")
    conda.set_pip_option("--index-url https://mirror.example/simple")
    conda.set_pip_option("--pre")
    requirements, options, variables = pip_install_args(env)
    assert requirements == ["pip==24.0.*", "six==1.16.0"]
    assert options == ["--index-url", "https://mirror.example/simple", "--prerelease", "allow"]
    assert variables == {}


@pytest.mark.parametrize(
    ("spec", "requirement"),
    [
        ("pip", "pip"),
        ("pip=24.0", "pip==24.0.*"),
        ("pip==24.0", "pip==24.0"),
        ("pip>=23,<25", "pip>=23,<25"),
        ("conda-forge::pip 24.0", "pip==24.0.*"),
        ("pip=24.0=pyhd8ed1ab_0", "pip==24.0.*"),
        ("pip=24.*", "pip==24.*"),
    ],
)
def test_conda_pip_specs_become_pip_requirements(spec: str, requirement: str):
    assert _pip_from_conda(spec) == requirement


def _conda_env() -> Environment:
    env = pip_env("six")
    env.python.conda_dependencies.add_conda_package("numpy=1.26")
    return env


def _user_managed() -> Environment:
    env = pip_env("six")
    env.python.user_managed_dependencies = True
    return env


def _docker() -> Environment:
    env = pip_env("six")
    env.docker.enabled = True
    return env


def _no_dependencies() -> Environment:
    env = Environment("none")
    env.python.conda_dependencies = None
    return env


def _unknown_option() -> Environment:
    env = pip_env("six")
    env.python.conda_dependencies.set_pip_option("--no-clean")
    return env


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            _conda_env,
            r"conda packages \['numpy=1.26'\].*pip packages only.*build the environment with conda",
        ),
        (_user_managed, "is user-managed"),
        (_docker, r"docker.enabled = True.*set docker.enabled = False"),
        (_no_dependencies, r"no conda_dependencies.*CondaDependencies.create"),
        (_unknown_option, r"pip option '--no-clean' is not supported.*remove_pip_option"),
    ],
)
def test_non_pip_environments_are_refused(make, message: str, builder: VenvBuilder, log: Path):
    with pytest.raises(ConfigError, match=message):
        builder.prepare(make(), log)
    assert not Path(os.environ["RUNNER_ENV_CACHE"]).exists()


def test_missing_python_version_is_a_config_error(builder: VenvBuilder, log: Path, cache_dir):
    with pytest.raises(ConfigError, match=r"Python 3\.99 is not installed on this machine"):
        builder.prepare(pip_env("six", python_version="3.99"), log)
    assert cache_entries(cache_dir) == []


def test_find_interpreter():
    assert find_interpreter(HERE_VERSION) == sys.executable
    assert find_interpreter(None, sys.executable) == sys.executable
    with pytest.raises(ConfigError, match=r"is Python .* but the conda dependencies ask"):
        find_interpreter("3.1", sys.executable)
    with pytest.raises(ConfigError, match="not on PATH"):
        find_interpreter(None, "no-such-python-runner-xyz")


def test_uv_environment_adds_tls_and_pip_index():
    env = uv_environment({"PATH": "/bin", "PIP_INDEX_URL": "https://mirror.example/simple"})
    assert env["UV_INDEX_URL"] == "https://mirror.example/simple"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    if SYSTEM_CA_BUNDLE.is_file():
        assert env["SSL_CERT_FILE"] == str(SYSTEM_CA_BUNDLE)
    kept = uv_environment({"SSL_CERT_FILE": "/mine.pem", "UV_INDEX_URL": "https://uv.example"})
    assert kept["SSL_CERT_FILE"] == "/mine.pem"
    assert kept["UV_INDEX_URL"] == "https://uv.example"


# --- real builds (uv + the package index) -------------------------------------------------


@pytest.mark.usefixtures("pypi")
def test_build_then_cache_hit(builder: VenvBuilder, log: Path, cache_dir: Path):
    env = pip_env("six==1.16.0")
    prepared = builder.prepare(env, log)
    assert Path(prepared.python).parent.parent == cache_dir / VenvBuilder.cache_key(env)
    assert run_python(prepared.python, "import six; print(six.__version__)") == "1.16.0"
    assert prepared.lock_file is not None
    assert "six==1.16.0" in prepared.lock_file.read_text().splitlines()
    assert prepared.env["VIRTUAL_ENV"] == str(Path(prepared.python).parent.parent)
    text = log.read_text()
    assert "Installed 1 package" in text  # uv's own output, streamed into the log

    t0 = time.perf_counter()
    again = builder.prepare(pip_env("six==1.16.0", name="same-spec"), log)
    hit_s = time.perf_counter() - t0
    assert hit_s < 0.05
    assert again == prepared
    text = log.read_text()
    assert text.count("building environment") == 1
    assert text.strip().splitlines()[-1] == f"cache hit: {Path(prepared.python).parent.parent}"


@pytest.mark.usefixtures("pypi")
def test_different_packages_get_different_folders(builder: VenvBuilder, log: Path):
    a = builder.prepare(pip_env("six==1.16.0"), log)
    b = builder.prepare(pip_env("six==1.15.0"), log)
    assert a.python != b.python
    assert run_python(b.python, "import six; print(six.__version__)") == "1.15.0"


@pytest.mark.usefixtures("pypi")
def test_four_processes_prepare_one_new_env_once(cache_dir: Path, tmp_path: Path):
    code = """
from runner.conda_dependencies import CondaDependencies
from runner.environment import Environment
from environments.venv import VenvBuilder
---
env = Environment("raced")
env.python.conda_dependencies = CondaDependencies.create(
    pip_packages=["six==1.16.0"], python_version=args[1]
)
print(VenvBuilder().prepare(env, Path(args[0] + f".{index}")).python)
"""
    procs = start_racers(code, 4, tmp_path, str(tmp_path / "race.log"), HERE_VERSION)
    outs = finish(procs)
    assert len(set(outs)) == 1
    logs = [(tmp_path / f"race.log.{i}").read_text() for i in range(4)]
    assert sum(text.count("building environment") for text in logs) == 1
    assert sum("cache hit" in text for text in logs) == 3
    assert run_python(outs[0], "import six; print(six.__version__)") == "1.16.0"


@pytest.mark.usefixtures("pypi")
@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ("this-package-does-not-exist-runner-xyz", "this-package-does-not-exist-runner-xyz"),
        ("six==0.0.1", r"six==0\.0\.1"),
    ],
)
def test_failing_build_raises_with_the_log_and_leaves_nothing(
    builder: VenvBuilder, log: Path, cache_dir: Path, package: str, reason: str
):
    env = pip_env(package)
    with pytest.raises(
        EnvironmentBuildError, match=f"`uv pip install` exited with 1: .*{reason}"
    ) as info:
        builder.prepare(env, log)
    error = info.value
    assert error.log_path == str(log)
    assert "--- last lines of the log ---" in str(error)
    assert "uv pip install --python" in str(error)  # the tail shows the command
    assert not (cache_dir / VenvBuilder.cache_key(env)).exists()
    assert cache_entries(cache_dir) == []


@pytest.mark.usefixtures("pypi")
def test_crashed_half_build_is_rebuilt(builder: VenvBuilder, log: Path, cache_dir: Path):
    env = pip_env("six==1.16.0")
    half = cache_dir / VenvBuilder.cache_key(env)
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("#!/bin/sh\nexit 99\n")  # no .complete marker
    prepared = builder.prepare(env, log)
    assert run_python(prepared.python, "import six; print(six.__version__)") == "1.16.0"
    assert "deleting the half-built environment" in log.read_text()
    assert (half / COMPLETE_MARKER).is_file()


@pytest.mark.usefixtures("pypi")
def test_rebuild_from_the_lock_installs_the_same_packages(builder: VenvBuilder, log: Path):
    original = builder.prepare(pip_env("six==1.16.0", "packaging"), log)
    assert original.lock_file is not None
    rebuilt = builder.build_from_lock(original.lock_file, sys.executable, log)
    assert rebuilt.python != original.python
    assert run_python(rebuilt.python, LIST_DISTRIBUTIONS) == run_python(
        original.python, LIST_DISTRIBUTIONS
    )
    assert "packaging==" in run_python(rebuilt.python, LIST_DISTRIBUTIONS)
    assert "uv pip sync" in log.read_text()
    t0 = time.perf_counter()
    assert builder.build_from_lock(original.lock_file, sys.executable, log) == rebuilt
    assert time.perf_counter() - t0 < 0.05
