"""The command groups of ``runner``: one module each, with ``add_commands(tree)`` (its part
of the parser) and the handlers of its commands. A new group is a module here and a line
in ``COMMAND_MODULES``."""

from __future__ import annotations

import argparse

from runner import __version__
from runner.cli.commands import daemon, env, experiment, folder, run, studio, target, workspace
from runner.cli.parser import Parser, Tree, dedent, global_options
from runner.cli.render import PROG

#: In the order ``runner --help`` lists them.
COMMAND_MODULES = (experiment, run, folder, target, env, daemon, workspace, studio)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``runner`` command tree."""
    common = global_options()
    parser = Parser(
        prog=PROG,
        description="Run, track and inspect experiments offline (the Azure ML v1 run model).",
        epilog=dedent(
            """
            examples:
              runner folder attach -e mnist
              runner run submit-script -e mnist train.py --lr 0.01
              runner run list -e mnist --status Failed -o table
              runner run show -r mnist_1700000000_1a2b3c4d --query metrics

            Run 'runner COMMAND --help' for the options of each command.
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    tree = Tree(common, parser.add_subparsers(dest="group", metavar="COMMAND", required=True))
    for module in COMMAND_MODULES:
        module.add_commands(tree)
    return parser
