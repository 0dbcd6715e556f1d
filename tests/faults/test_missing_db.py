"""Issue 12 item 5: a workspace whose runner.db is missing or empty while it held data is
an error that says so, never a silently empty workspace; a workspace deleted and created
again in one process gets a new database.

The workspace is made, damaged and opened by separate processes; the test process opens
no workspace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import script_env

SETUP = """
import sys
from runner import Experiment, Workspace
ws = Workspace.create(sys.argv[1])
run = Experiment(ws, "kept").start_logging()
run.upload_file("outputs/x.txt", sys.argv[2])
run.complete()
print(run.id)
"""

OPEN = """
import sys
from runner import Experiment, Workspace
from runner.errors import StoreError
try:
    ws = Workspace(sys.argv[1])
except StoreError as exc:
    print("StoreError", exc)
else:
    print("opened", [r.id for r in Experiment(ws, "kept").get_runs()])
"""


def py(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=60,
        check=False,
    )


@pytest.fixture
def made(tmp_path: Path) -> Path:
    (tmp_path / "x.txt").write_text("kept output\n")
    proc = py(SETUP, tmp_path / "ws", tmp_path / "x.txt")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "ws"


def _remove_db(ws: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ws / 'runner.db'}{suffix}").unlink(missing_ok=True)


def _assert_refused(ws: Path, state: str) -> None:
    proc = py("import sys; from runner.cli import main; sys.exit(main())", "-w", ws, "run", "list")
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"runner: error: the workspace database {ws / 'runner.db'} is {state}"
    )
    assert "restore runner.db from a backup" in lines[0]
    api = py(OPEN, ws)
    assert api.stdout.startswith(
        f"StoreError the workspace database {ws / 'runner.db'} is {state}"
    ), api.stdout + api.stderr
    # Refusing wrote nothing: no new database was made in its place.
    db = ws / "runner.db"
    assert not db.exists() or db.stat().st_size == 0


def test_workspace_json_records_that_the_database_was_made(made):
    assert json.loads((made / "workspace.json").read_text())["database"] is True


def test_a_deleted_database_is_an_error_not_an_empty_workspace(made):
    _remove_db(made)
    _assert_refused(made, "missing")


def test_a_truncated_database_is_an_error_not_an_empty_workspace(made):
    _remove_db(made)
    (made / "runner.db").write_bytes(b"")
    _assert_refused(made, "empty (0 bytes)")


def test_an_old_workspace_without_the_flag_is_judged_by_its_runs_and_blobs(made, tmp_path):
    meta = made / "workspace.json"
    info = json.loads(meta.read_text())
    del info["database"]
    meta.write_text(json.dumps(info))
    _remove_db(made)
    _assert_refused(made, "missing")

    # An old workspace that holds nothing yet opens, and gains the flag.
    fresh = tmp_path / "fresh"
    (fresh / "blobs").mkdir(parents=True)
    (fresh / "runs").mkdir()
    (fresh / "workspace.json").write_text(json.dumps({"name": "fresh", "format": 1}))
    assert py(OPEN, fresh).stdout.strip() == "opened []"
    assert json.loads((fresh / "workspace.json").read_text())["database"] is True


def test_create_after_the_folder_was_deleted_in_the_same_process_makes_a_new_database(tmp_path):
    code = """
import shutil, sys
from pathlib import Path
from runner import Experiment, Workspace
path = Path(sys.argv[1])
first = Workspace.create(path)
Experiment(first, "old").start_logging().complete()
shutil.rmtree(path)
second = Workspace.create(path)
assert list(second.experiments) == [], "the deleted database was reused"
run = Experiment(second, "new").start_logging()
run.complete()
print(run.id)
"""
    proc = py(code, tmp_path / "ws")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    seen = py(
        "import sys\n"
        "from runner import Workspace\n"
        "ws = Workspace(sys.argv[1])\n"
        "print(sorted(ws.experiments), [r.id for r in ws.experiments['new'].get_runs()])\n",
        tmp_path / "ws",
    )
    assert seen.stdout.strip() == f"['new'] ['{run_id}']", seen.stdout + seen.stderr
