"""``runner workspace ...``: its commands and their handlers."""

from __future__ import annotations

from runner.cli.context import Context
from runner.cli.parser import Tree


def add_commands(tree: Tree) -> None:
    """Add the ``workspace`` commands to the command tree."""
    wsg = tree.group(
        "workspace",
        "the workspace folder itself",
        """
        example:
          runner workspace check
        """,
    )
    p = tree.leaf(
        wsg,
        "check",
        "Check the database, every blob's hash, missing and orphan blobs, stray run folders "
        "and stuck runs; exit 1 when something is wrong.",
        """
        Prints a JSON report. Orphan blobs and run folders younger than an hour are left
        alone (a submit may be writing them). With --repair the report also says what was
        done ("repaired") and what is left to you ("notRepaired"; exit 1 if any).

        examples:
          runner workspace check
          runner workspace check --repair   # remove damaged and orphan blobs, stray run
                                            # folders; end stuck runs; say what was done
        """,
        _workspace_check,
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="fix what can be fixed (a damaged blob comes back when the file is stored again)",
    )
    p = tree.leaf(
        wsg,
        "access",
        "Share the workspace with a group, or make it private again; with neither option, "
        "give every file the modes its current access asks for.",
        """
        A private workspace (the default) is the owner's alone: folders 0700, files 0600,
        and the daemon answers only its owner (and root). Shared with a group: folders
        2770, files 0660, and the daemon also answers members of the group. A running
        daemon is stopped, so the next request starts one with the new access; runs go on.
        Prints what was done as JSON ("changed": how many files and folders changed).

        examples:
          runner workspace access --group ml       # the ml group may use this workspace
          runner workspace access --private        # only its owner again
          runner workspace access                  # fix modes a copy or an old umask left
        """,
        _workspace_access,
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument(  # (not dest "group": that is the command group's, see Context)
        "--group", dest="share_group", metavar="GROUP", help="share with this group (name or gid)"
    )
    who.add_argument("--private", action="store_true", help="only the owner may use it")


def _workspace_check(ctx: Context) -> int:
    from runner.workspace import configured_workspace_path, resolve_workspace
    from runner.wscheck import check_workspace

    path = getattr(ctx.args, "workspace", None)
    # Not ctx.workspace(): the check must also report on a workspace that cannot be opened.
    root = resolve_workspace(path)[0] if path else configured_workspace_path()
    report = check_workspace(root, repair=ctx.args.repair)
    ctx.emit(report.to_dict())
    if report.repaired is not None:
        return 1 if report.not_repaired else 0  # what was found is fixed, or it is not
    return 0 if report.ok else 1


def _workspace_access(ctx: Context) -> int:
    from runner import access, daemon_client

    ws = ctx.workspace()
    if ctx.args.private:
        group: str | int | None = None
    elif ctx.args.share_group is not None:
        group = ctx.args.share_group
    else:
        group = ws._access.group  # as it is: only the modes are fixed
    # The daemon checks requests against the access it started with: it is stopped
    # before the change, and again after it in case a run's request started one in
    # between. (Stopping only after the change raced the daemon itself, which exits on
    # its own once it sees workspace.json replaced.)
    stopped = daemon_client.stop_daemon(ws.path)
    result = access.set_access(ws.path, group)
    stopped = daemon_client.stop_daemon(ws.path) or stopped
    ctx.emit({**result, "daemonStopped": stopped})
    return 0
