"""Many processes on one workspace at once: nothing lost, no torn state, and a process
killed mid-logging leaves what it flushed intact and the workspace usable."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runner import Experiment, Run, Workspace
from tests.helpers import SCRIPTS, finish, run_script, script_env, start_script, wait_until

N_PROCS = 4


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _all_exist(paths):
    return all(p.exists() for p in paths)


def _started(procs, paths):
    """Wait for every process's ready file; a process that died first fails the test."""

    def ready():
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{proc.args} exited {proc.returncode} early:\n{out}\n{err}")
        return _all_exist(paths)

    wait_until(ready, timeout_s=60, message="every process to be ready")


@contextlib.contextmanager
def _processes(procs):
    """Kill whatever is still running when the block ends (a failure); reap all."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_four_processes_log_100k_values_each_and_nothing_is_lost(ws, exp, tmp_path):
    n = 100_000
    parent = exp.start_logging()
    ready = [tmp_path / f"ready-{i}.json" for i in range(N_PROCS)]
    outs = [tmp_path / f"out-{i}.json" for i in range(N_PROCS)]
    go = tmp_path / "go"
    procs = [
        start_script("log_values.py", ws.path, exp.name, parent.id, n, i, ready[i], go, outs[i])
        for i in range(N_PROCS)
    ]
    with _processes(procs):
        _started(procs, ready)
        go.touch()
        for proc in procs:
            finish(proc, timeout_s=120)
    results = [_read_json(p) for p in outs]
    children = {r.id for r in parent.get_children()}
    assert children == {r["child"] for r in results}
    for r in results:
        own = Run.get(ws, r["own"])
        child = Run.get(ws, r["child"])
        assert own.status == "Completed"
        assert child.status == "Completed"
        own_metrics = own.get_metrics()
        assert own_metrics["v"] == list(range(n))
        assert own_metrics["progress"]["i"] == list(range(0, n, 1000))
        stepped = child.get_metrics_with_steps("v")
        assert stepped["steps"] == list(range(n))
        assert stepped["values"] == [i * 0.5 for i in range(n)]
    shared = parent.get_metrics()["all"]
    assert sorted(shared) == list(range(N_PROCS * n)), "every process's values, none twice"
    for i in range(N_PROCS):
        mine = [v for v in shared if i * n <= v < (i + 1) * n]
        assert mine == list(range(i * n, (i + 1) * n)), "each process's values keep their order"
    recursive = parent.get_metrics(recursive=True)
    assert set(recursive) == {parent.id} | children
    assert all(len(recursive[c]["v"]) == n for c in children)
    numbers = [r.number for r in exp.get_runs(include_children=True)]
    assert len(numbers) == len(set(numbers)) == 1 + 2 * N_PROCS


def test_two_processes_adding_one_property_exactly_one_wins(ws, exp, tmp_path):
    keys = 40
    run = exp.start_logging()
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [
        start_script("add_property.py", ws.path, run.id, value, keys, ready[i], go, outs[i])
        for i, value in enumerate(["from-a", "from-b"])
    ]
    with _processes(procs):
        _started(procs, ready)
        go.touch()
        for proc in procs:
            finish(proc)
    a, b = _read_json(outs[0]), _read_json(outs[1])
    props = run.get_properties()
    assert len(props) == keys
    for j in range(keys):
        key = f"key{j}"
        outcomes = sorted([a[key], b[key]])
        assert outcomes[1] == "won", f"{key}: exactly one process wins: {outcomes}"
        assert outcomes[0].startswith("ConflictError: "), f"{key}: the other gets an error"
        winner = "from-a" if a[key] == "won" else "from-b"
        loser = "from-b" if winner == "from-a" else "from-a"
        assert props[key] == winner
        assert f"property '{key}' of run {run.id} is already '{winner}'" in outcomes[0]
        assert f"cannot become '{loser}'" in outcomes[0]


@pytest.mark.parametrize("kill_after", [5_000, 40_000, 150_000])
def test_a_process_killed_mid_logging_keeps_what_it_flushed(ws, exp, tmp_path, kill_after):
    state = tmp_path / "state.json"
    proc = start_script("log_until_killed.py", ws.path, exp.name, state)
    with _processes([proc]):
        # Let it flush a few times, so the kill lands while it is busy logging.
        info = wait_until(
            lambda: (
                state.exists() and _read_json(state)["flushed"] >= kill_after and _read_json(state)
            ),
            timeout_s=60,
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    flushed = _read_json(state)["flushed"]
    assert flushed >= info["flushed"]
    with contextlib.closing(sqlite3.connect(ws.path / "runner.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # A fresh process opens the workspace cleanly and can write to it.
    reopened = Workspace(ws.path)
    values = Run.get(reopened, info["id"]).get_metrics()["v"]
    assert len(values) >= flushed
    assert values == list(range(len(values))), "what was stored is a gapless prefix"
    fresh = tmp_path / "fresh.json"
    run_script("log_then_exit.py", ws.path, "after-kill", 10, fresh)  # a new process opens it
    assert Run.get(reopened, _read_json(fresh)["id"]).get_metrics()["v"] == list(range(10))
    after = Experiment(reopened, "after-kill").start_logging()
    after.log("ok", 1)
    after.complete()
    assert Run.get(reopened, after.id).get_metrics() == {"ok": 1}


def test_processes_first_open_a_fresh_default_workspace_at_once(tmp_path, isolated_runner_home):
    """Zero config, racing: four new processes create the default workspace together."""
    per_proc = 10
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(N_PROCS)]
    outs = [tmp_path / f"out-{i}.json" for i in range(N_PROCS)]
    procs = [
        start_script("create_runs.py", "race", per_proc, ready[i], go, outs[i])
        for i in range(N_PROCS)
    ]
    with _processes(procs):
        _started(procs, ready)
        go.touch()
        for proc in procs:
            finish(proc)
    results = [_read_json(p) for p in outs]
    assert {r["workspace"] for r in results} == {str(isolated_runner_home.resolve())}
    made = [run for r in results for run in r["runs"]]
    numbers = sorted(run["number"] for run in made)
    assert numbers == list(range(1, N_PROCS * per_proc + 1)), "run numbers are unique, no gaps"
    ws = Workspace(isolated_runner_home)
    runs = list(Experiment(ws, "race").get_runs())
    assert {r.id for r in runs} == {run["id"] for run in made}
    assert all(r.get_metrics() == {"pid_marker": 1} for r in runs)


def test_concurrent_keyvault_writers_lose_no_secret(ws, tmp_path):
    per_proc = 15
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(N_PROCS)]
    procs = [
        start_script("keyvault_writer.py", ws.path, f"w{i}", per_proc, ready[i], go)
        for i in range(N_PROCS)
    ]
    with _processes(procs):
        _started(procs, ready)
        go.touch()
        for proc in procs:
            finish(proc)
    kv = ws.get_default_keyvault()
    names = {s["name"] for s in kv.list_secrets()}
    assert names == {f"w{i}-{j}" for i in range(N_PROCS) for j in range(per_proc)}
    assert kv.get_secret("w3-14") == "value of w3 14"


def test_readers_never_see_half_a_batch_of_children(ws, exp, tmp_path):
    batches, size = 30, 20
    done = tmp_path / "done"
    proc = start_script("children_batches.py", ws.path, exp.name, batches, size, done)
    seen_counts: set[int] = set()

    def check_once() -> bool:
        for parent in exp.get_runs():
            count = len(list(parent.get_children()))
            seen_counts.add(count)
            assert count in (0, size), f"a reader saw {count} of {size} children"
        return done.exists()

    with _processes([proc]):
        wait_until(check_once, timeout_s=60, interval_s=0.001)
        finish(proc)
    check_once()
    assert seen_counts >= {size}
    assert len(list(exp.get_runs())) == batches


def test_processes_store_files_and_register_models_at_once(ws, exp, tmp_path):
    count = 10
    shared = tmp_path / "shared.bin"
    shared.write_bytes(os.urandom(256 * 1024))
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(N_PROCS)]
    outs = [tmp_path / f"out-{i}.json" for i in range(N_PROCS)]
    procs = [
        start_script(
            "upload_and_register.py", ws.path, exp.name, i, count, shared, ready[i], go, outs[i]
        )
        for i in range(N_PROCS)
    ]
    with _processes(procs):
        _started(procs, ready)
        go.touch()
        for proc in procs:
            finish(proc)
    results = [_read_json(p) for p in outs]
    versions = sorted(v for r in results for v in r["versions"])
    assert versions == list(range(1, N_PROCS * count + 1)), "model versions are unique"
    for i, r in enumerate(results):
        run = Run.get(ws, r["id"])
        assert len(run.get_file_names()) == 2 * count
        got = Path(run.download_file("shared/3.bin", tmp_path / f"s{i}.bin")).read_bytes()
        assert got == shared.read_bytes()
        own = Path(run.download_file("own/7.txt", tmp_path / f"o{i}.txt")).read_text("utf-8")
        assert own == f"process {i} file 7"
    assert not list((ws.path / "blobs").rglob(".tmp-*")), "no temporary blob is left"


def test_a_forked_child_logging_through_a_run_made_before_the_fork(ws, tmp_path):
    """multiprocessing's fork workers use the parent's Run objects: flush() keeps them."""
    out = tmp_path / "out.json"
    run_script("log_after_fork.py", ws.path, "fork", out)
    info = _read_json(out)
    assert info["child_exit"] == 0
    assert info["second_exit"] == 0
    run = Run.get(ws, info["id"])
    metrics = run.get_metrics()
    assert sorted(metrics["v"]) == list(range(1001)) + list(range(2000, 2100))
    assert metrics["pending_in_parent"] == 1, "written once, by the parent"
    stepped = run.get_metrics_with_steps("s")
    assert sorted(zip(stepped["steps"], stepped["values"])) == [(i, float(i)) for i in range(1001)]
    assert metrics["child_row"] == {"i": [1]}
    assert metrics["child_only"] == 7


# -- the suite's own process leak check ------------------------------------------------


@pytest.mark.slow
def test_the_leak_check_fails_a_test_that_leaves_a_process_and_kills_it(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "conftest.py", inner / "conftest.py")
    shutil.copy(SCRIPTS / "leaves_a_process.py", inner / "test_leak.py")
    pid_file = tmp_path / "leaked.pid"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(inner), "-q", "-p", "no:cacheprovider", "-rA"],
        env=script_env({"LEAK_PID_FILE": str(pid_file), "RUNNER_TESTS_LEAK_GRACE_S": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=inner,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "3 passed, 1 error" in out, out
    assert "ERROR test_leak.py::test_leaves_a_sleeper_behind" in out, out
    leaked = int(pid_file.read_text(encoding="utf-8"))
    assert f"the test left 1 process(es) running:\n  pid {leaked} " in out, out
    assert "time.sleep(60)" in out
    # The leftover was killed, so nothing outlives the inner session.
    wait_until(lambda: not _alive(leaked), timeout_s=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
