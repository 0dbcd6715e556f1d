"""``runner experiment ...``: its commands and their handlers."""

from __future__ import annotations

from runner.cli.context import Context
from runner.cli.parser import Tree


def add_commands(tree: Tree) -> None:
    """Add the ``experiment`` commands to the command tree."""
    exp = tree.group(
        "experiment",
        "experiments of the workspace",
        """
        example:
          runner experiment list
        """,
    )
    tree.leaf(
        exp,
        "list",
        "List the experiments of the workspace, oldest first.",
        """
        example:
          runner experiment list -o table
        """,
        _experiment_list,
    )


def _experiment_list(ctx: Context) -> int:
    ctx.emit([{"name": name} for name in ctx.workspace().experiments])
    return 0
