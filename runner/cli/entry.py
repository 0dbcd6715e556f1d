"""``main``: parse, run the handler, turn errors into one line and an exit code."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from runner.cli.commands import build_parser
from runner.cli.context import Context
from runner.cli.parser import split_script_args
from runner.cli.render import PROG, compile_query, note, one_line
from runner.errors import RunnerError, RunnerWarning, UserError


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if issubclass(category, RunnerWarning):
        print(f"{PROG}: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``runner`` command line; returns the exit code.

    Example:
        >>> main(["run", "list", "-e", "mnist", "-o", "table"])  # doctest: +SKIP
        0
    """
    words = list(sys.argv[1:] if argv is None else argv)
    head, script_args = split_script_args(words)
    try:
        _check_utf8(head)
        args = build_parser().parse_args(head)
        query = compile_query(getattr(args, "query", None))
    except UserError as err:
        print(f"{PROG}: error: {one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    if script_args is not None:
        args.args = script_args
    ignored = [
        option
        for option, dest in (
            ("-g/--resource-group", "resource_group"),
            ("--subscription-id", "subscription_id"),
        )
        if getattr(args, dest, None) is not None
    ]
    if ignored:
        note(f"ignoring {' and '.join(ignored)}: runner workspaces are local folders, named by -w")
    ctx = Context(args, query)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunnerWarning)
        warnings.showwarning = _show_warning
        try:
            code: int = args.handler(ctx)
        except RunnerError as err:
            print(f"{PROG}: error: {one_line(str(err))}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            _silence_stdout()
            return 1
    return code


def _check_utf8(words: Sequence[str]) -> None:
    """A UserError for an argument that is not UTF-8 (Python holds its bytes as lone
    surrogates, which no name or path in a workspace can match or store)."""
    for word in words:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"argument {word!r} is not valid UTF-8 text; runner's names (runs, "
                "experiments, files) are UTF-8, so pass it as UTF-8"
            ) from None


def _silence_stdout() -> None:
    """After the reader of a pipe went away, keep Python from complaining at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
