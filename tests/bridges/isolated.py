"""Running code where no optional package is importable: the real interpreter without
site-packages (``-S -I``), with only the repository on its path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import REPO


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
