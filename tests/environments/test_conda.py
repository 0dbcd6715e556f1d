"""environments.conda: real py-rattler solves and installs from a local channel, real conda-lock.

Everything is offline: the channel (a shim python, hello-data, pyhello) and two wheels are
made by hand in tmp (tests/environments/conda_channel.py). The test process never imports
py-rattler (its finalization can crash a short interpreter); the builder runs it in its worker.

py-rattler and conda-lock are runner dependencies: with CI=true their absence fails these
tests; elsewhere they are skipped with the install command.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from environments.cache import EnvironmentCache
from environments.conda import (
    LOCK_FILE_NAME,
    CondaBuilder,
    channel_url,
    conda_platform,
    read_lock,
    run_worker,
)
from runner.conda_dependencies import CondaDependencies
from runner.environment import Environment
from runner.errors import ConfigError, EnvironmentBuildError, NotFoundError
from tests.environments.conda_channel import LocalChannel, build_channel, build_wheel

HERE_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
INSTALL = "pip install py-rattler conda-lock"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def conda_tools() -> None:
    """py-rattler and conda-lock are installed (found without importing py-rattler here)."""
    missing = [m for m in ("rattler", "conda_lock") if importlib.util.find_spec(m) is None]
    if missing:
        problem = f"{', '.join(missing)} not installed; {INSTALL}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    return build_channel(tmp_path_factory.mktemp("conda-channel"), conda_platform())


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "pipdep", "0.2")
    build_wheel(folder, "pipmain", "1.0", ("pipdep>=0.1",))
    return folder


@pytest.fixture
def envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conda_tools: None) -> Path:
    """RUNNER_ENV_CACHE for this test only."""
    root = tmp_path / "envs"
    monkeypatch.setenv("RUNNER_ENV_CACHE", str(root))
    return root


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "prepare.log"


def conda_env(
    channel: LocalChannel | str, conda_packages: list[str], pip_packages: list[str] = ()
) -> Environment:
    url = channel if isinstance(channel, str) else channel.url
    cd = CondaDependencies.create(
        conda_packages=conda_packages, pip_packages=list(pip_packages), python_version=HERE_VERSION
    )
    cd.remove_channel("conda-forge")
    cd.add_channel(url)
    env = Environment("conda-test")
    env.python.conda_dependencies = cd
    return env


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, f"{argv} failed: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def conda_meta(prefix: Path) -> set[str]:
    """name-version-build of every conda package installed in ``prefix``."""
    return {p.stem for p in (prefix / "conda-meta").glob("*.json")}


def prefix_of(prepared) -> Path:
    return Path(prepared.env["CONDA_PREFIX"])


# --- solve, lock, install -------------------------------------------------------------------


def test_prepare_solves_locks_and_installs_from_the_channel(envs, channel, log):
    prepared = CondaBuilder().prepare(conda_env(channel, ["pyhello"]), log)

    prefix = prefix_of(prepared)
    assert prefix.parent == envs
    assert prefix.name.startswith(f"conda-{conda_platform()}-")
    assert prepared.python == str(prefix / "bin" / "python")
    assert prepared.lock_file == prefix / LOCK_FILE_NAME
    assert prepared.env["PATH"].split(os.pathsep)[0] == str(prefix / "bin")
    # the highest versions that fit: pyhello 1.1 needs hello-data >=0.2
    assert conda_meta(prefix) == {
        f"python-{channel.python_version}-0_shim",
        "pyhello-1.1-py_0",
        "hello-data-0.2-0",
    }
    out = run([str(prefix / "bin" / "pyhello")])
    assert out == "pyhello 1.1 | hello from a local conda channel (data 0.2)"
    code = "import pyhello, sys; print(pyhello.__version__, sys.version_info[:2])"
    assert run([prepared.python, "-c", code]) == f"1.1 {sys.version_info[:2]}"
    text = log.read_text()
    assert "rattler: solving ['pyhello']" in text
    assert f"python={HERE_VERSION} added" in text
    assert "installed from the lock" in text


def test_lock_is_conda_lock_format_read_by_conda_lock(envs, channel, log):
    with warnings.catch_warnings():  # conda-lock's vendored conda warns at import
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        from conda_lock.lockfile import parse_conda_lock_file

    prepared = CondaBuilder().prepare(conda_env(channel, ["pyhello=1.0"]), log)

    lock = prepared.lock_file
    assert lock is not None
    assert lock.name == "conda-lock.yml"
    parsed = parse_conda_lock_file(lock)
    platform = conda_platform()
    assert parsed.metadata.platforms == [platform]
    assert [c.url for c in parsed.metadata.channels] == [channel.url]
    got = {(p.name, p.version, p.manager, p.platform) for p in parsed.package}
    assert got == {
        ("python", channel.python_version, "conda", platform),
        ("pyhello", "1.0", "conda", platform),
        ("hello-data", "0.2", "conda", platform),
    }
    pyhello = next(p for p in parsed.package if p.name == "pyhello")
    assert pyhello.dependencies == {"python": ">=3.8", "hello-data": ""}
    assert pyhello.url == f"{channel.url}/noarch/pyhello-1.0-py_0.tar.bz2"
    assert pyhello.hash.md5
    assert pyhello.hash.sha256
    assert pyhello.build == "py_0"
    assert parsed.metadata.custom_metadata["runner.python"] == HERE_VERSION
    assert lock.read_text().count("\nversion: 1\n") == 1  # conda-lock's on-disk format


def test_pins_choose_the_versions(envs, channel, log):
    prepared = CondaBuilder().prepare(conda_env(channel, ["pyhello=1.0", "hello-data=0.1"]), log)

    out = run([str(prefix_of(prepared) / "bin" / "pyhello")])
    assert out == "pyhello 1.0 | hello from a local conda channel (data 0.1)"


def test_the_same_definition_again_is_a_cache_hit_without_a_solve(envs, channel, log):
    builder = CondaBuilder()
    first = builder.prepare(conda_env(channel, ["pyhello"]), log)
    before = log.read_text()

    t0 = time.monotonic()
    second = CondaBuilder().prepare(conda_env(channel, ["pyhello"]), log)
    elapsed = time.monotonic() - t0

    assert second == first
    assert elapsed < 0.5
    added = log.read_text()[len(before) :]
    assert "cache hit" in added
    assert "rattler" not in added
    assert "solving" not in added


def test_rebuild_from_the_lock_gives_the_same_packages(envs, channel, log):
    builder = CondaBuilder()
    prepared = builder.prepare(conda_env(channel, ["pyhello"]), log)
    assert prepared.lock_file is not None
    kept = envs.parent / "kept-with-the-run.yml"  # as a run keeps it
    kept.write_bytes(prepared.lock_file.read_bytes())

    rebuilt = builder.build_from_lock(kept, log)

    a, b = prefix_of(prepared), prefix_of(rebuilt)
    assert a != b
    assert b.name.startswith(f"conda-lock-{conda_platform()}-")
    assert conda_meta(b) == conda_meta(a)
    assert rebuilt.lock_file is not None
    assert rebuilt.lock_file.read_bytes() == kept.read_bytes()
    assert "solving" not in log.read_text().split("conda environment from the lock")[1]
    assert run([str(b / "bin" / "pyhello")]) == run([str(a / "bin" / "pyhello")])
    # and the same lock again is a cache hit
    assert builder.build_from_lock(kept, log) == rebuilt


def test_pip_section_is_installed_with_uv_and_locked(envs, channel, wheels, log):
    env = conda_env(channel, ["pyhello"], ["pipmain"])
    cd = env.python.conda_dependencies
    cd.set_pip_option("--no-index")
    cd.set_pip_option(f"--find-links {wheels}")
    builder = CondaBuilder()

    prepared = builder.prepare(env, log)

    code = "import pipmain, pipdep, pyhello; print(pipmain.__version__, pipdep.__version__)"
    assert run([prepared.python, "-c", code]) == "1.0 0.2"
    assert prepared.lock_file is not None
    parsed = read_lock(prepared.lock_file)
    pip = {p.name: p for p in parsed.package if p.manager == "pip"}
    assert set(pip) == {"pipmain", "pipdep"}
    assert pip["pipmain"].url == (wheels / "pipmain-1.0-py3-none-any.whl").as_uri()
    assert len(pip["pipmain"].hash.sha256) == 64

    rebuilt = builder.build_from_lock(prepared.lock_file, log)
    assert run([rebuilt.python, "-c", code]) == "1.0 0.2"


def test_conda_variables_are_set_and_survive_the_lock(envs, channel, log, tmp_path):
    spec = tmp_path / "environment.yml"
    spec.write_text(
        "name: vars\n"
        f"channels:\n  - {channel.url}\n"
        f"dependencies:\n  - python={HERE_VERSION}\n  - pyhello\n"
        "variables:\n  GREETING: hi there\n"
    )
    env = Environment.from_conda_specification("vars", str(spec))
    builder = CondaBuilder()

    prepared = builder.prepare(env, log)
    assert prepared.env["GREETING"] == "hi there"
    assert prepared.lock_file is not None
    assert builder.build_from_lock(prepared.lock_file, log).env["GREETING"] == "hi there"


# --- failures -------------------------------------------------------------------------------


def test_unknown_package_fails_naming_it_and_the_channels(envs, channel, log):
    env = conda_env(channel, ["pyhello", "nosuchpkg=1.0"])
    key = CondaBuilder.cache_key(env)

    with pytest.raises(
        EnvironmentBuildError, match=r"nosuchpkg not found in the channel\(s\) file://"
    ) as info:
        CondaBuilder().prepare(env, log)

    assert "add_channel" in str(info.value)
    assert info.value.log_path == str(log)
    assert not EnvironmentCache(envs).path_for(key).exists()


def test_unsolvable_pins_fail_and_leave_no_folder(envs, channel, log):
    env = conda_env(channel, ["pyhello=1.1", "hello-data=0.1"])
    key = CondaBuilder.cache_key(env)

    with pytest.raises(EnvironmentBuildError, match=r"cannot be satisfied together") as info:
        CondaBuilder().prepare(env, log)

    assert "pyhello=1.1" in str(info.value)
    assert channel.url in str(info.value)
    assert not EnvironmentCache(envs).path_for(key).exists()


def test_unreachable_channel_fails(envs, tmp_path, log):
    missing = (tmp_path / "no-such-channel").as_uri()
    env = conda_env(missing, ["pyhello"])

    with pytest.raises(
        EnvironmentBuildError, match=r"channel\(s\) file://.*no-such-channel.*cannot be read"
    ):
        CondaBuilder().prepare(env, log)

    assert not EnvironmentCache(envs).path_for(CondaBuilder.cache_key(env)).exists()


def test_environments_that_are_not_conda_are_refused(envs, channel, log):
    env = conda_env(channel, ["pyhello"])
    env.python.user_managed_dependencies = True
    with pytest.raises(ConfigError, match="user-managed"):
        CondaBuilder().prepare(env, log)
    env = conda_env(channel, ["pyhello"])
    env.docker.enabled = True
    with pytest.raises(ConfigError, match="docker image"):
        CondaBuilder().prepare(env, log)


def test_build_from_lock_refuses_missing_and_foreign_files(envs, channel, log, tmp_path):
    builder = CondaBuilder()
    with pytest.raises(NotFoundError, match="not found"):
        builder.build_from_lock(tmp_path / "nope.yml", log)
    junk = tmp_path / "junk.yml"
    junk.write_text("just: text\n")
    with pytest.raises(ConfigError, match="not a conda-lock lock file"):
        builder.build_from_lock(junk, log)
    junk.write_text("version: [1\n")  # not even YAML
    with pytest.raises(ConfigError, match="not a conda-lock lock file"):
        builder.build_from_lock(junk, log)
    assert not [p for p in envs.iterdir() if not p.name.startswith(".")]


def test_build_from_lock_refuses_another_platform(envs, channel, log, tmp_path):
    prepared = CondaBuilder().prepare(conda_env(channel, ["pyhello"]), log)
    assert prepared.lock_file is not None
    platform = conda_platform()
    other = "osx-arm64" if platform != "osx-arm64" else "linux-64"
    foreign = tmp_path / "foreign.yml"
    foreign.write_text(prepared.lock_file.read_text().replace(platform, other))

    with pytest.raises(ConfigError, match=f"locks the platform\\(s\\) {other}, not this"):
        CondaBuilder().build_from_lock(foreign, log)


# --- the worker protocol --------------------------------------------------------------------


def test_worker_success_stands_even_if_it_crashes_afterwards(tmp_path, log):
    script = (
        "import json, os, signal, sys; sys.stdin.read();"
        "print(json.dumps({'ok': True, 'answer': 42}), flush=True);"
        "os.kill(os.getpid(), signal.SIGSEGV)"
    )
    result = run_worker({"op": "solve"}, log, argv=[sys.executable, "-c", script])

    assert result == {"ok": True, "answer": 42}
    assert "finalization crash" in log.read_text()


def test_worker_without_a_result_is_a_failure(tmp_path, log):
    script = "import os, sys; sys.stdin.read(); sys.stderr.write('boom\\n'); os._exit(0)"
    with pytest.raises(
        EnvironmentBuildError, match=r"ended with exit code 0 .* without reporting a result.*boom"
    ):
        run_worker({"op": "install"}, log, argv=[sys.executable, "-c", script])


def test_worker_reported_failure_keeps_its_kind_and_hint(tmp_path, log):
    script = (
        "import json, sys; sys.stdin.read();"
        "print(json.dumps({'ok': False, 'kind': 'unsolvable', 'message': 'no way'}));"
        "sys.exit(1)"
    )
    with pytest.raises(EnvironmentBuildError, match=r"^no way; relax or change the version pins"):
        run_worker({"op": "solve"}, log, argv=[sys.executable, "-c", script])


def test_worker_script_reports_bad_requests_as_json(tmp_path, conda_tools):
    from environments.conda import WORKER_SCRIPT

    done = subprocess.run(
        [sys.executable, str(WORKER_SCRIPT)],
        input=json.dumps({"op": "dance"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(done.stdout) == {
        "ok": False,
        "kind": "protocol",
        "message": "unknown op 'dance'; expected 'solve' or 'install'",
    }


# --- small pieces ---------------------------------------------------------------------------


def test_channel_url_turns_paths_into_file_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert channel_url("conda-forge") == "conda-forge"
    assert channel_url("https://example.org/chan") == "https://example.org/chan"
    assert channel_url("/srv/chan") == "file:///srv/chan"
    assert channel_url("./local") == (tmp_path / "local").as_uri()


def test_conda_platform_is_a_conda_subdir():
    assert conda_platform().split("-")[0] in {"linux", "osx", "win"}


def test_the_test_process_never_imported_py_rattler():
    """py-rattler runs only in the builder's worker (its finalization can crash a process)."""
    assert "rattler" not in sys.modules
