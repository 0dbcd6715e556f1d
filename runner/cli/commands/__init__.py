"""The command groups of ``runner``: one module each, with ``add_commands(tree)`` (its part
of the parser) and the handlers of its commands. A new group is a module here and a line
in ``COMMAND_MODULES``."""

from __future__ import annotations

from runner.cli.commands import daemon, env, experiment, folder, run, target, workspace

#: In the order ``runner --help`` lists them.
COMMAND_MODULES = (experiment, run, folder, target, env, daemon, workspace)
