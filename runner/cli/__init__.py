"""The ``runner`` command line (also ``python -m runner``), modelled on ``az ml`` v1.

Every command prints JSON by default (``-o table`` for people, ``-o tsv`` for shell
loops) and takes the global options ``-w/--workspace``, ``-o/--output`` and ``--query``
before or after the command words. A mistake the user can fix prints one line,
``runner: error: ...``, and exits 2; other runner errors exit 1; a bug keeps its
traceback.

``main(argv)`` returns the exit code instead of exiting, so tests call it in-process.

The package: ``entry`` (main), ``parser`` (global options and the command tree),
``context`` (what handlers share), ``render`` (JSON, tables, TSV), and ``commands/``, one
module per command group, each adding its commands to the tree with their handlers.
"""

from __future__ import annotations

from runner.cli.commands import build_parser
from runner.cli.context import Context
from runner.cli.entry import main
from runner.cli.parser import split_script_args
from runner.cli.render import dumps_json, render_table, render_tsv, strict_json

# The names these had when the CLI was one module (tests use them).
_Context = Context
_split_script_args = split_script_args

__all__ = [
    "Context",
    "build_parser",
    "dumps_json",
    "main",
    "render_table",
    "render_tsv",
    "strict_json",
]
