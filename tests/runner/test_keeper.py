"""The keeper (runner/keeper.py) as the daemon uses it: a real keeper process per test,
given its spec through the pipe, watched from here.

What it must hold: a run starts at most once (a second keeper for the same run refuses),
exit codes as a shell reports them, cancel (SIGTERM) reaching processes that escaped into
their own session with a cleared environment, SIGKILL after the grace period for those
that ignore SIGTERM, and nothing of the run left when its script ends.
"""

from __future__ import annotations

import json
import marshal
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner import keeper as keeper_mod
from targets.keepers import KeeperFactory
from tests.helpers import require_cgroups, wait_until

KEEPER = Path(keeper_mod.__file__)

#: A script that double-forks a `setsid env -i sleep` away from its tree, writes the
#: escaped pid to argv[1] and then does what argv[2] says: "exit", "hold" or "deaf"
#: (hold, ignoring SIGTERM).
ESCAPER = """
import os, signal, shutil, sys, time
out, mode = sys.argv[1], sys.argv[2]
sleep = shutil.which("sleep")
if os.fork() == 0:
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.execve(sleep, ["sleep", "600"], {})
    with open(out + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(out + ".tmp", out)
    os._exit(0)
os.wait()
if mode == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode != "exit":
    print("holding", flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Kept:
    """One keeper process and the files of its run."""

    def __init__(
        self, tmp_path: Path, argv: list[str], name: str = "run", start: bool = True, **extra: Any
    ) -> None:
        self.dir = tmp_path / name
        self.dir.mkdir(exist_ok=True)
        (self.dir / "work").mkdir(exist_ok=True)
        self.exit_file = self.dir / "exit_code"
        self.log = self.dir / "driver.log"
        self.spec = {
            "run_id": f"keeper-test-{name}",
            "argv": argv,
            "env": {"PATH": os.environ["PATH"], "RUNNER_RUN_ID": f"keeper-test-{name}"},
            "workdir": str(self.dir / "work"),
            "driver_log": str(self.log),
            "exit_file": str(self.exit_file),
            "started": str(self.dir / "started"),
            "grace_s": 1.0,
            "leftover_grace_s": 1.0,
            "cgroup": False,
            **extra,
        }
        if not start:  # the test hands the spec to a factory itself
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(KEEPER)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(marshal.dumps(self.spec))
        self.proc.stdin.close()

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def test_exit_codes_are_the_scripts_and_a_signal_is_128_plus_n(tmp_path: Path) -> None:
    ok = Kept(tmp_path, [sys.executable, "-c", "print('hi')"], "ok")
    assert ok.wait() == 0
    assert ok.exit_file.read_text().strip() == "0"
    assert ok.text() == "hi\n"
    bad = Kept(tmp_path, [sys.executable, "-c", "import sys; sys.exit(3)"], "bad")
    assert bad.wait() == 3
    killed = Kept(tmp_path, [sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], "kill")
    assert killed.wait() == 128 + signal.SIGKILL
    assert killed.exit_file.read_text().strip() == str(128 + signal.SIGKILL)
    missing = Kept(tmp_path, ["no-such-program-here"], "missing")
    assert missing.wait() == 127
    assert "cannot run 'no-such-program-here'" in missing.text()


def test_the_script_runs_in_the_work_folder_with_the_given_environment(tmp_path: Path) -> None:
    probe = "import os; print(os.getcwd()); print(','.join(os.environ)); print(os.getsid(0))"
    kept = Kept(tmp_path, [sys.executable, "-c", probe])
    assert kept.wait() == 0
    cwd, names, sid = kept.text().splitlines()
    assert cwd == kept.spec["workdir"]
    # exactly the spec's variables (Python itself may add LC_CTYPE: PEP 538)
    assert set(names.split(",")) - {"LC_CTYPE"} == {"PATH", "RUNNER_RUN_ID"}
    assert int(sid) == kept.proc.pid  # the keeper leads the run's session


def test_a_run_is_started_at_most_once(tmp_path: Path) -> None:
    """A second keeper for the same run (same started file) refuses and runs nothing."""
    ledger = tmp_path / "ledger"
    argv = [sys.executable, "-c", f"open({str(ledger)!r}, 'a').write('x')"]
    first = Kept(tmp_path, argv)
    assert first.wait() == 0
    second = Kept(tmp_path, argv)
    assert second.wait() == keeper_mod.ALREADY_STARTED
    assert ledger.read_text() == "x"
    assert "was started before" in second.text()


@pytest.mark.parametrize("cgroup", [False, True], ids=["subreaper", "cgroup"])
@pytest.mark.parametrize("mode", ["hold", "deaf"])
def test_cancel_ends_every_process_even_the_escaped_ones(
    tmp_path: Path, mode: str, cgroup: bool
) -> None:
    """SIGTERM to the keeper: the script and a setsid + env -i grandchild both end; one
    that ignores SIGTERM is killed after the grace period. Both with the run in a cgroup
    of its own and with the subreaper alone."""
    if cgroup:
        require_cgroups()
    out = tmp_path / "escaped.pid"
    kept = Kept(tmp_path, [sys.executable, "-c", ESCAPER, str(out), mode], cgroup=cgroup)
    wait_until(lambda: "holding" in kept.text(), 30, message="the script to hold")
    escaped = int(out.read_text())
    assert _alive(escaped)
    started = json.loads((kept.dir / "started").read_text())
    assert started["pid"] == kept.proc.pid
    # the identity a restarted daemon reattaches by: psutil's create time, exactly
    assert abs(started["create_time"] - psutil.Process(kept.proc.pid).create_time()) < 0.01
    if cgroup:
        assert started["cgroup"], started
        procs = Path(started["cgroup"], "cgroup.procs").read_text().split()
        assert str(escaped) in procs  # it could leave the session, not the cgroup
    else:
        assert started["cgroup"] is None
    t0 = time.monotonic()
    kept.proc.terminate()
    code = kept.wait()
    took = time.monotonic() - t0
    assert not _alive(escaped), "the escaped process outlived the cancel"
    if mode == "deaf":
        assert code == 128 + signal.SIGKILL
        assert 0.9 <= took < 5.0, took
    else:
        assert code == 128 + signal.SIGTERM
        assert took < 0.9, took
    if cgroup:
        assert not Path(started["cgroup"]).exists(), "the run's cgroup was left behind"


def test_what_a_finished_script_leaves_running_is_stopped(tmp_path: Path) -> None:
    out = tmp_path / "escaped.pid"
    kept = Kept(tmp_path, [sys.executable, "-c", ESCAPER, str(out), "exit"])
    assert kept.wait() == 0
    assert not _alive(int(out.read_text()))
    assert "left 1 process(es) running" in kept.text()
    assert kept.exit_file.read_text().strip() == "0"


def test_an_idle_keeper_leaves_quietly_when_its_pipe_closes() -> None:
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(KEEPER)], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_the_factory_hands_each_spec_to_a_ready_keeper_and_leaves_nothing(tmp_path: Path) -> None:
    """The daemon's path: KeeperFactory forks keepers ahead of need; each launch gets a
    keeper of its own (its own session, the run's cgroup when cgroups are usable); closing
    the factory ends it and its idle keeper, and removes the idle keeper's cgroup."""
    factory = KeeperFactory(cache_dir=tmp_path)
    ledger = tmp_path / "ledger"
    script = f"import os; open({str(ledger)!r}, 'a').write(f'{{os.getsid(0)}}\\n')"
    runs = [Kept(tmp_path, [sys.executable, "-c", script], f"f{i}", start=False) for i in range(3)]
    try:
        pids = [factory.launch(marshal.dumps(run.spec)).pid for run in runs]
        for run in runs:
            wait_until(run.exit_file.exists, 30, message=f"{run.dir.name} to end")
            assert run.exit_file.read_text().strip() == "0"
        assert len(set(pids)) == 3
        assert sorted(map(int, ledger.read_text().split())) == sorted(pids)  # session leaders
        idle = factory._proc
        assert idle is not None
        spare = [p for p in psutil.Process(idle.pid).children() if p.pid not in pids]
        assert len(spare) == 1, "one idle keeper waits for the next spec"
        spare_cgroup = Path(f"/proc/{spare[0].pid}/cgroup").read_text()
    finally:
        factory.close()
    assert idle.poll() is not None
    wait_until(lambda: not spare[0].is_running(), 10, message="the idle keeper to leave")
    name = spare_cgroup.strip().rsplit("/", 1)[-1]
    if name.startswith("runner-keeper-"):  # where cgroups are usable
        parent = keeper_mod.own_cgroup_dir()
        assert parent is not None
        assert not (Path(parent) / name).exists(), "the idle keeper's cgroup was left behind"
