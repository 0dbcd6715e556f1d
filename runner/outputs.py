"""Storing a folder's files with a run (``./outputs`` at Finalizing, child ``outputs``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.workspace import Workspace


def store_folder(ws: Workspace, run_id: str, folder: Path, prefix: str) -> int:
    """Store every regular file under ``folder`` as ``prefix/relative/path``; returns the count.

    Symlinks are followed only when they point inside ``folder``, so a run cannot make
    runner copy files from elsewhere on the machine. Same-named files are replaced: the
    folder's final content wins.
    """
    root = folder.resolve()
    entries: list[tuple[str, str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        for fname in filenames:
            path = here / fname
            if path.is_symlink():
                try:
                    path.resolve().relative_to(root)
                except ValueError:
                    continue
            if not path.is_file():
                continue
            digest, size = ws._blobs.put_file(path)
            rel = path.relative_to(root).as_posix()
            entries.append((f"{prefix}/{rel}", digest, size))
    if entries:
        ws._store.replace_files(run_id, entries)
    return len(entries)
