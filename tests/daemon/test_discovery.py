"""GPU discovery through the real nvidia-ml-py code, against a stand-in libnvidia-ml.so.1.

Discovery runs in a fresh process each time (as in the daemon): the dynamic loader reads
LD_LIBRARY_PATH when a process starts, and runner.service.gpus keeps NVML for the life of one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.service import gpus
from runner.service.gpus import Gpu
from runner.workspace import Workspace
from tests.daemon.conftest import Box, FakeGpus, configure, daemon_status, wait_status
from tests.helpers import REPO, script_env

PROBE = """
import json, sys
from runner.service import gpus
found = gpus.discover()
print(json.dumps({
    "gpus": [vars(g) for g in found],
    "samples": {g.index: gpus.sample(g.index) for g in found},
    "pynvml": "pynvml" in sys.modules,
}))
"""


def discover_in(env: dict[str, str]) -> dict[str, Any]:
    """Run discovery in a fresh interpreter with ``env``; what it found."""
    full = script_env(env)
    full["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no driver is not an error, not even a warning
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_discovers_the_fake_gpus_through_nvidia_ml_py(fake_gpus: FakeGpus) -> None:
    fake_gpus.set_load({1: (20000, 87), 3: (123, 5)})
    found = discover_in({**fake_gpus.env(), "FAKE_NVML_MEM_MB": "24576"})
    assert found["pynvml"], "discovery must go through nvidia-ml-py"
    assert [g["index"] for g in found["gpus"]] == [0, 1, 2, 3]
    assert {g["name"] for g in found["gpus"]} == {"NVIDIA H100 80GB HBM3 (fake)"}
    assert [g["uuid"] for g in found["gpus"]] == [
        f"GPU-fa4e0000-0000-4000-8000-{i:012d}" for i in range(4)
    ]
    assert {g["memory_total_mb"] for g in found["gpus"]} == {24576}
    assert found["samples"] == {
        "0": {"utilization": 0.0, "memory_used_mb": 0.0},
        "1": {"utilization": 87.0, "memory_used_mb": 20000.0},
        "2": {"utilization": 0.0, "memory_used_mb": 0.0},
        "3": {"utilization": 5.0, "memory_used_mb": 123.0},
    }


def test_a_machine_without_a_driver_has_no_gpus_and_no_error(tmp_path: Path) -> None:
    empty = tmp_path / "no-driver"
    empty.mkdir()
    env = {"LD_LIBRARY_PATH": str(empty)}
    assert not any(
        (Path(d) / "libnvidia-ml.so.1").exists()
        for d in ["/usr/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu"]
    ), "this test needs a machine without an NVIDIA driver"
    assert discover_in(env)["gpus"] == []


def test_a_driver_reporting_no_devices_means_no_gpus(fake_gpus: FakeGpus) -> None:
    assert discover_in({**fake_gpus.env(), "FAKE_NVML_GPUS": "0"})["gpus"] == []


def test_a_broken_library_means_no_gpus(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "libnvidia-ml.so.1").write_bytes(b"not an ELF file")
    assert discover_in({"LD_LIBRARY_PATH": str(broken)})["gpus"] == []


KNOWN = [Gpu(i, "fake", f"GPU-{i}", 1024) for i in range(4)]


@pytest.mark.parametrize(
    ("text", "chosen"),
    [("all", [0, 1, 2, 3]), ("ALL", [0, 1, 2, 3]), ("2,0", [0, 2]), (" 1 , 1 ", [1]), ("none", [])],
)
def test_gpu_lists(text: str, chosen: list[int]) -> None:
    assert gpus.parse_gpu_list(text, KNOWN) == chosen


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,7", r"GPU 7 does not exist here; GPUs found: \[0, 1, 2, 3\]"),
        ("0,x", r"'x' is not a GPU index; use 'all' or e\.g\. 0,1"),
        ("-1", r"'-1' is not a GPU index"),
    ],
)
def test_bad_gpu_lists_name_what_exists(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gpus.parse_gpu_list(text, KNOWN)


def test_the_daemon_discovers_gpus_in_its_own_process(fake_gpus: FakeGpus, ws: Workspace) -> None:
    from runner import daemon_client

    daemon_client.ensure_daemon(ws.path)
    status = daemon_status(ws.path)
    assert status["gpus"] == [0, 1, 2, 3]
    assert status["freeGpus"] == [0, 1, 2, 3]
    assert "GPUs [0, 1, 2, 3]" in (ws.path / "daemon" / "daemon.log").read_text()


def test_settings_restrict_the_gpus_runs_may_use(
    fake_gpus: FakeGpus, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner import daemon_client

    monkeypatch.setenv("RUNNER_GPUS", "0,1")  # the settings file wins over the variable
    configure(ws, gpus="1,3")
    daemon_client.ensure_daemon(ws.path)
    assert daemon_status(ws.path)["gpus"] == [1, 3]


def test_a_gpu_named_in_the_settings_that_is_gone_does_not_open_the_others(
    fake_gpus: FakeGpus, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner import daemon_client

    configure(ws, gpus="1,3")
    monkeypatch.setenv("FAKE_NVML_GPUS", "2")  # GPU 3 fell off the bus
    daemon_client.ensure_daemon(ws.path)
    assert daemon_status(ws.path)["gpus"] == [1]
    log = (ws.path / "daemon" / "daemon.log").read_text()
    assert "GPU 3 does not exist here; GPUs found: [0, 1]; using GPUs [1]" in log


def test_the_gpu_variable_applies_without_a_settings_file(
    fake_gpus: FakeGpus, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner import daemon_client

    monkeypatch.setenv("RUNNER_GPUS", "2")
    daemon_client.ensure_daemon(ws.path)
    assert daemon_status(ws.path)["gpus"] == [2]


def test_without_gpus_a_run_asking_for_one_fails_with_the_reason(
    box: Box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-driver"
    empty.mkdir()
    monkeypatch.setenv("LD_LIBRARY_PATH", str(empty))
    run = box.submit(gpu_count=1)
    wait_status(run, "Failed")
    error = run.get_details()["error"]["error"]
    assert "asks for 1 GPU(s) (run_config.gpu_count) but this daemon has 0" in error["message"]
    assert box.started(run) is None
    # A run without GPUs still runs, and its visible devices are left as they were.
    free = box.submit(gpu_count=0)
    box.release(free)
    free.wait_for_completion(raise_on_error=True)
    view = box.started(free)
    assert view is not None
    assert view["cuda"] == os.environ.get("CUDA_VISIBLE_DEVICES")
