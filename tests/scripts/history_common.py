"""Small helpers for the run-history test scripts (imported from this folder)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def wait_for_file(path: str | Path, timeout_s: float = 60.0) -> None:
    """Block until ``path`` exists (the test's "go" signal)."""
    deadline = time.monotonic() + timeout_s
    p = Path(path)
    while not p.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {p}")
        time.sleep(0.001)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, so the test never reads half a file."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, p)
