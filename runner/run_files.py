"""The files part of ``Run``: uploads, downloads, log files, snapshots and ``clean``.

A run's files are blobs in the workspace's content-addressed store (runner.artifacts),
listed by name in the run history. Standard library only.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from runner import access
from runner.artifacts import check_artifact_name, name_clash
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerWarning
from runner.outputs import store_folder
from runner.run_base import _RunBase


class _RunFiles(_RunBase):
    """A run's stored files and snapshots (part of ``Run``)."""

    def upload_file(
        self,
        name: str,
        path_or_stream: str | os.PathLike[str] | IO[bytes],
        datastore_name: str | None = None,
    ) -> dict[str, Any]:
        """Store a local file (or a binary stream) with the run under ``name``."""
        name = check_artifact_name(name)
        self._refuse_clashes([name])
        blobs = self._workspace.blobs
        if hasattr(path_or_stream, "read"):
            digest, size = blobs.put_stream(path_or_stream)  # type: ignore[arg-type]
        else:
            path = Path(os.fspath(path_or_stream))
            if not path.is_file():
                raise NotFoundError(f"upload_file({name!r}): no file at {path}")
            digest, size = blobs.put_file(path)
        self._store.add_files(self._id, [(name, digest, size)])
        return {"name": name, "size": size, "digest": digest}

    def upload_files(
        self,
        names: Sequence[str],
        paths: Sequence[str | os.PathLike[str]],
        return_artifacts: bool = False,
        timeout_seconds: int | None = None,
        datastore_name: str | None = None,
    ) -> builtins.list[dict[str, Any]] | None:
        """Store several local files at once (one transaction)."""
        if len(names) != len(paths):
            raise ConfigError(
                f"upload_files: {len(names)} names but {len(paths)} paths; pass one name per path"
            )
        checked = [check_artifact_name(n) for n in names]
        self._refuse_clashes(checked)
        for p in paths:
            if not Path(os.fspath(p)).is_file():
                raise NotFoundError(f"upload_files: no file at {p}; nothing was uploaded")
        blobs = self._workspace.blobs
        entries = []
        for n, p in zip(checked, paths):
            digest, size = blobs.put_file(os.fspath(p))
            entries.append((n, digest, size))
        self._store.add_files(self._id, entries)
        if return_artifacts:
            return [{"name": n, "digest": d, "size": s} for n, d, s in entries]
        return None

    def upload_folder(
        self, name: str, path: str | os.PathLike[str], datastore_name: str | None = None
    ) -> None:
        """Store every file under a local folder with the names ``name/relative/path``."""
        prefix = check_artifact_name(name)
        folder = Path(os.fspath(path))
        if not folder.is_dir():
            raise NotFoundError(f"upload_folder({name!r}): {folder} is not a folder")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        self.upload_files([f"{prefix}/{p.relative_to(folder).as_posix()}" for p in files], files)

    def _refuse_clashes(self, names: Sequence[str]) -> None:
        """ConflictError, before any blob is stored, for names that would make a file and a
        folder of one name (``a`` and ``a/b``), among themselves or with the run's files.
        ``Store.add_files`` checks again in its transaction."""
        clash = name_clash(names)
        if clash is not None:
            raise ConflictError(
                f"{clash[0]!r} and {clash[1]!r} cannot both be files of run {self._id}: "
                f"{clash[0]!r} would be a file and a folder at once; rename one of them; "
                "nothing was uploaded"
            )
        recorded = self._store.file_clashes(self._id, names)
        if recorded:
            old, new = recorded[0]
            raise ConflictError(
                f"run {self._id} already has a file {old!r}, so {new!r} cannot be a file too: "
                "one would be a file and a folder at once; upload under another name"
            )

    def get_file_names(self) -> builtins.list[str]:
        """The names of the run's stored files."""
        return [n for n, _, _ in self._store.list_files(self._id)]

    def _digest_of(self, name: str) -> str:
        name = check_artifact_name(name)
        for n, d, _ in self._store.list_files(self._id, prefix=name):
            if n == name:
                return d
        raise NotFoundError(
            f"run {self._id} has no file {name!r}; its files are listed by run.get_file_names()"
        )

    def download_file(
        self,
        name: str,
        output_file_path: str | os.PathLike[str] | None = None,
        _validate_checksum: bool = False,
    ) -> str:
        """Write a stored file to ``output_file_path`` (a file, or an existing folder)."""
        digest = self._digest_of(name)
        base = name.rstrip("/").split("/")[-1]
        dest = Path(output_file_path) if output_file_path is not None else Path.cwd() / base
        if dest.is_dir():
            dest = dest / base
        _copy_out(self._workspace.blobs, digest, dest, f"file {name!r} of run {self._id}")
        return str(dest)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: Sequence[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: int | None = None,
    ) -> builtins.list[str]:
        """Write every stored file under ``prefix`` into ``output_directory``."""
        norm = check_artifact_name(prefix) if prefix else None
        files = self._store.list_files(self._id, prefix=norm)
        if output_paths is not None and len(output_paths) != len(files):
            raise ConfigError(
                f"download_files: {len(output_paths)} output_paths for {len(files)} files"
            )
        out = Path(output_directory) if output_directory is not None else Path.cwd()
        _check_folder(out, "output_directory")
        written = []
        for i, (name, digest, _) in enumerate(files):
            if output_paths is not None:
                dest = Path(output_paths[i])
            else:
                rel = name
                if norm and not append_prefix:
                    rel = name[len(norm) :].lstrip("/") or name.split("/")[-1]
                dest = out / rel
            _copy_out(self._workspace.blobs, digest, dest, f"file {name!r} of run {self._id}")
            written.append(str(dest))
        return written

    def get_all_logs(self, destination: str | os.PathLike[str] | None = None) -> builtins.list[str]:
        """Write the run's log files into ``destination`` (default ``./RUN_ID``)."""
        dest = Path(destination) if destination is not None else Path.cwd() / self._id
        _check_folder(dest, "destination")
        written = []
        for name, path in self._log_files().items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(path).read_bytes())
            written.append(str(target))
        return written

    # -- snapshots ---------------------------------------------------------------------

    def take_snapshot(self, file_or_folder_path: str | os.PathLike[str]) -> str:
        """Snapshot a file or folder (honouring .amlignore/.gitignore); returns its id."""
        # (runner.snapshot, 1,000 lines, is loaded only by the scripts that snapshot)
        from runner.snapshot import cache_file, take_snapshot

        src = Path(os.fspath(file_or_folder_path))
        if not src.exists():
            raise NotFoundError(f"take_snapshot: {src} does not exist")
        ws = self._workspace
        cache = cache_file(ws.path, src)
        access.make_dirs(cache.parent, ws._access)
        snap = take_snapshot(src, ws.blobs, cache_path=cache)
        now = time.time()
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) VALUES (?,?,?)",
                (self._id, snap.id, now),
            )
            # On a host: the manifest (a blob named by the snapshot id) and the contents
            # go to the submitting workspace with the record.
            self._store.journal_change(
                {"e": "snapshot", "id": self._id, "snapshot": snap.id, "created": now},
                blobs=[snap.id, *(e.digest for e in snap.entries)],
            )
        if "ContentSnapshotId" not in self.get_properties():
            self._store.add_properties(self._id, {"ContentSnapshotId": snap.id})
        return snap.id

    def get_snapshot_id(self) -> str | None:
        """The id of the run's latest snapshot, or None."""
        rows = self._store.query(
            "SELECT snapshot_id FROM run_snapshots WHERE run_id = ? ORDER BY created_utc DESC LIMIT 1",
            (self._id,),
        )
        return str(rows[0][0]) if rows else None

    def restore_snapshot(
        self, snapshot_id: str | None = None, path: str | os.PathLike[str] | None = None
    ) -> str:
        """Write a snapshot (default: the latest) as ``<path>/<snapshot id>.zip``.

        As in azureml, ``path`` is the folder to write into (default: the current
        folder; created if missing), and the zip file's absolute path is returned.

        Example:
            >>> run.restore_snapshot(path="snapshots")  # doctest: +SKIP
            '/home/u/proj/snapshots/3f2a....zip'
        """
        from runner.snapshot import load_snapshot, to_zip  # (as in take_snapshot)

        sid = snapshot_id or self.get_snapshot_id()
        if sid is None:
            raise NotFoundError(
                f"run {self._id} has no snapshot; take one with run.take_snapshot(path)"
            )
        folder = (Path(os.fspath(path)) if path is not None else Path.cwd()).absolute()
        _check_folder(folder, "restore_snapshot: path")
        snap = load_snapshot(self._workspace.blobs, sid)
        created = not folder.exists()
        try:
            return str(to_zip(snap, self._workspace.blobs, folder / f"{sid}.zip"))
        except BaseException:
            if created:  # leave nothing behind, not even the folder made for the zip
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def clean(self) -> builtins.list[str]:
        """Remove the run's working files on this machine, as azureml's ``clean()``.

        azureml removes "the files corresponding to the current run on the target": here,
        the run's working folder (its snapshot copy, ``./outputs``, ``./logs``). Nothing
        stored with the run is removed, and nothing is lost: what is in ``./outputs`` and
        ``./logs`` is stored with the run first. A finished run's working folder is already
        gone (it was stored when the run ended), so ``[]`` is returned. During a run, a
        RunnerWarning says what was removed; the script cannot write there afterwards.

        Returns:
            The paths of the files removed.
        """
        work = self._run_dir() / "work"
        if not work.is_dir():
            return []
        removed = sorted(str(p) for p in work.rglob("*") if not p.is_dir() or p.is_symlink())
        kept = 0
        for folder in ("outputs", "logs"):  # as the run's end stores them; errors keep all
            if (work / folder).is_dir():
                kept += store_folder(self._workspace, self._id, work / folder, folder)
        shutil.rmtree(work, ignore_errors=True)
        if removed:
            shown = ", ".join(os.path.relpath(p, work) for p in removed[:5])
            more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
            warnings.warn(
                f"run {self._id} is {self.get_status()}: clean() removed its working folder "
                f"{work} ({len(removed)} file(s): {shown}{more}); the {kept} file(s) of its "
                "./outputs and ./logs were stored with the run first and are kept; the script "
                "can no longer write there",
                RunnerWarning,
                stacklevel=2,
            )
        return removed


def _check_folder(path: Path, what: str) -> None:
    """ConfigError unless ``path`` is a folder or can become one (nothing written yet)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(
                    f"{what} {str(path)!r} is not a folder ({str(p)!r} is a file); pass a "
                    "folder, which is created if missing"
                )
            return


def _copy_out(blobs: Any, digest: str, dest: Path, what: str) -> None:
    """Write a blob to ``dest``; a destination in the way is a ConfigError naming it."""
    try:
        blobs.copy_to(digest, dest, what)
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise ConfigError(
            f"cannot write {str(dest)!r}: {exc.strerror or exc} at {exc.filename!r}; move what is "
            "in the way or download into an empty folder"
        ) from exc
