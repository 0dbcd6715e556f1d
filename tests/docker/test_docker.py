"""env.docker.enabled runs, through the real submit path and the real Docker engine."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from environments.docker_image import DockerImageBuilder, dockerfile_for, image_tag
from runner import daemon_client
from runner.conda_dependencies import CondaDependencies
from runner.config import ScriptRunConfig
from runner.environment import Environment
from runner.errors import EnvironmentBuildError, TargetUnavailableError
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import Workspace
from targets.base import LaunchSpec
from targets.docker import DockerTarget, cleanup_leftovers, container_config
from tests.docker.conftest import BASE_IMAGE
from tests.helpers import source_folder, wait_until

pytestmark = pytest.mark.docker

TERMINAL = ("Completed", "Failed", "Canceled")


def docker_env(name: str = "docker-env", image: str = BASE_IMAGE) -> Environment:
    env = Environment(name)
    env.docker.enabled = True
    env.docker.base_image = image
    env.python.user_managed_dependencies = True
    return env


source = source_folder  # a source folder holding one script


def submit(exp: Experiment, src: Path, env: Environment, **rc: Any) -> Run:
    config = ScriptRunConfig(str(src), "main.py")
    config.run_config.environment = env
    for key, value in rc.items():
        setattr(config.run_config, key, value)
    return exp.submit(config)


def wait_end(run: Run, timeout_s: float = 120.0) -> str:
    def ended() -> str | None:
        status = run.get_status()
        return status if status in TERMINAL else None

    return wait_until(ended, timeout_s, 0.05, message=f"run {run.id} to end")


def containers_of(engine: Any, run: Run) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"runner.run_id={run.id}"})


def log_text(run: Run, name: str = "azureml-logs/70_driver_log.txt") -> str:
    folder = Path(run.experiment.workspace.path) / "dl" / run.id
    return Path(run.download_file(name, str(folder / Path(name).name))).read_text()


# --- runs ---------------------------------------------------------------------------------


def test_hello_run_in_a_container(exp: Experiment, tmp_path: Path, engine: Any) -> None:
    src = source(
        tmp_path,
        """
        import json, os, sys
        from runner import Run
        run = Run.get_context()
        run.log("answer", 42)
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/out.txt", "w") as f:
            f.write("made in a container")
        print("HELLO", json.dumps({
            "in_container": os.path.exists("/.dockerenv"), "uid": os.getuid(),
            "cwd": os.getcwd(), "foo": os.environ.get("FOO"), "pid1": open("/proc/1/comm").read().strip(),
            "python": sys.executable,
            "shm": os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
        }))
        """,
    )
    env = docker_env()
    env.environment_variables = {"FOO": "bar baz"}
    with contextlib.suppress(docker.errors.ImageNotFound):  # so that this test builds it
        engine.images.remove(image_tag(env), force=True)
    run = submit(exp, src, env)
    assert wait_end(run) == "Completed", run.get_details()
    assert run.get_metrics() == {"answer": 42}
    line = next(x for x in log_text(run).splitlines() if x.startswith("HELLO "))
    seen = json.loads(line[len("HELLO ") :])
    assert seen["in_container"] is True
    assert seen["foo"] == "bar baz"
    assert seen["uid"] == os.getuid()
    assert seen["pid1"] == "docker-init"
    assert seen["cwd"].endswith(f"{run.id}/work")
    assert seen["python"] == "/usr/bin/python3"  # the image's, not ours
    assert seen["shm"] == 2 * 1024**3  # env.docker.shm_size's default, "2g"
    assert "outputs/out.txt" in run.get_file_names()
    assert containers_of(engine, run) == []
    prep = log_text(run, "azureml-logs/55_environment_prep_log.txt")
    assert f"Successfully tagged {image_tag(env)}" in prep


def test_second_run_reuses_the_image(exp: Experiment, tmp_path: Path) -> None:
    src = source(tmp_path, "print('again')\n")
    env = docker_env("reuse")
    first = submit(exp, src, env)
    assert wait_end(first) == "Completed"
    second = submit(exp, src, env)
    assert wait_end(second) == "Completed"
    prep = log_text(second, "azureml-logs/55_environment_prep_log.txt")
    assert "image cache hit" in prep
    assert "Step 1/" not in prep


def test_cache_hit_decides_fast(engine: Any, tmp_path: Path) -> None:
    env = docker_env("fast")
    builder = DockerImageBuilder()
    builder.prepare(env, tmp_path / "prep.log")
    t0 = time.perf_counter()
    prepared = DockerImageBuilder().prepare(env, tmp_path / "prep.log")
    elapsed = time.perf_counter() - t0
    assert prepared.image == image_tag(env)
    assert elapsed < 0.1, f"deciding on a cache hit took {elapsed * 1000:.0f} ms"
    engine.images.get(image_tag(env))


def test_failing_script_is_failed_with_its_exit_code(
    exp: Experiment, tmp_path: Path, engine: Any
) -> None:
    src = source(tmp_path, "import sys\nprint('going down')\nsys.exit(3)\n")
    run = submit(exp, src, docker_env())
    assert wait_end(run) == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["exitCode"] == 3
    assert "going down" in error["logTail"]
    assert containers_of(engine, run) == []


def test_cancel_sends_term_then_removes(exp: Experiment, tmp_path: Path, engine: Any) -> None:
    src = source(
        tmp_path,
        """
        import signal, sys, time, os
        def on_term(signum, frame):
            with open(os.path.join("outputs", "term.txt"), "w") as f:
                f.write("got TERM")
            print("TERM received", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        os.makedirs("outputs", exist_ok=True)
        print("READY", flush=True)
        while True:
            time.sleep(0.05)
        """,
    )
    run = submit(exp, src, docker_env(), cancel_grace_seconds=20)
    ws = exp.workspace
    driver = Path(ws.path) / "runs" / run.id / "logs" / "70_driver_log.txt"
    wait_until(lambda: driver.exists() and "READY" in driver.read_text(), 60)
    assert len(containers_of(engine, run)) == 1
    t0 = time.monotonic()
    run.cancel()
    assert wait_end(run, 30) == "Canceled"
    assert time.monotonic() - t0 < 10, (
        "TERM was not delivered: the stop waited for the grace period"
    )
    assert "TERM received" in log_text(run)
    assert "outputs/term.txt" in run.get_file_names()
    assert containers_of(engine, run) == []


def test_max_run_duration_stops_the_container(exp: Experiment, tmp_path: Path, engine: Any) -> None:
    src = source(tmp_path, "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n")
    run = submit(exp, src, docker_env(), max_run_duration_seconds=2, cancel_grace_seconds=1)
    assert wait_end(run, 60) == "Canceled"
    assert "max_run_duration_seconds" in (run.get_detailed_status()["details"] or "")
    assert containers_of(engine, run) == []


def test_recovery_after_a_daemon_restart(exp: Experiment, tmp_path: Path, engine: Any) -> None:
    release = tmp_path / "release"
    src = source(
        tmp_path,
        f"""
        import os, time
        print("WAITING", flush=True)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        print("RELEASED", flush=True)
        """,
    )
    # The release file's folder must be visible in the container: it is under the workspace.
    ws = exp.workspace
    release = Path(ws.path) / "release"
    src.joinpath("main.py").write_text(
        src.joinpath("main.py").read_text().replace(str(tmp_path / "release"), str(release))
    )
    run = submit(exp, src, docker_env())
    driver = Path(ws.path) / "runs" / run.id / "logs" / "70_driver_log.txt"
    wait_until(lambda: driver.exists() and "WAITING" in driver.read_text(), 60)
    assert daemon_client.stop_daemon(Path(ws.path), timeout_s=15)
    assert [c.status for c in containers_of(engine, run)] == ["running"]
    release.touch()
    wait_until(lambda: [c.status for c in containers_of(engine, run)] == ["exited"], 30)
    daemon_client.ensure_daemon(Path(ws.path))
    assert wait_end(run, 60) == "Completed"
    assert "RELEASED" in log_text(run)
    assert containers_of(engine, run) == []


# --- images -------------------------------------------------------------------------------


def test_pip_layer_through_the_proxy(exp: Experiment, tmp_path: Path, engine: Any) -> None:
    env = Environment("pip-layer")
    env.docker.enabled = True
    env.docker.base_image = BASE_IMAGE
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["six==1.17.0"])
    with contextlib.suppress(docker.errors.ImageNotFound):  # so that this test builds it
        engine.images.remove(image_tag(env), force=True)
    src = source(tmp_path, "import six\nprint('six', six.__version__)\n")
    run = submit(exp, src, env)
    assert wait_end(run, 240) == "Completed", log_text(
        run, "azureml-logs/55_environment_prep_log.txt"
    )
    assert "six 1.17.0" in log_text(run)
    prep = log_text(run, "azureml-logs/55_environment_prep_log.txt")
    assert "Successfully installed six-1.17.0" in prep


def test_from_dockerfile(exp: Experiment, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f'FROM {BASE_IMAGE}\nRUN echo baked > /baked.txt\nENTRYPOINT ["false"]\nCMD ["x"]\n'
    )
    env = Environment.from_dockerfile("from-file", dockerfile)
    src = source(tmp_path, "print('baked is', open('/baked.txt').read().strip())\n")
    run = submit(exp, src, env)
    assert wait_end(run) == "Completed"
    assert "baked is baked" in log_text(run)


def test_failing_dockerfile_fails_the_run_with_the_build_log(
    exp: Experiment, tmp_path: Path
) -> None:
    env = Environment.from_dockerfile(
        "broken", f"FROM {BASE_IMAGE}\nRUN echo about to fail && exit 7\n"
    )
    run = submit(exp, source(tmp_path, "print('never')\n"), env)
    assert wait_end(run) == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["kind"] == "environment_failed"
    assert "about to fail" in error["message"]
    assert "non-zero code: 7" in error["message"]


def test_missing_base_image_fails_fast(exp: Experiment, tmp_path: Path) -> None:
    env = docker_env("missing", "runner-test/no-such-image:0")
    t0 = time.monotonic()
    run = submit(exp, source(tmp_path, "print('never')\n"), env)
    assert wait_end(run, 120) == "Failed"
    assert time.monotonic() - t0 < 90
    message = run.get_details()["error"]["error"]["message"]
    assert "base image 'runner-test/no-such-image:0' is not on this machine" in message


def test_builder_raises_with_the_log_tail(tmp_path: Path) -> None:
    env = Environment.from_dockerfile("bad", f"FROM {BASE_IMAGE}\nRUN echo tail-marker && false\n")
    with pytest.raises(EnvironmentBuildError, match="tail-marker"):
        DockerImageBuilder().prepare(env, tmp_path / "prep.log")


def test_no_engine_is_a_clear_error_at_submit(
    exp: Experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(TargetUnavailableError, match="no Docker engine answers"):
        submit(exp, source(tmp_path, "print('never')\n"), docker_env())
    assert list(exp.get_runs()) == []


def test_dockerfile_has_the_pip_layer_with_the_ca_bundle() -> None:
    env = Environment("layers")
    env.docker.enabled = True
    env.docker.base_image = BASE_IMAGE
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["six", "a b"])
    text = dockerfile_for(env, env.spec_hash(), with_ca=True)
    assert text.startswith(f"FROM {BASE_IMAGE}\n")
    assert "ARG PIP_INDEX_URL" in text
    assert "COPY runner-ca-bundle.crt /usr/local/share/runner-ca-bundle.crt" in text
    assert "PIP_CERT=/usr/local/share/runner-ca-bundle.crt" in text
    assert "python3 -m pip install --no-cache-dir six 'a b'" in text


# --- the target -----------------------------------------------------------------------


def _spec(tmp_path: Path, argv: list[str], gpu_ids: tuple[int, ...] = ()) -> LaunchSpec:
    run_dir = tmp_path / "run"
    (run_dir / "work" / "outputs").mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    return LaunchSpec(
        run_id=f"target-test-{os.getpid()}-{time.monotonic_ns()}",
        argv=argv,
        workdir=run_dir / "work",
        env={"RUNNER_WORKSPACE": str(tmp_path)},
        driver_log=run_dir / "logs" / "driver.txt",
        exit_file=run_dir / "exit_code",
        image=BASE_IMAGE,
        gpu_ids=gpu_ids,
    )


def test_container_config_gpus_user_labels_and_mounts(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ["python3", "x.py"], gpu_ids=(2, 3))
    config = container_config(spec, user="1234:1234")
    (request,) = config["device_requests"]
    assert request["DeviceIDs"] == ["2", "3"]
    assert request["Capabilities"] == [["gpu"]]
    assert config["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert config["user"] == "1234:1234"
    assert config["init"] is True
    assert config["labels"]["runner.run_id"] == spec.run_id
    targets = {m["Target"] for m in config["mounts"]}
    assert str(tmp_path.resolve()) in targets
    assert container_config(_spec(tmp_path, ["true"]))["device_requests"] is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_files_belong_to_the_work_folder_owner(tmp_path: Path, engine: Any) -> None:
    spec = _spec(
        tmp_path,
        ["python3", "-c", "import os; open('outputs/o.txt','w').write(str(os.getuid()))"],
    )
    tmp_path.chmod(0o755)  # pytest makes it 0700: the other user must reach the run folder
    for path in (
        spec.workdir,
        spec.workdir / "outputs",
        spec.driver_log.parent,
        spec.exit_file.parent,
    ):
        os.chown(path, 1234, 1234)
    target = DockerTarget()
    handle = target.launch(spec)
    try:
        assert handle.wait(60) == 0, spec.driver_log.read_text()
    finally:
        handle.cancel(1)
        target.close()
    out = spec.workdir / "outputs" / "o.txt"
    assert out.read_text() == "1234"
    assert (out.stat().st_uid, out.stat().st_gid) == (1234, 1234)
    assert spec.exit_file.stat().st_uid == 1234
    assert engine.containers.list(all=True, filters={"label": f"runner.run_id={spec.run_id}"}) == []
    target.close()


def test_reattach_by_container_id(tmp_path: Path, engine: Any) -> None:
    spec = _spec(tmp_path, ["sh", "-c", "exit 5"])
    target = DockerTarget()
    first = target.launch(spec)
    handle = target.reattach(json.loads(json.dumps(first.describe())))
    try:
        assert handle.wait(60) == 5
    finally:
        handle.cancel(1)
        first.cancel(1)
        target.close()


def test_leftovers_are_found_by_label_and_removed(ws: Workspace, engine: Any) -> None:
    labels = {"runner.run_id": "gone_1", "runner.workspace": str(Path(ws.path).resolve())}
    old = engine.containers.create(BASE_IMAGE, ["sleep", "60"], labels=labels)
    kept = engine.containers.create(
        BASE_IMAGE, ["sleep", "60"], labels={**labels, "runner.run_id": "live_1"}
    )
    try:
        removed = cleanup_leftovers(engine, Path(ws.path), lambda: {"live_1": kept.id})
        assert removed == [old.id]
        left = engine.containers.list(
            all=True, filters={"label": f"runner.workspace={labels['runner.workspace']}"}
        )
        assert [c.id for c in left] == [kept.id]
    finally:
        kept.remove(force=True)


def test_daemon_start_cleans_leftovers(ws: Workspace, engine: Any) -> None:
    labels = {"runner.run_id": "crashed_1", "runner.workspace": str(Path(ws.path).resolve())}
    engine.containers.create(BASE_IMAGE, ["sleep", "60"], labels=labels)
    daemon_client.ensure_daemon(Path(ws.path))
    wait_until(
        lambda: (
            engine.containers.list(all=True, filters={"label": "runner.run_id=crashed_1"}) == []
        ),
        30,
        0.1,
    )


def test_cancel_kills_a_script_that_ignores_term(
    exp: Experiment, tmp_path: Path, engine: Any
) -> None:
    src = source(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("READY", flush=True)
        while True:
            time.sleep(0.05)
        """,
    )
    run = submit(exp, src, docker_env(), cancel_grace_seconds=1)
    driver = Path(exp.workspace.path) / "runs" / run.id / "logs" / "70_driver_log.txt"
    wait_until(lambda: driver.exists() and "READY" in driver.read_text(), 60)
    t0 = time.monotonic()
    run.cancel()
    assert wait_end(run, 30) == "Canceled"
    assert time.monotonic() - t0 < 8
    assert containers_of(engine, run) == []


def test_system_metrics_of_a_container(
    exp: Experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SYSTEM_METRICS_S", "0.2")  # read when the daemon starts
    src = source(
        tmp_path,
        """
        import time
        end = time.time() + 1.5
        while time.time() < end:
            pass
        """,
    )
    run = submit(exp, src, docker_env())
    assert wait_end(run) == "Completed"
    metrics = run.get_metrics()
    assert "sys/cpu_percent" in metrics, metrics
    assert "sys/memory_mb" in metrics


def test_weird_workspace_path(weird_path: Path, tmp_path: Path) -> None:
    ws = Workspace.create(weird_path / "ws")
    src = source(
        tmp_path,
        """
        from runner import Run
        Run.get_context().log("ok", 1)
        print("weird ok")
        """,
    )
    run = submit(Experiment(ws, "weird"), src, docker_env())
    assert wait_end(run) == "Completed", run.get_details()
    assert run.get_metrics() == {"ok": 1}


def test_submit_child_from_inside_a_container(exp: Experiment, tmp_path: Path) -> None:
    src = source(
        tmp_path,
        f"""
        from runner import Environment, Run, ScriptRunConfig
        run = Run.get_context()
        env = Environment("child-env")
        env.docker.enabled = True
        env.docker.base_image = {BASE_IMAGE!r}
        env.python.user_managed_dependencies = True
        config = ScriptRunConfig(".", "child.py")
        config.run_config.environment = env
        child = run.submit_child(config)
        print("child ended", child.wait_for_completion()["status"], flush=True)
        """,
    )
    (src / "child.py").write_text(
        "from runner import Run\nprint('parent is', Run.get_context().parent.id)\n"
    )
    run = submit(exp, src, docker_env())
    assert wait_end(run) == "Completed", log_text(run)
    assert "child ended Completed" in log_text(run)
    (child,) = run.get_children()
    assert f"parent is {run.id}" in log_text(child)


def test_conda_layer_copies_the_prefix_built_on_the_host(
    exp: Experiment, tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from environments.conda import conda_platform
    from tests.environments.conda_channel import build_channel

    monkeypatch.setenv("RUNNER_ENV_CACHE", str(tmp_path / "envs"))  # read by the daemon
    channel = build_channel(tmp_path / "channel", conda_platform())
    conda = CondaDependencies.create(conda_packages=["pyhello"])
    for name in list(conda.conda_channels):
        conda.remove_channel(name)
    conda.add_channel(channel.url)
    env = Environment("conda-in-docker")
    env.docker.enabled = True
    env.docker.base_image = BASE_IMAGE
    env.python.conda_dependencies = conda
    # The test channel's python is a shim that calls the host's interpreter: the script
    # runs with the image's own python3 and looks at the prefix copied into the image.
    env.python.interpreter_path = "/usr/bin/python3"
    src = source(
        tmp_path,
        """
        import os
        prefix = os.environ["CONDA_PREFIX"]
        print("prefix", prefix, sorted(os.listdir(os.path.join(prefix, "conda-meta"))))
        print("on PATH", os.path.join(prefix, "bin") in os.environ["PATH"].split(":"))
        """,
    )
    run = submit(exp, src, env)
    assert wait_end(run, 240) == "Completed", log_text(
        run, "azureml-logs/55_environment_prep_log.txt"
    )
    out = log_text(run)
    assert "pyhello-1.1" in out
    assert "hello-data-0.2" in out
    assert "on PATH True" in out
    assert "azureml-environment/conda-lock.yml" in run.get_file_names()
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(image_tag(env), force=True)
