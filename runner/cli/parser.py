"""The ``runner`` command tree: global options, the Tree every command module adds to."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from runner.cli.render import OUTPUT_FORMATS
from runner.errors import UserError
from runner.status import RunStatus

if TYPE_CHECKING:
    from runner.cli.context import Context


STATUS_VALUES = [s.value for s in RunStatus]


class CommandLineError(UserError):
    """A command line argparse cannot parse."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and a pointer to --help, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message}; see '{self.prog} --help'")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number between 1 and 65535")
    return value


def status_value(text: str) -> str:
    if text not in STATUS_VALUES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run status; use one of {', '.join(STATUS_VALUES)}"
        )
    return text


def global_options() -> Parser:
    """-w, -o and --query, accepted before or after the command words.

    Defaults are SUPPRESS so that a subcommand's parser never overwrites a value given
    before the command words; ``Context`` supplies the real defaults.
    """
    common = Parser(add_help=False, allow_abbrev=False)
    g = common.add_argument_group("global options")
    g.add_argument(
        "-w",
        "--workspace",
        "--workspace-name",
        metavar="WS",
        default=argparse.SUPPRESS,
        help="workspace folder, or workspace name (~/.runner/workspaces/NAME; 'default': the "
        "default one) (default: from .runner/config.json here or above, else "
        "$RUNNER_WORKSPACE, else ~/.runner/workspace)",
    )
    for flags, metavar in ((("-g", "--resource-group"), "RG"), (("--subscription-id",), "ID")):
        g.add_argument(
            *flags,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help="accepted for az ml's command lines and ignored: workspaces are local",
        )
    g.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default=argparse.SUPPRESS,
        help="output format (default: json)",
    )
    g.add_argument(
        "--query",
        metavar="JMESPATH",
        default=argparse.SUPPRESS,
        help="JMESPath expression applied to the JSON result, e.g. \"[?status=='Failed'].runId\"",
    )
    return common


#: Options of ``run submit-script`` that take a value; everything else before SCRIPT is
#: a flag. ``split_script_args`` needs this to find where SCRIPT is.
_SUBMIT_VALUE_OPTIONS = frozenset(
    {
        "-e",
        "--experiment-name",
        "-c",
        "--run-configuration-name",
        "-t",
        "--target",
        "-d",
        "--source-directory",
        "-w",
        "--workspace",
        "--workspace-name",
        "-g",
        "--resource-group",
        "--subscription-id",
        "-o",
        "--output",
        "--query",
    }
)


class Tree:
    """The command tree under construction: each module of runner.cli.commands adds its
    group of commands to it (``add_commands(tree)``), with a handler per leaf."""

    def __init__(self, common: argparse.ArgumentParser, groups: Any) -> None:
        self.common = common
        self.groups = groups

    def group(self, name: str, summary: str, example: str) -> Any:
        """A command group (``runner NAME ...``); returns what its commands are added to."""
        g = self.command(self.groups, name, summary, example)
        return g.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def leaf(
        self,
        where: Any,
        name: str,
        summary: str,
        example: str,
        handler: Callable[[Context], int],
    ) -> argparse.ArgumentParser:
        """A command of a group, run by ``handler``; returns its parser for its options."""
        p = self.command(where, name, summary, example)
        p.set_defaults(handler=handler)
        return p

    def command(self, where: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
        """A parser with the global options, ``summary`` as its help and ``example`` below."""
        parser: argparse.ArgumentParser = where.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=dedent(example),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[self.common],
            allow_abbrev=False,
        )
        return parser


def add_run_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--run", dest="run_id", required=True, metavar="ID", help="the run id")


def add_experiment_option(
    p: argparse.ArgumentParser,
    help: str = "experiment name (default: the one recorded by 'runner folder attach -e')",
) -> None:
    p.add_argument("-e", "--experiment-name", metavar="EXP", help=help)


def dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


def split_script_args(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Cut ``run submit-script`` argv after SCRIPT: (what argparse parses, the script's args).

    argparse would drop a '--' and can mistake a script argument for one of ours, so
    the script's arguments never go through it.
    """
    for i in range(len(argv) - 1):
        if argv[i] == "run" and argv[i + 1] == "submit-script":
            break
    else:
        return argv, None
    j = i + 2
    while j < len(argv):
        word = argv[j]
        if word == "--":
            return argv[: j + 2], argv[j + 2 :]
        if word.startswith("-") and word != "-":
            j += 2 if word in _SUBMIT_VALUE_OPTIONS else 1
            continue
        return argv[: j + 1], argv[j + 1 :]
    return argv, []
