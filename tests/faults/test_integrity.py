"""Issue 12 item 4: a damaged blob is an error where it leaves the store, storing it again
repairs it, and ``runner workspace check [--repair]`` finds and fixes what it can.

Every step runs in its own process (a script or the CLI); the test process opens no
workspace, it only damages files as a disk or a person would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import script_env

ALPHA = b"alpha: an output of the run\n"
BETA = b"print('beta: the training script')\n"
GAMMA = b"gamma: the model's weights\n"

SETUP = """
import json, sys
from pathlib import Path
from runner import Experiment, Model, Workspace

root = Path(sys.argv[1])
ws = Workspace.create(root / "ws")
src = root / "src"
run = Experiment(ws, "integrity").start_logging()
run.upload_file("outputs/a.txt", str(root / "a.txt"))
snap = run.take_snapshot(str(src))
run.set_tags({f"tag{i:03d}": "v" * 60 for i in range(400)})  # a database of many pages
Model.register(ws, str(root / "model.bin"), "weights")
run.complete()
print(json.dumps({"run": run.id, "snapshot": snap}))
"""


def py(code: str, *args: object, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=timeout_s,
        check=False,
    )


def cli(*args: object, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return py(
        "import sys; from runner.cli import main; sys.exit(main())", *args, timeout_s=timeout_s
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(ws: Path, digest: str) -> Path:
    return ws / "blobs" / digest[:2] / digest[2:]


def flip(path: Path, at: int = 3) -> None:
    """Flip one byte of a file in place, as a bad disk sector would."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runner: error: "), lines[0]
    return lines[0]


def check(ws: Path, *extra: str) -> tuple[int, dict]:
    proc = cli("-w", ws, "workspace", "check", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)  # strict JSON: json.loads refuses NaN only by choice,
    json.dumps(report, allow_nan=False)  # so also prove nothing non-finite is in it
    return proc.returncode, report


@pytest.fixture
def made(tmp_path: Path) -> dict:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_bytes(BETA)
    (tmp_path / "a.txt").write_bytes(ALPHA)
    (tmp_path / "model.bin").write_bytes(GAMMA)
    proc = py(SETUP, tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["ws"] = tmp_path / "ws"
    return info


# -- reads that leave the store ------------------------------------------------------------


def test_a_flipped_byte_fails_the_download_naming_blob_and_file_and_storing_again_repairs(
    made, tmp_path
):
    ws, run_id, digest = made["ws"], made["run"], sha(ALPHA)
    flip(blob(ws, digest))
    out = tmp_path / "out"

    proc = cli("-w", ws, "run", "download", "-r", run_id, "-d", out)
    line = one_line_error(proc)
    assert proc.returncode == 1
    assert digest in line
    assert f"file 'outputs/a.txt' of run {run_id}" in line
    assert "store the same file again" in line
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), "half-written file"

    api = py(
        "import sys\n"
        "from runner import Run, Workspace\n"
        "from runner.errors import StoreError\n"
        "run = Run.get(Workspace(sys.argv[1]), sys.argv[2])\n"
        "try:\n"
        "    run.download_file('outputs/a.txt', sys.argv[3])\n"
        "except StoreError as exc:\n"
        "    print('StoreError', exc)\n",
        ws,
        run_id,
        tmp_path / "single.txt",
    )
    assert api.stdout.startswith("StoreError file 'outputs/a.txt'"), api.stdout + api.stderr
    assert digest in api.stdout
    assert not (tmp_path / "single.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []

    # Storing the same content again (another run uploads the same file) repairs it.
    again = py(
        "import sys\n"
        "from runner import Experiment, Workspace\n"
        "run = Experiment(Workspace(sys.argv[1]), 'again').start_logging()\n"
        "run.upload_file('copy.txt', sys.argv[2])\n"
        "run.complete()\n",
        ws,
        tmp_path / "a.txt",
    )
    assert again.returncode == 0, again.stderr
    proc = cli("-w", ws, "run", "download", "-r", run_id, "-d", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "outputs" / "a.txt").read_bytes() == ALPHA


def test_a_big_blob_stored_by_stream_is_repaired_by_storing_it_again(tmp_path):
    """put_stream (big uploads) replaces a damaged copy, put_bytes (small ones) too."""
    big = os.urandom(3 << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    code = (
        "import sys\n"
        "from runner import Experiment, Workspace\n"
        "ws = Workspace.create(sys.argv[1], exist_ok=True)\n"
        "run = Experiment(ws, 'big').start_logging()\n"
        "run.upload_file('big.bin', sys.argv[2])\n"
        "run.complete()\n"
        "print(run.id)\n"
    )
    first = py(code, tmp_path / "ws", src)
    assert first.returncode == 0, first.stderr
    flip(blob(tmp_path / "ws", sha(big)), at=(2 << 20) + 5)
    assert check(tmp_path / "ws")[0] == 1
    assert py(code, tmp_path / "ws", src).returncode == 0
    assert blob(tmp_path / "ws", sha(big)).read_bytes() == big
    rc, report = check(tmp_path / "ws")
    assert (rc, report["damagedBlobs"]) == (0, []), report


def test_a_flipped_snapshot_file_fails_materialize_and_restore_snapshot(made, tmp_path):
    ws, run_id, snap, digest = made["ws"], made["run"], made["snapshot"], sha(BETA)
    flip(blob(ws, digest))
    code = (
        "import sys\n"
        "from runner import Run, Workspace\n"
        "from runner.errors import StoreError\n"
        "from runner.snapshot import load_snapshot, materialize\n"
        "ws = Workspace(sys.argv[1])\n"
        "run = Run.get(ws, sys.argv[2])\n"
        "try:\n"
        "    materialize(load_snapshot(ws._blobs, sys.argv[3]), ws._blobs, sys.argv[4])\n"
        "except StoreError as exc:\n"
        "    print('materialize StoreError', exc)\n"
        "try:\n"
        "    run.restore_snapshot(path=sys.argv[5])\n"
        "except StoreError as exc:\n"
        "    print('restore StoreError', exc)\n"
    )
    proc = py(code, ws, run_id, snap, tmp_path / "work", tmp_path / "snap.zip")
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr
    for line, what in zip(lines, ("materialize", "restore")):
        assert line.startswith(f"{what} StoreError file 'train.py' of snapshot {snap}"), line
        assert digest in line
        assert "does not match its content hash" in line
    assert not (tmp_path / "work" / "train.py").exists()
    assert not (tmp_path / "snap.zip").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []

    # A snapshot of another folder with the same small file stores it again (put_bytes,
    # which compares the stored bytes before it skips the write) and so repairs it.
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.py").write_bytes(BETA)
    again = py(
        "import sys\n"
        "from runner import Run, Workspace\n"
        "Run.get(Workspace(sys.argv[1]), sys.argv[2]).take_snapshot(sys.argv[3])\n",
        ws,
        run_id,
        other,
    )
    assert again.returncode == 0, again.stderr
    proc = py(code, ws, run_id, snap, tmp_path / "work2", tmp_path / "snap2.zip")
    assert proc.stdout == "", proc.stdout
    assert (tmp_path / "work2" / "train.py").read_bytes() == BETA
    assert (tmp_path / "snap2.zip" / f"{snap}.zip").is_file()  # v1: path is a folder


def test_a_flipped_model_file_fails_the_model_download(made, tmp_path):
    ws, digest = made["ws"], sha(GAMMA)
    flip(blob(ws, digest))
    proc = py(
        "import sys\n"
        "from runner import Model, Workspace\n"
        "from runner.errors import StoreError\n"
        "try:\n"
        "    Model(Workspace(sys.argv[1]), 'weights').download(sys.argv[2])\n"
        "except StoreError as exc:\n"
        "    print('StoreError', exc)\n",
        ws,
        tmp_path / "dl",
    )
    assert proc.stdout.startswith("StoreError file 'model.bin' of model weights:1"), (
        proc.stdout + proc.stderr
    )
    assert digest in proc.stdout
    assert not (tmp_path / "dl" / "model.bin").exists()


# -- runner workspace check ----------------------------------------------------------------


def test_check_of_a_clean_workspace_exits_0(made):
    rc, report = check(made["ws"])
    assert rc == 0, report
    assert report["ok"] is True
    assert report["database"] == {"ok": True, "problems": []}
    assert report["blobs"]["checked"] >= 4  # a.txt, train.py, its manifest, model.bin
    assert report["referencesComplete"] is True


def test_check_finds_a_damaged_blob_repair_removes_it_and_storing_again_makes_it_clean(
    made, tmp_path
):
    ws, run_id, digest = made["ws"], made["run"], sha(ALPHA)
    flip(blob(ws, digest))
    rc, report = check(ws)
    assert rc == 1
    assert [b["digest"] for b in report["damagedBlobs"]] == [digest]
    assert report["damagedBlobs"][0]["usedBy"] == [f"file 'outputs/a.txt' of run {run_id}"]
    assert report["damagedBlobs"][0]["hashesTo"] != digest

    rc, report = check(ws, "--repair")
    assert rc == 0, report
    assert any(digest in line for line in report["repaired"])
    assert not blob(ws, digest).exists()

    rc, report = check(ws)  # honest: the content is gone until stored again
    assert rc == 1
    assert [b["digest"] for b in report["missingBlobs"]] == [digest]

    store = py(
        "import sys\n"
        "from runner import Experiment, Workspace\n"
        "run = Experiment(Workspace(sys.argv[1]), 'again').start_logging()\n"
        "run.upload_file('a.txt', sys.argv[2])\n"
        "run.complete()\n",
        ws,
        tmp_path / "a.txt",
    )
    assert store.returncode == 0, store.stderr
    assert check(ws)[0] == 0


def test_check_finds_a_missing_blob_and_the_cli_says_so_in_one_line(made, tmp_path):
    ws, snap, digest = made["ws"], made["snapshot"], sha(BETA)
    blob(ws, digest).unlink()
    rc, report = check(ws)
    assert rc == 1
    assert [b["digest"] for b in report["missingBlobs"]] == [digest]
    assert report["missingBlobs"][0]["usedBy"] == [f"file 'train.py' of snapshot {snap}"]

    rc, report = check(ws, "--repair")  # nothing can bring it back but storing it again
    assert rc == 1
    assert any(digest in line for line in report["notRepaired"])

    proc = py(
        "import sys\n"
        "from runner import Run, Workspace\n"
        "Run.get(Workspace(sys.argv[1]), sys.argv[2]).restore_snapshot(path=sys.argv[3])\n",
        ws,
        made["run"],
        tmp_path / "s.zip",
    )
    assert "StoreError: file 'train.py' of snapshot" in proc.stderr
    assert "is missing from the workspace" in proc.stderr


def test_check_finds_orphans_stray_run_folders_and_stuck_runs_and_repair_fixes_them(made):
    ws = made["ws"]
    old = time.time() - 2 * 3600
    orphan_data, young_data = b"nobody names me\n", b"a submit is writing me\n"
    for data, mtime in ((orphan_data, old), (young_data, time.time())):
        path = blob(ws, sha(data))
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
    stray = ws / "runs" / "ghost_1700000000_0123456789abcdef"
    (stray / "logs").mkdir(parents=True)
    os.utime(stray, (old, old))
    # An interactive run whose process dies without complete().
    died = py(
        "import os, signal, sys\n"
        "from runner import Experiment, Workspace\n"
        "run = Experiment(Workspace(sys.argv[1]), 'crash').start_logging()\n"
        "print(run.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        ws,
    )
    stuck_id = died.stdout.strip()
    assert died.returncode == -9, died.stderr
    assert stuck_id

    rc, report = check(ws)
    assert rc == 1
    assert report["orphanBlobs"] == [sha(orphan_data)]
    assert report["recentUnreferenced"] == 1  # the young one is not a problem
    assert report["strayRunFolders"] == [stray.name]
    assert [r["runId"] for r in report["stuckRuns"]] == [stuck_id]
    assert report["stuckRuns"][0]["status"] == "Running"

    rc, report = check(ws, "--repair")
    assert rc == 0, report
    assert report["notRepaired"] == []
    assert not blob(ws, sha(orphan_data)).exists()
    assert blob(ws, sha(young_data)).exists()
    assert not stray.exists()

    status = cli("-w", ws, "run", "show", "-r", stuck_id)
    assert json.loads(status.stdout)["status"] == "Failed", status.stdout + status.stderr
    rc, report = check(ws)
    assert rc == 0, report


def _garble_page(db: Path, page: int) -> None:
    size = 4096
    with open(db, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xa5" * size)


def test_check_reports_a_damaged_database_page_and_repair_deletes_nothing(made, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(made["ws"], copy)
    db = copy / "runner.db"
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    pages = db.stat().st_size // 4096
    assert pages > 10
    _garble_page(db, pages // 2)
    blobs_before = sorted(p.name for p in (copy / "blobs").rglob("*") if p.is_file())

    rc, report = check(copy)
    assert rc == 1
    assert report["database"]["ok"] is False
    assert report["database"]["problems"], report
    assert report["referencesComplete"] is False
    rc, report = check(copy, "--repair")
    assert rc == 1
    assert any("runner.db" in line for line in report["notRepaired"])
    assert sorted(p.name for p in (copy / "blobs").rglob("*") if p.is_file()) == blobs_before


def test_a_damaged_page_under_the_runs_table_is_a_one_line_cli_error(made):
    db = made["ws"] / "runner.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (root_page,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'runs'"
        ).fetchone()
    conn.close()
    _garble_page(db, root_page)
    line = one_line_error(cli("-w", made["ws"], "run", "list", "-e", "integrity"))
    assert "is damaged" in line
    assert "restore runner.db from a backup" in line


SUBMIT = """
import sys
from runner import Experiment, ScriptRunConfig, Workspace
ws = Workspace.create(sys.argv[1], exist_ok=True)
run = Experiment(ws, "submitted").submit(ScriptRunConfig(sys.argv[2], "hello.py"))
run.wait_for_completion(raise_on_error=False)
error = (run.get_details().get("error") or {}).get("error", {}).get("message", "")
print(run.get_status(), error.splitlines()[0] if error else "")
"""


def test_a_submitted_run_of_a_damaged_snapshot_fails_saying_so_and_repair_then_submit_runs(
    tmp_path,
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.py").write_bytes(BETA)
    old = time.time() - 3600  # not "racy": the snapshot's stat cache will vouch for it
    os.utime(src / "hello.py", (old, old))
    ws = tmp_path / "ws"
    try:
        first = py(SUBMIT, ws, src, timeout_s=120)
        assert first.stdout.split()[0] == "Completed", first.stdout + first.stderr
        # The first run's working folder is kept for the next run (runner.service.workcopy), which
        # then needs no blob at all: without it, the damaged blob has to be read.
        shutil.rmtree(ws / "work")
        flip(blob(ws, sha(BETA)))
        second = py(SUBMIT, ws, src, timeout_s=120)
        assert second.stdout.startswith("Failed file 'hello.py' of snapshot"), (
            second.stdout + second.stderr
        )
        assert sha(BETA) in second.stdout
        assert check(ws, "--repair")[0] == 0
        third = py(SUBMIT, ws, src, timeout_s=120)  # the file is stored again at submit
        assert third.stdout.split()[0] == "Completed", third.stdout + third.stderr
        assert check(ws)[0] == 0
    finally:
        cli("-w", ws, "daemon", "stop")


PACKED = """
import json, sys
from runner import Experiment, Workspace
from runner.artifacts import BlobStore
ws = Workspace.create(sys.argv[1], exist_ok=True)
run = Experiment(ws, "packed").start_logging()
snap = run.take_snapshot(sys.argv[2])
run.complete()
print(json.dumps({"run": run.id, "snapshot": snap, "packed": {
    d: [p, o] for d, (p, o, _) in BlobStore(ws.path / "blobs").packed().items()}}))
"""


def test_a_damaged_packed_file_is_found_repaired_and_stored_again(tmp_path):
    """Small snapshot files are packed (runner.artifacts): the check reads every packed
    blob, --repair writes the pack again without the damaged one, the next snapshot stores
    it again, and the workspace is whole."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}.py").write_text(f"# file {i}\n" * 4)
    ws = tmp_path / "ws"
    made = json.loads(py(PACKED, ws, src).stdout)
    digest = sha((src / "f7.py").read_bytes())
    pack, offset = made["packed"][digest]
    os.chmod(pack, 0o600)
    with open(pack, "r+b") as f:
        f.seek(offset + 1)
        f.write(b"#")
    rc, report = check(ws)
    assert rc == 1, report
    assert [b["digest"] for b in report["damagedBlobs"]] == [digest]
    assert report["damagedBlobs"][0]["usedBy"] == [f"file 'f7.py' of snapshot {made['snapshot']}"]
    assert report["blobs"]["checked"] >= 41
    rc, report = check(ws, "--repair")
    assert rc == 0, report
    rc, report = check(ws)
    assert [b["digest"] for b in report["missingBlobs"]] == [digest], report
    py(PACKED, ws, src)  # the same folder again: the file is stored again
    rc, report = check(ws)
    assert (rc, report["damagedBlobs"], report["missingBlobs"]) == (0, [], []), report
