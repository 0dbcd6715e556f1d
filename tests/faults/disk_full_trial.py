"""A trial, not a test: runs with the disk filled at a different moment of each.

    sudo python tests/faults/disk_full_trial.py [--runs 12] [--size-mib 256] [--seed 12]

Mounts a tmpfs of --size-mib MiB (root), makes a workspace on it with one interactive run
holding metrics, a tag and a file, then for each of --runs runs: submits train_big.py
(1-14 MiB of ./outputs), waits a random 0-2 s, fills the disk, frees it a second later and
reads the run's end. Every step is its own process (tests/faults/disk_full_steps.py).
Prints one JSON line per run and a summary: runs that ended Completed without their
outputs or logs ("lost_silently", must be 0), leftover work folders and temporary files
(must be none) and the first run's data (must be intact). A small --size-mib (24) makes
the workspace itself fill up: the runs then end Failed, saying why, or wait (never
Completed) until space is freed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STEPS = HERE / "disk_full_steps.py"
TERMINAL = ("Completed", "Failed", "Canceled")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="runner-disk-full-"))
    mnt = base / "fs"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.size_mib}M", "tmpfs", str(mnt)], check=True
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env["PYTHONPATH"] = str(REPO)
    env["RUNNER_DAEMON_IDLE_S"] = "120"

    def step(*a: object) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(STEPS), *map(str, a)],
            capture_output=True, text=True, env=env, cwd=base, timeout=180, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or [""]
            if a[0] == "submit" and last[0].startswith("runner.errors.StoreError"):
                return {"refused": last[0]}  # a full workspace: the submit says so
            raise SystemExit(f"step {a} failed:\n{done.stderr}")
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer

    ws, src = mnt / "ws", base / "src"
    src.mkdir()
    shutil.copy(HERE / "train_big.py", src)
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    try:
        first = step("setup", ws)["run"]
        for i in range(args.runs):
            mib, delay = rng.choice([1, 4, 8, 14]), rng.choice([0.0, 0.05, 0.2, 0.5, 1.0, 2.0])
            submitted = step("submit", ws, src, mib)
            if "refused" in submitted:
                results.append(
                    {
                        "run": i,
                        "mib": mib,
                        "status": "refused at submit",
                        "lost_silently": False,
                        "reason": submitted["refused"][:160],
                    }
                )
                print(json.dumps(results[-1]), flush=True)
                continue
            run = submitted["run"]
            time.sleep(delay)
            ballast = mnt / "ballast"
            step("fill", ws, ballast)
            time.sleep(1.0)
            ballast.unlink()
            deadline = time.monotonic() + 90
            while (r := step("read", ws, run))["status"] not in TERMINAL:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            outputs = "outputs/big.bin" in r["files"]
            logs = any(f.startswith("azureml-logs/") for f in r["files"])
            error = ((r.get("error") or {}).get("error") or {}).get("message", "")
            results.append({
                "run": i, "id": run, "mib": mib, "fill_after_s": delay, "status": r["status"],
                "outputs": outputs, "logs": logs,
                "lost_silently": r["status"] == "Completed" and not (outputs and logs),
                "reason": error[:160],
            })  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
        kept = step("read", ws, first)
        leftovers = [str(p) for p in ws.rglob("*") if ".tmp-" in p.name]
        waiting = {r.get("id") for r in results if r["status"] not in TERMINAL}
        # (A run that waits for space keeps its work folder: its outputs are stored later.)
        leftovers += [str(p) for p in (ws / "runs").glob("*/work") if p.parent.name not in waiting]
        summary = {
            "lost_silently": sum(r["lost_silently"] for r in results),
            "of": len(results),
            "failed": sum(r["status"] == "Failed" for r in results),
            "refused_at_submit": sum(r["status"] == "refused at submit" for r in results),
            "not_ended": sum(r["status"] not in (*TERMINAL, "refused at submit") for r in results),
            "leftovers": leftovers,
            "first_run_kept": kept["metrics"] == {"loss": 100} and kept["files"] == ["notes.txt"],
        }
        print(json.dumps(summary))
        return 0 if summary["lost_silently"] == 0 and not leftovers else 1
    finally:
        subprocess.run(
            [sys.executable, "-m", "runner", "-w", str(ws), "daemon", "stop"],
            env=env, capture_output=True, check=False,
        )  # fmt: skip
        time.sleep(1)
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
