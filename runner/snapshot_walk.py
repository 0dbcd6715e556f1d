"""The walk of a snapshot: which files of a source folder it holds.

Left out: ``.git`` (folder or file) at every level; whatever the ignore files say (in each
folder ``.amlignore`` if present, else ``.gitignore``, for that folder's subtree, a deeper
file overriding a shallower one; below a folder whose ``.amlignore`` was used,
``.gitignore`` files are not read); symlinks that lead outside the source folder, nowhere,
or into a cycle, and special files (both reported, for one warning); a runner workspace
inside the source; and the runner's own files (the blob store, the stat cache).

Imported by the in-run client: standard library only, and it must import on Python 3.9.
"""

from __future__ import annotations

import os
import stat

from runner.errors import ConfigError
from runner.snapshot_ignore import _IgnoreFile, _is_ignored, _parse_ignore

# (relative path, path to read, stat of what will be read)
_Found = tuple[str, str, os.stat_result]


def _is_workspace(path: str) -> bool:
    """Whether a folder is a runner workspace (it holds workspace.json and runner.db)."""
    return os.path.exists(os.path.join(path, "runner.db")) and os.path.exists(
        os.path.join(path, "workspace.json")
    )


class _Walk:
    """Collect the files of a source folder, applying ignore files and symlink rules."""

    def __init__(self, root_real: str, own: tuple[str, ...] = ()) -> None:
        self.root_real = root_real
        self.root_prefix = root_real.rstrip(os.sep) + os.sep
        # The runner's own files (the blob store, the stat cache) when they sit inside
        # the source: snapshotting them would change the snapshot with every snapshot.
        self.own = frozenset(p for p in own if self._inside(p))
        self.found: list[_Found] = []
        self.bad_links: list[str] = []
        self.special: list[str] = []
        self.skipped_workspaces: list[str] = []

    def _inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_prefix)

    def run(self) -> None:
        # (folder to list, its relative prefix, real paths from the root down, ignore
        # files in force, whether .gitignore files are still read)
        stack: list[tuple[str, str, tuple[str, ...], tuple[_IgnoreFile, ...], bool]] = [
            (self.root_real, "", (self.root_real,), (), True)
        ]
        own = self.own
        while stack:
            folder, prefix, chain, ignores, read_git = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except PermissionError as exc:
                raise ConfigError(
                    f"cannot list folder {prefix or '.'!r} in source folder "
                    f"{self.root_real!r}: {exc.strerror}; make it readable or list it in "
                    ".amlignore"
                ) from exc
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            ignores, read_git = self._ignore_file(entries, prefix, ignores, read_git)
            for entry in entries:
                name = entry.name
                if name == ".git":
                    continue
                rel = prefix + name
                if entry.is_symlink():
                    self._link(entry, rel, chain, ignores, read_git, stack)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        real = chain[-1].rstrip(os.sep) + os.sep + name
                        if _is_workspace(entry.path):
                            # A runner workspace inside the source (its live SQLite files
                            # must never be read: closing a file SQLite has open drops
                            # that process's locks on it) is never part of a snapshot.
                            self.skipped_workspaces.append(rel)
                            continue
                        if not (ignores and _is_ignored(ignores, rel, True)) and real not in own:
                            stack.append((entry.path, rel + "/", (*chain, real), ignores, read_git))
                        continue
                    if ignores and _is_ignored(ignores, rel, False):
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        self.special.append(rel)
                        continue
                    if own and chain[-1].rstrip(os.sep) + os.sep + name in own:
                        continue
                    self.found.append((rel, entry.path, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed while we walked

    @staticmethod
    def _ignore_file(
        entries: list[os.DirEntry[str]],
        prefix: str,
        ignores: tuple[_IgnoreFile, ...],
        read_git: bool,
    ) -> tuple[tuple[_IgnoreFile, ...], bool]:
        """Add this folder's ignore file (if any) to those in force."""
        aml = git = None
        for entry in entries:
            if entry.name == ".amlignore":
                aml = entry
            elif entry.name == ".gitignore":
                git = entry
        chosen = aml if aml is not None else (git if read_git else None)
        if chosen is None:
            return ignores, read_git
        try:
            with open(chosen.path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except (FileNotFoundError, IsADirectoryError):
            return ignores, read_git
        except PermissionError as exc:
            raise ConfigError(
                f"cannot read ignore file {prefix + chosen.name!r}: {exc.strerror}; make it "
                "readable or remove it"
            ) from exc
        rules = _parse_ignore(text)
        still_git = read_git and aml is None
        if not rules:
            return ignores, still_git
        return (*ignores, _IgnoreFile(prefix, rules)), still_git

    def _link(
        self,
        entry: os.DirEntry[str],
        rel: str,
        chain: tuple[str, ...],
        ignores: tuple[_IgnoreFile, ...],
        read_git: bool,
        stack: list[tuple[str, str, tuple[str, ...], tuple[_IgnoreFile, ...], bool]],
    ) -> None:
        """A symlink: keep what it points to if that is inside the source folder."""
        real = os.path.realpath(entry.path)
        try:
            st = os.stat(real)
        except OSError:
            if not (ignores and _is_ignored(ignores, rel, False)):
                self.bad_links.append(f"{rel!r} (dangling)")
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if ignores and _is_ignored(ignores, rel, is_dir):
            return
        if real in self.own:
            return
        if not self._inside(real):
            self.bad_links.append(f"{rel!r} -> {real!r} (outside the source folder)")
        elif is_dir:
            if _is_workspace(real):
                self.skipped_workspaces.append(rel)
            elif real in chain:
                self.bad_links.append(f"{rel!r} -> {real!r} (a cycle)")
            else:
                stack.append((real, rel + "/", (*chain, real), ignores, read_git))
        elif stat.S_ISREG(st.st_mode):
            self.found.append((rel, real, st))
        else:
            self.special.append(rel)
