"""Steps of the disk-full tests, each run as its own short process (tests/faults).

    disk_full_steps.py STEP WORKSPACE [ARGS...]

Prints one JSON object. The test process never opens the workspace: a workspace on a
small tmpfs must be closed by everyone before the test can unmount it.

Steps:
    setup WS                 an interactive run with metrics, a tag and a file (data
                             that must survive the faults); prints {"run"}
    submit WS SOURCE MB [READY RELEASE]
                             submits train_big.py writing MB MiB to ./outputs (then
                             touching READY and waiting for RELEASE) and exits; {"run"}
    fill WS BALLAST          fills the disk with the file BALLAST; {"written"}
    read WS RUN              status, error, file names, metric counts and tags of a run
    flush_full WS BALLAST    logs, fills the disk (the file BALLAST), flushes (which must
                             fail), frees it, flushes again; prints what happened
    upload_full WS BALLAST   fills the disk leaving less than an upload, uploads, frees,
                             uploads again; prints what happened
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner import Experiment, Run, ScriptRunConfig, Workspace

MIB = 1 << 20


def fill(ballast: Path, leave: int = 0) -> int:
    """Write ``ballast`` until the file system has at most ``leave`` bytes free."""
    written = 0
    with open(ballast, "wb") as f:
        while True:
            free = os.statvfs(ballast.parent).f_bavail * os.statvfs(ballast.parent).f_frsize
            size = min(MIB, free - leave)
            if size <= 0:
                break
            try:
                f.write(b"\0" * size)
                f.flush()
            except OSError:
                break
            written += size
    return written


def error_of(exc: BaseException) -> dict[str, Any]:
    return {"type": f"{type(exc).__module__}.{type(exc).__name__}", "message": str(exc)}


def step_setup(ws: Workspace) -> dict[str, Any]:
    run = Experiment(ws, "before").start_logging()
    for i in range(100):
        run.log("loss", 1.0 / (i + 1))
    run.tag("kept", "yes")
    run.upload_file("notes.txt", _small_file(ws.path.parent / "notes.txt"))
    run.complete()
    return {"run": run.id}


def _small_file(path: Path) -> str:
    path.write_text("written before the disk filled\n")
    return str(path)


def step_submit(ws: Workspace, source: str, *args: str) -> dict[str, Any]:
    cfg = ScriptRunConfig(source_directory=source, script="train_big.py", arguments=list(args))
    run = Experiment(ws, "full").submit(cfg)
    return {"run": run.id}


def step_read(ws: Workspace, run_id: str) -> dict[str, Any]:
    run = Run.get(ws, run_id)
    details = run.get_details()
    return {
        # status and error from one read: a status read after the details could already
        # be Failed while the details still had no error (a flake seen once)
        "status": details["status"],
        "error": details.get("error"),
        "files": run.get_file_names(),
        "metrics": {k: len(v) if isinstance(v, list) else 1 for k, v in run.get_metrics().items()},
        "tags": run.get_tags(),
    }


def step_flush_full(ws: Workspace, ballast: Path) -> dict[str, Any]:
    run = Experiment(ws, "flush").start_logging()
    run.log("x", -1.0)
    run.flush()
    run.tag("kept", "yes")
    source = ballast.parent / "small_src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    fill(ballast)
    out: dict[str, Any] = {"run": run.id}
    try:  # a submit records the run (and its snapshot) in the full workspace
        cfg = ScriptRunConfig(source_directory=str(source), script="train.py")
        Experiment(ws, "submit-while-full").submit(cfg)
        out["submit"] = None
    except BaseException as exc:
        out["submit"] = error_of(exc)
    try:
        run.tag("while_full", "x")
        out["tag"] = None
    except BaseException as exc:
        out["tag"] = error_of(exc)
    argv = [sys.executable, "-m", "runner", "-w", str(ws.path), "run", "update"]
    cli = subprocess.run(
        [*argv, "-r", run.id, "--add-tag", "cli=x"],
        capture_output=True,
        text=True,
    )
    out["cli"] = {"rc": cli.returncode, "stderr": cli.stderr}
    try:  # a new metric is registered in the database at once
        run.log("new", 1.0)
        out["log_new"] = None
    except BaseException as exc:
        out["log_new"] = error_of(exc)
    # More than the WAL can take without growing: the write needs new pages.
    n = 600_000
    for i in range(n):
        run.log("x", float(i))
    try:
        run.flush()
        out["flush"] = None
    except BaseException as exc:
        out["flush"] = error_of(exc)
    try:
        run.complete()
        out["complete"] = None
    except BaseException as exc:
        out["complete"] = error_of(exc)
    ballast.unlink()
    run.flush()  # the values waited in memory
    out["stored"] = len(run.get_metrics("x")["x"])
    out["logged"] = n + 1
    out["status_after"] = run.get_status()
    return out


def step_upload_full(ws: Workspace, ballast: Path) -> dict[str, Any]:
    run = Experiment(ws, "upload").start_logging()
    big = ws.path.parent / "big.bin"
    big.write_bytes(os.urandom(4 * MIB))  # outside the small file system
    fill(ballast, leave=MIB)
    out: dict[str, Any] = {"run": run.id}
    try:
        run.upload_file("big.bin", str(big))
        out["upload"] = None
    except BaseException as exc:
        out["upload"] = error_of(exc)
    out["files_while_full"] = run.get_file_names()
    out["tmp_files"] = [str(p) for p in ws.path.rglob("*") if ".tmp-" in p.name]
    ballast.unlink()
    run.upload_file("big.bin", str(big))
    out["files_after"] = run.get_file_names()
    run.complete()
    return out


def main() -> None:
    step, ws_path, *args = sys.argv[1:]
    ws = Workspace(ws_path) if step != "setup" else Workspace.create(ws_path)
    steps = {
        "setup": step_setup,
        "submit": step_submit,
        "read": step_read,
        "fill": lambda ws, b: {"written": fill(Path(b))},
        "flush_full": lambda ws, b: step_flush_full(ws, Path(b)),
        "upload_full": lambda ws, b: step_upload_full(ws, Path(b)),
    }
    print(json.dumps(steps[step](ws, *args)))


if __name__ == "__main__":
    main()
