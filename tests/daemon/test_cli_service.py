"""`runner daemon start|stop|status` with --gpus/--max-concurrent/--system-metrics-s, and
the shipped systemd unit: its commands, run as systemd would run them.

The CLI runs as a separate process here: it discovers GPUs itself (for ``--gpus``), and
the dynamic loader only sees the fake NVML in a process started with it on
LD_LIBRARY_PATH.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from runner import daemon_client
from tests.daemon.conftest import (
    Box,
    FakeGpus,
    cli,
    daemon_status,
    raw_status,
    wait_details,
)
from tests.helpers import REPO, daemon_pid, wait_until

UNIT = REPO / "contrib" / "systemd" / "runner-daemon@.service"


def test_start_with_options_writes_the_settings_and_status_shows_gpu_use(
    box: Box, fake_gpus: FakeGpus
) -> None:
    ws = str(box.ws.path)
    started = cli(
        "daemon", "start", "-w", ws, "--gpus", "0,2", "--max-concurrent", "3",
        "--system-metrics-s", "0",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    answer = json.loads(started.stdout)
    assert answer["gpus"] == [0, 2]
    assert answer["maxConcurrent"] == 3
    assert answer["systemMetricsSeconds"] == 0
    settings = json.loads((box.ws.path / "daemon" / "settings.json").read_text())
    assert settings == {"gpus": "0,2", "max_concurrent": 3, "system_metrics_s": 0.0}

    runs = [box.submit(gpu_count=1) for _ in range(3)]
    wait_until(lambda: sum(box.started(r) is not None for r in runs) == 2, 30)
    (waiting,) = [r for r in runs if box.started(r) is None]
    wait_details(waiting, "waiting for 1 GPU(s): 0 of 2 free", exact=True)
    status = cli("daemon", "status", "-w", ws)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["running"] is True
    assert shown["pid"] == daemon_pid(box.ws.path)
    assert shown["gpus"] == [0, 2]
    assert shown["freeGpus"] == []
    assert sorted(ids for ids in shown["slots"].values()) == [[0], [2]]
    assert shown["queue"] == [waiting.id]
    queued = cli("run", "list", "-w", ws, "-e", box.exp.name, "--status", "Queued")
    assert [r["runId"] for r in json.loads(queued.stdout)] == [waiting.id]

    # Started again with other settings: the running daemon takes them at once.
    again = cli("daemon", "start", "-w", ws, "--gpus", "all")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["gpus"] == [0, 1, 2, 3]
    box.wait_started(waiting)  # a GPU came free for it
    assert box.gpus_of(waiting) == {1}
    box.release(*runs)
    for run in runs:
        run.wait_for_completion(raise_on_error=True)

    stopped = cli("daemon", "stop", "-w", ws)
    assert json.loads(stopped.stdout) == {"workspace": ws, "stopped": True}
    after = cli("daemon", "status", "-w", ws)
    assert json.loads(after.stdout) == {"running": False, "workspace": ws}


def test_bad_daemon_options_are_one_line_errors(box: Box, fake_gpus: FakeGpus) -> None:
    ws = str(box.ws.path)
    for argv, message in [
        (["--gpus", "0,7"], "GPU 7 does not exist here; GPUs found: [0, 1, 2, 3]"),
        (["--gpus", "first"], "'first' is not a GPU index"),
        (
            ["--max-concurrent", "-1"],
            "--max-concurrent is -1, which is not valid; use a whole number >= 0 (0: no limit)",
        ),
        (
            ["--system-metrics-s", "-5"],
            "--system-metrics-s is -5.0, which is not valid; use 0 to switch system metrics "
            "off, or seconds from 0.05 to 86400",
        ),
    ]:
        result = cli("daemon", "start", "-w", ws, *argv)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
    assert not daemon_client.is_running(box.ws.path)


def unit_commands(ws: Path) -> dict[str, list[str]]:
    """ExecStartPre/ExecStart of the shipped unit for workspace ``ws``, with systemd's
    specifiers expanded, ``/usr/bin/env runner`` made this interpreter's ``-m runner``."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    service = parser["Service"]
    assert service["KillMode"] == "process", "a stop of the service must not kill the runs"
    out = {}
    for key in ("ExecStartPre", "ExecStart"):
        line = service[key].lstrip("-")  # '-': a failure does not stop the unit
        line = line.replace("%f", str(ws)).replace("%h", str(Path.home()))
        argv = shlex.split(line)
        assert argv[:2] == ["/usr/bin/env", "runner"], argv
        out[key] = [sys.executable, "-m", "runner", *argv[2:]]
    return out


def test_the_systemd_unit_runs_a_foreground_daemon_that_takes_over_and_stops_cleanly(
    box: Box, fake_gpus: FakeGpus
) -> None:
    ws = box.ws.path
    commands = unit_commands(ws)
    assert commands["ExecStart"][3:] == [
        "daemon", "start", "--foreground", "-w", str(box.ws.path),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    # A submit started a daemon on demand; its run is going when the service starts.
    run = box.submit(gpu_count=1)
    box.wait_started(run)
    on_demand = daemon_pid(box.ws.path)
    pre = subprocess.run(commands["ExecStartPre"], env=env, capture_output=True, timeout=60)
    assert pre.returncode == 0, pre.stderr
    assert raw_status(run)[0] == "Running"  # stopping the daemon left the run going
    service = subprocess.Popen(
        commands["ExecStart"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: daemon_pid(box.ws.path) == service.pid and daemon_client.is_running(ws),
            30,
            message="the service's daemon to answer",
        )
        assert on_demand != service.pid
        status = daemon_status(box.ws.path)
        assert status["gpus"] == [0, 1, 2, 3]
        assert list(status["slots"]) == [run.id]  # re-adopted with its GPU
        wait_until(
            lambda: daemon_status(ws)["runs"] == {run.id: "running"},
            10,
            message="the service's daemon to watch the run",
        )
        # systemctl stop: SIGTERM to the main process only (KillMode=process).
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0, err
    assert f"re-adopted run {run.id}" in err  # its log goes to the journal
    assert box.ended(run) is None
    assert raw_status(run)[0] == "Running"  # the run outlived the service's stop
    box.release(run)
    daemon_client.ensure_daemon(box.ws.path)  # the next daemon finishes its bookkeeping
    run.wait_for_completion(raise_on_error=True)
    if shutil.which("systemd-analyze"):  # the unit is valid for systemd itself, too
        instance = box.ws.path.parent / "runner-daemon@tmp-ws.service"
        shutil.copy(UNIT, instance)
        checked = subprocess.run(
            ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
