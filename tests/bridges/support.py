"""What the bridge tests share: a workspace folder with a training script (its daemon stopped
afterwards), and running code where no optional package is importable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import REPO, stop_daemon_of


@contextmanager
def workspace_and_source(tmp_path: Path, train: str) -> Iterator[tuple[Path, Path]]:
    """(workspace folder, source folder holding ``train.py``); stops the workspace daemon."""
    ws, src = tmp_path / "ws", tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(train)
    try:
        yield ws, src
    finally:
        stop_daemon_of(ws)


def run_without_site_packages(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -S -I``: the repository importable, nothing else."""
    head = f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
    return subprocess.run(
        [sys.executable, "-S", "-I", "-c", head + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
