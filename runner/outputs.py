"""Storing a folder's files with a run (``./outputs`` at Finalizing, child ``outputs``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from runner.artifacts import check_artifact_name
from runner.errors import ConfigError

if TYPE_CHECKING:
    from runner.workspace import Workspace


def store_folder(ws: Workspace, run_id: str, folder: Path, prefix: str) -> int:
    """Store every regular file under ``folder`` as ``prefix/relative/path``; returns the count.

    Symlinks are followed only when they point inside ``folder``, so a run cannot make
    runner copy files from elsewhere on the machine. Same-named files are replaced: the
    folder's final content wins.

    Names follow the rules of ``Run.upload_file`` (``check_artifact_name``; no file that
    is also a folder of a file the run already has). Files that break them are left out,
    everything else is stored, and then a ConfigError names what was left out, so the
    run's end can say so instead of losing them silently.
    """
    root = folder.resolve()
    entries: list[tuple[str, str, int]] = []
    refused: list[str] = []
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
            rel = path.relative_to(root).as_posix()
            try:
                name = check_artifact_name(f"{prefix}/{rel}")
            except ConfigError as exc:
                refused.append(str(exc))
                continue
            digest, size = ws.blobs.put_file(path)
            entries.append((name, digest, size))
    clashes = ws.store.file_clashes(run_id, [n for n, _, _ in entries]) if entries else []
    if clashes:
        left_out = {new for _, new in clashes}
        entries = [e for e in entries if e[0] not in left_out]
        refused.extend(
            f"{new!r} would make the run's file {old!r} a folder" for old, new in clashes
        )
    if entries:
        ws.store.replace_files(run_id, entries)
    if refused:
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise ConfigError(
            f"{len(refused)} file(s) for {prefix}/ were not stored: {'; '.join(refused[:3])}"
            f"{more}; {len(entries)} other file(s) were stored"
        )
    return len(entries)
