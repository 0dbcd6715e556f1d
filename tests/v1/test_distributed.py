"""Distributed jobs as v1 writes them (issue 14, item 8), on one machine.

``ScriptRunConfig(distributed_job_config=PyTorchConfiguration(process_count=N))`` starts N
processes with torchrun's variables; each rank has its own ``70_driver_log_<rank>.txt``;
a failing rank fails the run and stops the others; cancel stops every rank. What runner
cannot do (several nodes, MPI without mpirun, ``resume_from``, TensorFlow parameter
servers) is refused at construction or submit with nothing recorded.

Every run is submitted by its own process and read back by another; the test process
holds no workspace open.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner import daemon_client
from tests.daemon.conftest import FakeGpus, fake_gpus, fake_nvml_lib  # noqa: F401
from tests.helpers import run_code, wait_until
from tests.runner.test_bad_input import python, runner_cli

#: A rank: records its variables and pid, logs a metric, meets the others on
#: MASTER_ADDR:MASTER_PORT over a plain socket (rank 0 listens), then acts on argv[1]:
#: ``ok`` ends; ``fail`` makes rank 1 exit 1 once all ranks have met, the others sleep;
#: ``sleep`` sleeps (to be canceled).
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from runner import Run

    run = Run.get_context()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    markers = sys.argv[2]
    names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK",
             "MASTER_ADDR", "MASTER_PORT", "AZ_BATCH_MASTER_NODE", "CUDA_VISIBLE_DEVICES"]
    seen = {n: os.environ.get(n) for n in names}
    os.makedirs("outputs", exist_ok=True)
    with open(f"outputs/env_{rank}.json", "w") as f:
        json.dump(seen, f)
    with open(os.path.join(markers, f"pid_{rank}"), "w") as f:
        f.write(str(os.getpid()))
    run.log("rank", rank)
    print(f"rank {rank} of {world} here", flush=True)
    addr = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if rank == 0:
        server = socket.create_server(addr)
        met = []
        for _ in range(world - 1):
            conn, _ = server.accept()
            met.append(int(conn.recv(16).decode()))
            conn.sendall(b"ok")
            conn.close()
        with open("outputs/rendezvous.json", "w") as f:
            json.dump(sorted(met), f)
    else:
        deadline = time.time() + 30
        while True:
            try:
                conn = socket.create_connection(addr, timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        conn.sendall(str(rank).encode())
        assert conn.recv(16) == b"ok"
        conn.close()
    if sys.argv[1] == "fail" and rank == 1:
        print("rank 1 fails on purpose", flush=True)
        sys.exit(1)
    if sys.argv[1] in ("fail", "sleep"):
        time.sleep(300)
    """
)

SUBMIT = textwrap.dedent(
    """
    import sys
    from runner import Environment, Experiment, PyTorchConfiguration, ScriptRunConfig, Workspace

    ws = Workspace.create(sys.argv[1], exist_ok=True)
    src = ScriptRunConfig(sys.argv[2], "rank.py", arguments=[sys.argv[3], sys.argv[4]],
                          distributed_job_config=PyTorchConfiguration(process_count=int(sys.argv[5])))
    src.run_config.gpu_count = int(sys.argv[6])
    src.run_config.cancel_grace_seconds = 2
    run = Experiment(ws, "dist").submit(src)
    if sys.argv[7] == "wait":
        run.wait_for_completion(raise_on_error=False)
    print(run.id)
    """
)

READ = textwrap.dedent(
    """
    import json, sys
    from runner import Run, Workspace

    run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
    d = run.get_details()
    print(json.dumps({"status": run.get_status(), "error": d.get("error"),
                      "metrics": run.get_metrics(), "files": run.get_file_names()}))
    """
)

FILE = textwrap.dedent(
    """
    import sys
    from runner import Run, Workspace

    run = Run.get(Workspace(sys.argv[1]), sys.argv[2])
    run.download_file(sys.argv[3], sys.argv[4])
    """
)


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "rank.py").write_text(RANK_SCRIPT)
    markers = tmp_path / "markers"
    markers.mkdir()
    return tmp_path / "ws", src, markers


def _submit(
    ws: Path, src: Path, markers: Path, mode: str, n: int, gpus: int = 0, wait: bool = True
) -> str:
    proc = python(
        SUBMIT,
        str(ws),
        str(src),
        mode,
        str(markers),
        str(n),
        str(gpus),
        "wait" if wait else "nowait",
        timeout_s=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _read(ws: Path, run_id: str) -> dict[str, Any]:
    proc = python(READ, str(ws), run_id)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _file(ws: Path, run_id: str, name: str, dest: Path) -> str:
    proc = python(FILE, str(ws), run_id, name, str(dest))
    assert proc.returncode == 0, proc.stderr
    return dest.read_text()


def _pids(markers: Path, n: int) -> list[int]:
    files = [markers / f"pid_{r}" for r in range(n)]
    wait_until(lambda: all(f.is_file() and f.read_text() for f in files), 60)
    return [int(f.read_text()) for f in files]


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) for p in pids)


@pytest.mark.slow
def test_pytorch_job_runs_every_rank_with_torchrun_variables(tmp_path: Path) -> None:
    ws, src, markers = _setup(tmp_path)
    try:
        run_id = _submit(ws, src, markers, "ok", 3)
        got = _read(ws, run_id)
        assert got["status"] == "Completed", got
        files = set(got["files"])
        for r in range(3):
            assert f"azureml-logs/70_driver_log_{r}.txt" in files
            assert f"outputs/env_{r}.json" in files
        envs = [
            json.loads(_file(ws, run_id, f"outputs/env_{r}.json", tmp_path / f"e{r}"))
            for r in range(3)
        ]
        ports = {e["MASTER_PORT"] for e in envs}
        assert len(ports) == 1
        assert next(iter(ports)).isdigit()
        for r, e in enumerate(envs):
            assert e["RANK"] == e["LOCAL_RANK"] == str(r)
            assert e["WORLD_SIZE"] == e["LOCAL_WORLD_SIZE"] == "3"
            assert e["NODE_RANK"] == "0"
            assert e["MASTER_ADDR"] == "127.0.0.1"
            assert e["AZ_BATCH_MASTER_NODE"] == f"127.0.0.1:{e['MASTER_PORT']}"
        # The ranks met on MASTER_ADDR:MASTER_PORT.
        assert json.loads(_file(ws, run_id, "outputs/rendezvous.json", tmp_path / "rv")) == [1, 2]
        # Metrics of every rank go to the one run (as v1 records them).
        assert sorted(got["metrics"]["rank"]) == [0, 1, 2]
        # Each rank's own log holds its output; the driver log all of them, marked.
        log1 = _file(ws, run_id, "azureml-logs/70_driver_log_1.txt", tmp_path / "l1")
        assert "rank 1 of 3 here" in log1
        assert "rank 0" not in log1
        combined = _file(ws, run_id, "azureml-logs/70_driver_log.txt", tmp_path / "l")
        for r in range(3):
            assert f"[rank {r}] rank {r} of 3 here" in combined
    finally:
        runner_cli(ws, "daemon", "stop")


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_and_stops_the_others(tmp_path: Path) -> None:
    ws, src, markers = _setup(tmp_path)
    try:
        began = time.monotonic()
        run_id = _submit(ws, src, markers, "fail", 3)
        assert time.monotonic() - began < 120  # not the 300 s the other ranks sleep
        got = _read(ws, run_id)
        assert got["status"] == "Failed", got
        assert got["error"]["error"]["exitCode"] == 1
        assert got["error"]["error"]["failedRank"] == 1
        assert got["error"]["error"]["message"] == (
            "rank 1 of the distributed run exited with code 1"
        )
        tail = got["error"]["error"]["logTail"]
        assert "rank 1 exited with code 1; stopping the other 2 rank(s)" in tail
        assert _gone(_pids(markers, 3))
    finally:
        runner_cli(ws, "daemon", "stop")


@pytest.mark.slow
def test_cancel_stops_every_rank(tmp_path: Path) -> None:
    ws, src, markers = _setup(tmp_path)
    try:
        run_id = _submit(ws, src, markers, "sleep", 3, wait=False)
        pids = _pids(markers, 3)
        assert not _gone(pids)
        proc = python(
            "import sys; from runner import Run, Workspace; "
            "r = Run.get(Workspace(sys.argv[1]), sys.argv[2]); r.cancel(); "
            "r.wait_for_completion(raise_on_error=False)",
            str(ws),
            run_id,
        )
        assert proc.returncode == 0, proc.stderr
        assert _read(ws, run_id)["status"] == "Canceled"
        wait_until(lambda: _gone(pids), 10, message="every rank gone")
    finally:
        runner_cli(ws, "daemon", "stop")


REFUSE = textwrap.dedent(
    """
    import json, sys
    from runner import (ConfigError, DockerConfiguration, Experiment, MpiConfiguration,
                        PyTorchConfiguration, RunConfiguration, ScriptRunConfig,
                        TensorflowConfiguration, Workspace)

    ws = Workspace.create(sys.argv[1], exist_ok=True)
    exp = Experiment(ws, "dist")
    src = sys.argv[2]
    rc2, rc3 = RunConfiguration(), RunConfiguration()
    cases = {
        "two nodes": lambda: exp.submit(ScriptRunConfig(
            src, "rank.py", distributed_job_config=PyTorchConfiguration(process_count=2, node_count=2))),
        "mpi nodes": lambda: exp.submit(ScriptRunConfig(
            src, "rank.py", distributed_job_config=MpiConfiguration(process_count_per_node=2, node_count=3))),
        "mpi": lambda: exp.submit(ScriptRunConfig(
            src, "rank.py", distributed_job_config=MpiConfiguration(process_count_per_node=2))),
        "resume_from": lambda: exp.submit(ScriptRunConfig(src, "rank.py", resume_from="ckpt")),
        "tensorflow": lambda: TensorflowConfiguration(worker_count=2),
        "rc nodes": lambda: setattr(rc2, "node_count", 2) or exp.submit(
            ScriptRunConfig(src, "rank.py", run_config=rc2)),
        "rc communicator": lambda: setattr(rc3, "communicator", "Nccl") or exp.submit(
            ScriptRunConfig(src, "rank.py", run_config=rc3)),
        "not a config": lambda: ScriptRunConfig(src, "rank.py", distributed_job_config={"n": 2}),
        "docker": lambda: exp.submit(ScriptRunConfig(
            src, "rank.py", distributed_job_config=PyTorchConfiguration(process_count=2),
            docker_runtime_config=DockerConfiguration(use_docker=True))),
        "remote": lambda: exp.submit(ScriptRunConfig(
            src, "rank.py", compute_target="gpu-box",
            distributed_job_config=PyTorchConfiguration(process_count=2))),
    }
    out = {}
    for name, make in cases.items():
        try:
            make()
            out[name] = None
        except ConfigError as exc:
            out[name] = str(exc)
    print(json.dumps(out))
    """
)


def test_what_runner_cannot_run_is_refused_with_nothing_recorded(tmp_path: Path) -> None:
    ws, src, _ = _setup(tmp_path)
    # A PATH without mpirun (CI installs a real one for test_mpi_job_with_the_real_mpirun).
    no_mpirun = tmp_path / "bin-without-mpirun"
    no_mpirun.mkdir()
    proc = run_code(REFUSE, ws, src, cwd=tmp_path, env={"PATH": str(no_mpirun)})
    assert proc.returncode == 0, proc.stderr
    refused = json.loads(proc.stdout)
    assert "node_count=2" in refused["two nodes"]
    assert "node_count=1" in refused["two nodes"]
    assert "node_count=3" in refused["mpi nodes"]
    assert refused["mpi"] == (
        "MpiConfiguration needs mpirun on PATH; install openmpi (apt-get install "
        "openmpi-bin) or use PyTorchConfiguration"
    )
    assert "resume_from='ckpt' is not supported" in refused["resume_from"]
    assert "TensorflowConfiguration" in refused["tensorflow"]
    assert "run_config.node_count=2" in refused["rc nodes"]
    assert "run_config.communicator='Nccl'" in refused["rc communicator"]
    assert "PyTorchConfiguration(process_count=N)" in refused["not a config"]
    assert "docker environment" in refused["docker"]
    assert "local target only" in refused["remote"]
    listed = python(
        "import sys; from runner import Experiment, Workspace; "
        "print(len(list(Experiment(Workspace(sys.argv[1]), 'dist').get_runs())))",
        str(ws),
    )
    assert listed.stdout.strip() == "0", listed.stderr


DOCKER_MAP = textwrap.dedent(
    """
    import json, sys
    from runner import DockerConfiguration, Environment, ScriptRunConfig

    env = Environment("e")
    src = ScriptRunConfig(sys.argv[1], "rank.py", environment=env,
                          docker_runtime_config=DockerConfiguration(
                              use_docker=True, shm_size="4g", arguments=["--ipc=host"]))
    eff = src.effective_environment().docker
    print(json.dumps({"enabled": eff.enabled, "shm": eff.shm_size, "args": eff.arguments,
                      "caller_untouched": not env.docker.enabled and env.docker.shm_size != "4g"}))
    """
)


def test_docker_runtime_config_maps_onto_the_environment_docker_section(tmp_path: Path) -> None:
    _, src, _ = _setup(tmp_path)
    proc = python(DOCKER_MAP, str(src))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "enabled": True,
        "shm": "4g",
        "args": ["--ipc=host"],
        "caller_untouched": True,
    }


@pytest.mark.slow
def test_every_rank_sees_the_runs_gpus_with_fake_gpus(
    tmp_path: Path,
    fake_gpus: FakeGpus,  # noqa: F811
) -> None:
    ws, src, markers = _setup(tmp_path)
    try:
        made = python(
            "import sys; from runner import Workspace; Workspace.create(sys.argv[1])", str(ws)
        )
        assert made.returncode == 0, made.stderr
        folder = daemon_client.daemon_dir(ws)  # what `runner daemon start --gpus all` writes
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps({"gpus": "all", "system_metrics_s": 0}))
        run_id = _submit(ws, src, markers, "ok", 2, gpus=2)
        assert _read(ws, run_id)["status"] == "Completed"
        seen = [
            json.loads(_file(ws, run_id, f"outputs/env_{r}.json", tmp_path / f"e{r}"))
            for r in range(2)
        ]
        visible = {e["CUDA_VISIBLE_DEVICES"] for e in seen}
        # torchrun's model: all ranks see the run's GPUs and take cuda:LOCAL_RANK.
        assert len(visible) == 1
        (devices,) = visible
        assert len(devices.split(",")) == 2
    finally:
        runner_cli(ws, "daemon", "stop")


#: A stand-in for mpirun (named fake): starts -np N copies of the command with the
#: variables Open MPI's mpirun sets, and fails when one does.
FAKE_MPIRUN = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, subprocess, sys

    assert sys.argv[1] == "-np", sys.argv
    n, cmd = int(sys.argv[2]), sys.argv[3:]
    procs = [
        subprocess.Popen(cmd, env={**os.environ, "OMPI_COMM_WORLD_RANK": str(r),
                                   "OMPI_COMM_WORLD_SIZE": str(n),
                                   "OMPI_COMM_WORLD_LOCAL_RANK": str(r)})
        for r in range(n)
    ]
    sys.exit(max(p.wait() for p in procs))
    """
)

MPI_SCRIPT = textwrap.dedent(
    """
    import os
    from runner import Run

    rank = os.environ["OMPI_COMM_WORLD_RANK"]
    Run.get_context().log("mpi_rank", int(rank))
    print("mpi rank", rank, "of", os.environ["OMPI_COMM_WORLD_SIZE"], flush=True)
    """
)

SUBMIT_MPI = textwrap.dedent(
    """
    import sys
    from runner import Experiment, MpiConfiguration, ScriptRunConfig, Workspace

    ws = Workspace.create(sys.argv[1], exist_ok=True)
    src = ScriptRunConfig(sys.argv[2], "mpi.py",
                          distributed_job_config=MpiConfiguration(process_count_per_node=2))
    run = Experiment(ws, "dist").submit(src)
    run.wait_for_completion(raise_on_error=False)
    print(run.id)
    """
)


@pytest.mark.slow
def test_mpi_job_goes_through_mpirun_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, src, _ = _setup(tmp_path)
    (src / "mpi.py").write_text(MPI_SCRIPT)
    fake_bin = tmp_path / "fake-mpirun-bin"
    fake_bin.mkdir()
    (fake_bin / "mpirun").write_text(FAKE_MPIRUN)
    (fake_bin / "mpirun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    try:
        proc = python(SUBMIT_MPI, str(ws), str(src), timeout_s=120)
        assert proc.returncode == 0, proc.stderr
        got = _read(ws, proc.stdout.strip().splitlines()[-1])
        assert got["status"] == "Completed", got
        assert sorted(got["metrics"]["mpi_rank"]) == [0, 1]
    finally:
        runner_cli(ws, "daemon", "stop")


MPI_FAIL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from runner import Run

    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    Run.get_context().log("mpi_rank", rank)
    print("mpi rank", rank, "of", os.environ["OMPI_COMM_WORLD_SIZE"], flush=True)
    if sys.argv[1:] == ["--fail-rank", str(rank)]:
        sys.exit(5)
    """
)

SUBMIT_MPI_ARGS = textwrap.dedent(
    """
    import sys
    from runner import Experiment, MpiConfiguration, ScriptRunConfig, Workspace

    ws = Workspace.create(sys.argv[1], exist_ok=True)
    src = ScriptRunConfig(sys.argv[2], "mpi.py", arguments=sys.argv[3:],
                          distributed_job_config=MpiConfiguration(process_count_per_node=2))
    run = Experiment(ws, "dist").submit(src)
    run.wait_for_completion(raise_on_error=False)
    print(run.id)
    """
)


def _require_mpirun() -> None:
    if shutil.which("mpirun") is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but mpirun is missing: scripts/ci_services.sh installs openmpi-bin")
    pytest.skip(
        "needs a real mpirun: apt-get install openmpi-bin (as root, scripts/ci_services.sh)"
    )


@pytest.mark.slow
def test_mpi_job_with_the_real_mpirun(tmp_path: Path) -> None:
    """Open MPI's own mpirun (as root here, as in containers): every rank logs into the
    one run; a rank exiting 5 fails the run with mpirun's code."""
    _require_mpirun()
    ws, src, _ = _setup(tmp_path)
    (src / "mpi.py").write_text(MPI_FAIL_SCRIPT)
    try:
        proc = run_code(SUBMIT_MPI_ARGS, ws, src, cwd=tmp_path, timeout_s=120)
        assert proc.returncode == 0, proc.stderr
        got = _read(ws, proc.stdout.strip().splitlines()[-1])
        assert got["status"] == "Completed", got
        assert sorted(got["metrics"]["mpi_rank"]) == [0, 1]
        proc = run_code(SUBMIT_MPI_ARGS, ws, src, "--fail-rank", 1, cwd=tmp_path, timeout_s=120)
        assert proc.returncode == 0, proc.stderr
        got = _read(ws, proc.stdout.strip().splitlines()[-1])
        assert got["status"] == "Failed", got
        assert got["error"]["error"]["exitCode"] == 5, got["error"]
    finally:
        runner_cli(ws, "daemon", "stop")
