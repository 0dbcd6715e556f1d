"""Who may use a workspace, and the modes its folders and files get.

A workspace is private by default: folders 0700 and files 0600 (blobs 0400, they never
change), whatever the creating process's umask, so nobody but its owner (and root) can
read its runs, metrics, logs, outputs, snapshots or secrets, or reach its daemon's socket.
A team opts in to sharing one with a group (``Workspace.create(path, shared_group="ml")``,
or ``runner workspace access --group ml``): folders then are 2770 (set-group-ID, so what
is created inside keeps the group), files 0660, and the daemon serves the group's members
too. Everybody else still gets nothing.

Standard library only: the in-run client creates workspace files too.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
from pathlib import Path
from typing import NamedTuple

from runner.errors import ConfigError


class Access(NamedTuple):
    """The sharing of one workspace: ``group`` is the shared group's gid, or None.

    (A NamedTuple, not a dataclass: ``import runner`` would pay ~8 ms for dataclasses.)
    """

    group: int | None = None

    @property
    def dir_mode(self) -> int:
        """Mode of every folder of the workspace."""
        return 0o2770 if self.group is not None else 0o700

    @property
    def file_mode(self) -> int:
        """Mode of files that change (database, logs, daemon files, secrets)."""
        return 0o660 if self.group is not None else 0o600

    @property
    def blob_mode(self) -> int:
        """Mode of content-addressed blobs, which never change once written."""
        return 0o440 if self.group is not None else 0o400

    @property
    def umask(self) -> int:
        """The umask of runner's own processes (the daemon, the CLI) in this workspace."""
        return 0o007 if self.group is not None else 0o077

    def describe(self) -> dict[str, object]:
        """JSON-safe summary, as `runner workspace access` prints it."""
        if self.group is None:
            return {"shared": False, "group": None}
        return {"shared": True, "group": group_name(self.group), "gid": self.group}


PRIVATE = Access()


def group_name(gid: int) -> str:
    """A group's name, or its number when the system has no name for it."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def resolve_group(group: str | int) -> int:
    """The gid of a group given by name or number; ConfigError naming the fix."""
    try:
        if isinstance(group, int) or str(group).isdigit():
            return grp.getgrgid(int(group)).gr_gid
        return grp.getgrnam(str(group)).gr_gid
    except (KeyError, OverflowError):
        raise ConfigError(
            f"no group {group!r} on this machine; create it (groupadd {group}) and add the "
            "team's users to it, or pass an existing group"
        ) from None


def access_of(ws_root: Path) -> Access:
    """The sharing recorded in ``workspace.json`` (private when none is)."""
    try:
        data = json.loads((ws_root / "workspace.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return PRIVATE
    gid = data.get("shared_gid") if isinstance(data, dict) else None
    return Access(int(gid)) if isinstance(gid, int) else PRIVATE


def make_dirs(path: Path, access: Access) -> None:
    """Create ``path`` and missing parents inside the workspace with the workspace's mode."""
    if path.is_dir():
        return
    if not path.parent.is_dir():
        make_dirs(path.parent, access)
    try:
        os.mkdir(path, access.dir_mode & 0o777)
    except FileExistsError:
        return
    fix_dir(path, access)


def fix_dir(path: Path | str, access: Access) -> None:
    """Give a folder the workspace's mode (and group), whatever the umask made of it."""
    if access.group is not None:
        os.chown(path, -1, access.group)
    os.chmod(path, access.dir_mode)


def create_file(path: Path | str, access: Access, flags: int = os.O_WRONLY) -> int:
    """Open (creating if needed) a workspace file with the workspace's file mode; an fd."""
    fd = os.open(path, flags | os.O_CREAT, access.file_mode)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o7777 != access.file_mode and st.st_uid == os.getuid():
            os.fchmod(fd, access.file_mode)  # the umask took bits the group needs
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str, access: Access) -> None:
    """Write a small workspace file atomically, with the workspace's file mode."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = create_file(tmp, access, os.O_WRONLY | os.O_TRUNC)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def apply(root: Path, access: Access) -> int:
    """Give every folder and file under ``root`` the modes (and group) of ``access``.

    Owner bits are kept (an executable stays executable); group and other bits are set
    from the policy. Returns how many entries changed. Entries of other users are left.
    """
    changed = 0
    me = os.getuid()
    for folder, dirs, files in os.walk(root):
        entries = [(folder, True)] + [(os.path.join(folder, f), False) for f in files]
        for path, is_dir in entries:
            st = os.lstat(path)
            if st.st_uid != me and me != 0:
                continue
            if os.path.islink(path):
                continue
            if is_dir:
                mode = access.dir_mode
            else:
                owner = st.st_mode & 0o700
                group = (owner >> 3) & 0o070 if access.group is not None else 0
                mode = owner | group
            if access.group is not None and st.st_gid != access.group:
                os.chown(path, -1, access.group)
                changed += 1
            if st.st_mode & 0o7777 != mode:
                os.chmod(path, mode)
                changed += 1
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return changed


def set_access(ws_root: Path, group: str | int | None) -> dict[str, object]:
    """Share a workspace with ``group``, or (None) make it private again.

    Records the choice in ``workspace.json`` and gives every folder and file the new modes
    (and group). Returns what it did. A running daemon keeps the old access until it
    restarts: the caller stops it (runs go on; the next daemon re-adopts them).
    """
    policy = Access(resolve_group(group)) if group is not None else PRIVATE
    meta = ws_root / "workspace.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{meta} is not a readable workspace file: {exc}") from exc
    data.pop("shared_gid", None)
    if policy.group is not None:
        data["shared_gid"] = policy.group
    try:
        write_private(meta, json.dumps(data, indent=2), policy)
        changed = apply(ws_root, policy)
    except PermissionError as exc:
        raise ConfigError(
            f"cannot give workspace {ws_root} to group {group!r}: {exc}; only a member of the "
            "group (or root) can, and only for the files they own"
        ) from None
    return {**policy.describe(), "workspace": str(ws_root), "changed": changed}
