"""The ``runner`` command line (also ``python -m runner``), modelled on ``az ml`` v1.

Every command prints JSON by default (``-o table`` for people, ``-o tsv`` for shell
loops) and takes the global options ``-w/--workspace``, ``-o/--output`` and ``--query``
before or after the command words. A mistake the user can fix prints one line,
``runner: error: ...``, and exits 2; other runner errors exit 1; a bug keeps its
traceback.

``main(argv)`` returns the exit code instead of exiting, so tests call it in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from runner.errors import NotFoundError, RunnerError, RunnerWarning, UserError
from runner.status import RunStatus

if TYPE_CHECKING:
    from jmespath.parser import ParsedResult

    from runner.run import Run
    from runner.workspace import Workspace

PROG = "runner"
OUTPUT_FORMATS = ("json", "table", "tsv")
#: Longest text of one table cell; longer values end in "...".
_CELL_MAX = 60
_STATUS_VALUES = [s.value for s in RunStatus]
#: Key of the default experiment that ``runner folder attach -e`` records in config.json.
EXPERIMENT_KEY = "experiment_name"


class _UsageError(UserError):
    """A command line argparse cannot parse."""


class _Interrupted(RunnerError):
    """Ctrl-C while following a run."""

    exit_code = 130


# -- the parser ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and a pointer to --help, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message}; see '{self.prog} --help'")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number between 1 and 65535")
    return value


def _status(text: str) -> str:
    if text not in _STATUS_VALUES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run status; use one of {', '.join(_STATUS_VALUES)}"
        )
    return text


def _global_options() -> _Parser:
    """-w, -o and --query, accepted before or after the command words.

    Defaults are SUPPRESS so that a subcommand's parser never overwrites a value given
    before the command words; ``_Context`` supplies the real defaults.
    """
    common = _Parser(add_help=False, allow_abbrev=False)
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
    g.add_argument(
        "-g",
        "--resource-group",
        metavar="RG",
        default=argparse.SUPPRESS,
        help="accepted for az ml's command lines and ignored: workspaces are local",
    )
    g.add_argument(
        "--subscription-id",
        metavar="ID",
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
#: a flag. ``_split_script_args`` needs this to find where SCRIPT is.
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


def build_parser() -> argparse.ArgumentParser:
    """The whole ``runner`` command tree."""
    common = _global_options()
    parser = _Parser(
        prog=PROG,
        description="Run, track and inspect experiments offline (the Azure ML v1 run model).",
        epilog=_dedent(
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
    from runner import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def leaf(
        where: Any, name: str, summary: str, example: str, handler: Callable[[_Context], int]
    ) -> argparse.ArgumentParser:
        p = command(where, name, summary, example)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, summary: str, example: str) -> Any:
        g = command(groups, name, summary, example)
        return g.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(where: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = where.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=_dedent(example),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
            allow_abbrev=False,
        )
        return parser

    # experiment
    exp = group(
        "experiment",
        "experiments of the workspace",
        """
        example:
          runner experiment list
        """,
    )
    leaf(
        exp,
        "list",
        "List the experiments of the workspace, oldest first.",
        """
        example:
          runner experiment list -o table
        """,
        _experiment_list,
    )

    # run
    run = group(
        "run",
        "submit, list, inspect and control runs",
        """
        examples:
          runner run submit-script -e mnist train.py --lr 0.01
          runner run list -e mnist -o table
          runner run show -r mnist_1700000000_1a2b3c4d
        """,
    )
    p = leaf(
        run,
        "list",
        "List the runs of an experiment, newest first.",
        """
        Tag and property conditions all have to hold: KEY=VALUE matches a value, a bare
        KEY matches any run that has the key.

        examples:
          runner run list -e mnist
          runner run list -e mnist --status Completed --tags best lr=0.01 --last 5
          runner run list -e mnist --query "[?status=='Failed'].runId"
          runner run list -e mnist -o table
        """,
        _run_list,
    )
    _add_experiment_option(p)
    p.add_argument(
        "--status",
        type=_status,
        metavar="STATUS",
        help=f"only runs with this status: {', '.join(_STATUS_VALUES)}",
    )
    p.add_argument(
        "--tags", nargs="+", action="extend", metavar="KEY[=VALUE]", help="tag conditions"
    )
    p.add_argument(
        "--properties",
        nargs="+",
        action="extend",
        metavar="KEY[=VALUE]",
        help="property conditions",
    )
    p.add_argument("--include-children", action="store_true", help="list child runs too")
    p.add_argument("--last", type=_positive_int, metavar="N", help="only the N newest runs")

    p = leaf(
        run,
        "show",
        "Show a run: its details, tags and metrics.",
        """
        examples:
          runner run show -r mnist_1700000000_1a2b3c4d
          runner run show -r mnist_1700000000_1a2b3c4d --query metrics.accuracy
        """,
        _run_show,
    )
    _add_run_option(p)

    p = leaf(
        run,
        "update",
        "Add or remove tags of a run; prints the tags it has afterwards.",
        """
        KEY=VALUE sets a tag; a bare KEY sets a value-less tag (its value is null).

        example:
          runner run update -r mnist_1700000000_1a2b3c4d --add-tag best --add-tag lr=0.01 --remove-tag draft
        """,
        _run_update,
    )
    _add_run_option(p)
    p.add_argument(
        "--add-tag",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="tag to set (repeatable)",
    )
    p.add_argument(
        "--remove-tag",
        action="append",
        default=[],
        metavar="KEY",
        help="tag to remove (repeatable)",
    )

    p = leaf(
        run,
        "cancel",
        "Cancel a run and its unfinished children.",
        """
        A running run is stopped (its whole process tree); a queued one never starts.
        Canceling a finished run changes nothing and says so.

        -e (as az ml takes it) checks that the run is in that experiment.

        examples:
          runner run cancel -r mnist_1700000000_1a2b3c4d
          runner run cancel -r mnist_1700000000_1a2b3c4d -w myws -e mnist
        """,
        _run_cancel,
    )
    _add_run_option(p)
    _add_experiment_option(p, "the run's experiment (checked when given)")

    p = leaf(
        run,
        "logs",
        "Print a run's logs (with --follow: until the run ends).",
        """
        examples:
          runner run logs -r mnist_1700000000_1a2b3c4d
          runner run logs -r mnist_1700000000_1a2b3c4d --follow
        """,
        _run_logs,
    )
    _add_run_option(p)
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the run ends"
    )

    p = leaf(
        run,
        "download",
        "Download a run's stored files; prints the paths written.",
        """
        examples:
          runner run download -r mnist_1700000000_1a2b3c4d -p outputs -d ./results
          runner run download -r mnist_1700000000_1a2b3c4d
        """,
        _run_download,
    )
    _add_run_option(p)
    p.add_argument("-p", "--prefix", help="only files whose name starts with PREFIX, e.g. outputs")
    p.add_argument(
        "-d",
        "--output-dir",
        default=".",
        metavar="DIR",
        help="folder to write into (default: the current folder)",
    )

    p = leaf(
        run,
        "submit-script",
        "Submit a script as a run; prints the run as soon as it is submitted.",
        """
        Options for runner go BEFORE the script; everything after SCRIPT is passed to the
        script unchanged, even words that start with '-' (as with 'python -m' or
        'docker run'). Use '--' before a script whose name starts with '-'.

        examples:
          runner run submit-script -e mnist train.py --lr 0.01 --epochs 3
          runner run submit-script -e mnist -c docker -d src train.py
          runner run submit-script -e mnist -t gpu-box --show-output train.py
          runner folder attach -e mnist && runner run submit-script train.py
        """,
        _run_submit_script,
    )
    _add_experiment_option(p)
    p.add_argument(
        "-c",
        "--run-configuration-name",
        metavar="RUNCONFIG",
        help="a run configuration: NAME for ./.runner/NAME.runconfig, or a path to a .runconfig file",
    )
    p.add_argument("-t", "--target", metavar="TARGET", help="compute target name (default: local)")
    p.add_argument(
        "-d",
        "--source-directory",
        default=".",
        metavar="DIR",
        help="folder snapshotted and run from; SCRIPT is relative to it (default: .)",
    )
    p.add_argument(
        "--show-output",
        action="store_true",
        help="stream the logs and wait; exit 0 only if the run Completed",
    )
    p.add_argument("script", metavar="SCRIPT", help="the script, relative to --source-directory")
    p.add_argument("args", nargs="*", metavar="ARGS", help="passed to the script unchanged")

    # folder
    folder = group(
        "folder",
        "attach a project folder to a workspace",
        """
        example:
          runner folder attach -e mnist
        """,
    )
    p = leaf(
        folder,
        "attach",
        "Write .runner/config.json and sample run configurations into a folder.",
        """
        Creates .runner/config.json (pointing at the workspace), and the sample run
        configurations .runner/local.runconfig and .runner/docker.runconfig unless they
        exist. With -e, the experiment becomes the folder's default for 'runner run ...'.

        examples:
          runner folder attach -e mnist
          runner -w ~/team-workspace folder attach -e mnist --path ./project
        """,
        _folder_attach,
    )
    _add_experiment_option(p, "default experiment for commands run in this folder")
    p.add_argument("-p", "--path", default=".", help="the project folder (default: .)")

    # target
    target = group(
        "target",
        "compute targets: where runs execute",
        """
        examples:
          runner target list -o table
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519
          runner target detach gpu-box
        """,
    )
    leaf(
        target,
        "list",
        "List compute targets ('local' always exists): name, type, address, port, user.",
        """
        Secrets (an SSH password) are never shown: they stay in the workspace keyvault.

        examples:
          runner target list -o table
          runner target list --query "[?type=='remote'].name" -o tsv
        """,
        _target_list,
    )
    p = leaf(
        target,
        "attach",
        "Attach a host reached over SSH as a compute target (checked before it is recorded).",
        """
        Attaching logs in to the host first: its key must be known (in WS/ssh/known_hosts or
        ~/.ssh/known_hosts), the login accepted, and python3 >= 3.9 on the host's PATH;
        nothing is recorded when a check fails. A host whose key is not known yet shows its
        key type and SHA256 fingerprint: compare it with the host's own
        (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run there), then answer the
        prompt, or, without a terminal, pass it as --accept-host-key. An accepted key is
        added to WS/ssh/known_hosts (never to ~/.ssh/known_hosts). The password, if any, is
        read from stdin and kept in the workspace keyvault.

        examples:
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519 \\
              --accept-host-key SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg
          echo "$PASS" | runner target attach lab --address lab.local --ssh-port 2222 --username me --password-stdin
        """,
        _target_attach,
    )
    p.add_argument("name", metavar="NAME", help="name of the new target")
    p.add_argument("--address", required=True, help="host name or IP address")
    p.add_argument("--ssh-port", type=_port, default=22, metavar="PORT", help="default: 22")
    p.add_argument("--username", required=True, help="user to log in as")
    p.add_argument("--private-key-file", metavar="FILE", help="SSH private key")
    p.add_argument("--password-stdin", action="store_true", help="read the SSH password from stdin")
    p.add_argument(
        "--accept-host-key",
        metavar="SHA256:...",
        help="accept a host not known yet if its key has this fingerprint (as "
        "`ssh-keygen -l` prints it); a different key fails",
    )
    p = leaf(
        target,
        "detach",
        "Detach a compute target (runs made on it stay recorded).",
        """
        Its secrets leave the workspace keyvault, and its host's key leaves WS/ssh/known_hosts
        unless another attached target uses the same host and port.

        example:
          runner target detach gpu-box
        """,
        _target_detach,
    )
    p.add_argument("name", metavar="NAME")

    # env
    env = group(
        "env",
        "registered environments",
        """
        examples:
          runner env list
          runner env show sklearn-env --version 2
          runner env build --from-run mnist_1700000000_1a2b3c4d
        """,
    )
    leaf(
        env,
        "list",
        "List registered environments (latest version of each).",
        """
        example:
          runner env list -o table
        """,
        _env_list,
    )
    p = leaf(
        env,
        "show",
        "Show a registered environment's definition.",
        """
        examples:
          runner env show sklearn-env
          runner env show sklearn-env --version 2
        """,
        _env_show,
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--version", type=_positive_int, metavar="V", help="a version (default: the latest)"
    )
    p = leaf(
        env,
        "build",
        "Build an environment now: a registered one, a definition on disk, or the exact "
        "environment of a run (from the lock stored with it, without solving again).",
        """
        Progress lines go to stderr while it builds (-q: none); the result is printed
        as JSON: kind, python, prefix, lockFile, cacheKey, seconds, log. Builds are
        cached as for submitted runs ($RUNNER_ENV_CACHE): a second build is a hit.

        examples:
          runner env build sklearn-env
          runner env build sklearn-env --version 2
          runner env build --from-run mnist_1700000000_1a2b3c4d
          runner env build --file ./saved-env        # a folder from env.save_to_directory()
          runner env build --file environment.yml    # or a pip requirements.txt
        """,
        _env_build,
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="a registered environment")
    p.add_argument(
        "--version",
        type=_positive_int,
        metavar="V",
        help="the version of NAME (default: the latest)",
    )
    p.add_argument(
        "--from-run",
        metavar="RUN_ID",
        help="rebuild the run's environment exactly, from its stored lock",
    )
    p.add_argument(
        "--file",
        metavar="PATH",
        help="a folder written by env.save_to_directory(), a conda .yml or a requirements.txt",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    # daemon
    daemon = group(
        "daemon",
        "the workspace daemon that supervises submitted runs",
        """
        A submit starts the daemon on demand (it exits after 10 idle minutes);
        'runner daemon start' keeps one running until 'runner daemon stop'.

        examples:
          runner daemon start
          runner daemon status
          runner daemon stop
        """,
    )
    p = leaf(
        daemon,
        "start",
        "Start the workspace daemon (or keep the running one) until it is stopped.",
        """
        examples:
          runner daemon start               # detached, stays up
          runner daemon start --foreground  # in this terminal (for systemd)
        """,
        _daemon_start,
    )
    p.add_argument(
        "--foreground", action="store_true", help="run in this process instead of detaching"
    )
    p.add_argument(
        "--gpus",
        metavar="all|0,1,...",
        help="GPUs runs may use (default: all that NVML finds; 'none' for none)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="runs at once (default and 0: no limit; GPU runs also wait for their GPUs)",
    )
    p.add_argument(
        "--system-metrics-s",
        type=float,
        metavar="S",
        help="seconds between sys/... metrics samples of running runs (default 10; 0: off; "
        "else 0.05 to 86400)",
    )
    leaf(
        daemon,
        "stop",
        "Stop the workspace daemon; running runs go on and a new daemon re-adopts them.",
        """
        example:
          runner daemon stop
        """,
        _daemon_stop,
    )
    leaf(
        daemon,
        "status",
        "Show whether the daemon runs, its pid, and the runs it supervises.",
        """
        example:
          runner daemon status -o table
        """,
        _daemon_status,
    )
    # workspace
    wsg = group(
        "workspace",
        "the workspace folder itself",
        """
        example:
          runner workspace check
        """,
    )
    p = leaf(
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
    p = leaf(
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
    who.add_argument("--group", metavar="GROUP", help="share with this group (name or gid)")
    who.add_argument("--private", action="store_true", help="only the owner may use it")
    return parser


def _add_run_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--run", dest="run_id", required=True, metavar="ID", help="the run id")


def _add_experiment_option(
    p: argparse.ArgumentParser,
    help: str = "experiment name (default: the one recorded by 'runner folder attach -e')",
) -> None:
    p.add_argument("-e", "--experiment-name", metavar="EXP", help=help)


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


def _split_script_args(argv: list[str]) -> tuple[list[str], list[str] | None]:
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


# -- context and output -------------------------------------------------------------------


class _Context:
    """What a command handler needs: the parsed options, the workspace, and output."""

    def __init__(self, args: argparse.Namespace, query: ParsedResult | None) -> None:
        self.args = args
        self.output: str = getattr(args, "output", "json")
        self._query = query
        self._query_text: str = getattr(args, "query", "")
        self._workspace: Workspace | None = None

    def workspace(self, create: bool = False) -> Workspace:
        """The workspace of ``-w`` (a folder or a name), else the one ``Workspace.from_config()``
        finds. ``create``: a named workspace that does not exist yet is made (and said)."""
        if self._workspace is None:
            from runner.workspace import Workspace, is_workspace_name, named_workspace_path

            path = getattr(self.args, "workspace", None)
            if (
                create
                and is_workspace_name(path)
                and not (named_workspace_path(str(path)) / "workspace.json").exists()
            ):
                self._workspace = Workspace.create(str(path), exist_ok=True)
                note(f"created workspace {self._workspace.name!r} at {self._workspace.path}")
            else:
                self._workspace = Workspace.get(path) if path else Workspace.from_config()
            if getattr(self.args, "group", None) in ("run", "experiment"):
                from runner import lifecycle

                # Runs left waiting get a daemon; dead interactive runs end (Failed).
                lifecycle.sweep(self._workspace, force=True)
        return self._workspace

    def emit(self, value: Any, table_columns: Sequence[str] | None = None) -> None:
        """Print a command's result in the chosen format, after ``--query``."""
        if self._query is not None:
            import jmespath.exceptions

            try:
                value = self._query.search(value)
            except jmespath.exceptions.JMESPathError as exc:
                raise UserError(
                    f"--query {self._query_text!r} failed: {_jmespath_message(exc)}"
                ) from exc
            table_columns = None
        if self.output == "table":
            text = render_table(value, table_columns)
        elif self.output == "tsv":
            text = render_tsv(value)
        else:
            text = dumps_json(value, indent=2)
        if text:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


#: How a float that JSON (RFC 8259) has no number for appears in the CLI's JSON output.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinite floats as the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"`` (a metric can hold them; strict JSON cannot). Strings, not null:
    null would read as "no value", and ``float()`` reads these three back."""
    if isinstance(value, float):
        return value if math.isfinite(value) else NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """The one way the CLI writes JSON: strict RFC 8259 (``strict_json``, then
    ``allow_nan=False``, so a value that slipped past raises instead of printing NaN)."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def note(message: str) -> None:
    """One line on stderr that is not an error."""
    print(f"{PROG}: note: {_one_line(message)}", file=sys.stderr)


def _jmespath_message(exc: Exception) -> str:
    """jmespath's multi-line message (expression, caret) as one line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first.rstrip(":").removesuffix(", for expression")
    position = getattr(exc, "lex_position", None)
    if position is None:
        position = getattr(exc, "lexer_position", None)
    if isinstance(position, int) and "column" not in first:
        first += f" at column {position}"
    return first


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines()]
    return " | ".join(line for line in lines if line)


def _cell(value: Any, limit: int = _CELL_MAX) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = ", ".join(k if v is None else f"{k}={_cell(v, 0)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(_cell(v, 0) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split()) if any(c in text for c in "\t\r\n") else text
    if limit and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _header(key: str) -> str:
    return key[:1].upper() + key[1:]


def _grid(header: list[str] | None, rows: list[list[str]]) -> str:
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = []
    if header:
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths).rstrip())
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return "\n".join(lines)


def render_table(value: Any, columns: Sequence[str] | None = None) -> str:
    """Aligned columns: a list of objects is one row each, an object is key/value rows."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(columns) if columns else list(dict.fromkeys(k for v in value for k in v))
        return _grid([_header(k) for k in keys], [[_cell(v.get(k)) for k in keys] for v in value])
    if isinstance(value, list):
        return _grid(["Result"], [[_cell(v)] for v in value]) if value else ""
    if isinstance(value, dict):
        keys = [k for k in columns if k in value] if columns else list(value)
        return _grid(["Key", "Value"], [[k, _cell(value[k])] for k in keys])
    return _cell(value, 0)


def render_tsv(value: Any) -> str:
    """Tab-separated values without a header (for ``while read`` loops)."""

    def field(v: Any) -> str:
        if isinstance(v, (dict, list)):
            v = dumps_json(v, separators=(",", ":"))
        return _cell(v, 0).replace("\t", " ")

    def line(v: Any) -> str:
        if isinstance(v, dict):
            return "\t".join(field(x) for x in v.values())
        if isinstance(v, list):
            return "\t".join(field(x) for x in v)
        return field(v)

    if isinstance(value, list):
        return "\n".join(line(v) for v in value)
    return line(value)


# -- helpers shared by commands -------------------------------------------------------------


@contextlib.contextmanager
def _needs(module: str, what: str) -> Iterator[None]:
    """Turn the absence of a not-yet-shipped runner module into a one-line error."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise RunnerError(
            f"{what} needs {module}, which this version of runner does not have yet"
        ) from exc


@contextlib.contextmanager
def _still_running(run: Run) -> Iterator[None]:
    """Ctrl-C while following a run stops the following, not the run: say so."""
    try:
        yield
    except KeyboardInterrupt:
        raise _Interrupted(
            f"interrupted; run {run.id} keeps running; stop it with 'runner run cancel -r {run.id}'"
        ) from None


def _parse_key_values(items: Sequence[str], option: str) -> dict[str, str | None]:
    """KEY=VALUE -> {KEY: VALUE}; a bare KEY -> {KEY: None}."""
    out: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key.strip():
            raise UserError(
                f"{option} {item!r} has no key; write KEY=VALUE, or KEY alone for a value-less tag"
            )
        out[key] = value if sep else None
    return out


def _parse_conditions(items: Sequence[str], option: str) -> dict[str, str | None]:
    """Query conditions: KEY=VALUE, or a bare KEY (any value); a value implies the key."""
    out: dict[str, str | None] = {}
    for item in items:
        ((key, value),) = _parse_key_values([item], option).items()
        known = out.get(key)
        if value is None:
            out.setdefault(key, None)
        elif known is not None and known != value:
            raise UserError(
                f"{option} asks for {key}={known} and {key}={value}; a run has one value per key"
            )
        else:
            out[key] = value
    return out


def find_project_config(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``.runner/config.json`` (or ``config.json``) at or above ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for rel in (".runner/config.json", "config.json"):
            candidate = folder / rel
            if not candidate.is_file():
                continue
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and ("workspace_path" in data or "workspace_name" in data):
                return candidate, data
    return None


def _default_experiment() -> str | None:
    """The experiment recorded by ``runner folder attach -e`` here or in a folder above."""
    found = find_project_config()
    if found is not None and isinstance(found[1].get(EXPERIMENT_KEY), str):
        return str(found[1][EXPERIMENT_KEY])
    return None


def _experiment_name(ctx: _Context) -> str:
    name: str | None = ctx.args.experiment_name or _default_experiment()
    if name:
        return name
    raise UserError(
        "no experiment given; pass -e EXPERIMENT, or record a default for this folder with "
        "'runner folder attach -e EXPERIMENT'"
    )


def _get_run(ctx: _Context) -> Run:
    from runner.run import Run

    return Run.get(ctx.workspace(), ctx.args.run_id)


def run_summary(run: Run) -> dict[str, Any]:
    """The fields ``run list`` shows for each run."""
    details = run.get_details()
    parent = run.parent
    return {
        "runId": run.id,
        "number": run.number,
        "displayName": run.display_name,
        "status": details["status"],
        "statusDetails": details.get("statusDetails"),
        "type": run.type,
        "target": details["target"],
        "startTimeUtc": details.get("startTimeUtc"),
        "endTimeUtc": details.get("endTimeUtc"),
        "tags": run.get_tags(),
        "properties": details["properties"],
        "parentRunId": None if parent is None else parent.id,
    }


_RUN_TABLE_COLUMNS = ("number", "runId", "status", "target", "startTimeUtc", "endTimeUtc", "tags")


# -- commands -------------------------------------------------------------------------------


def _experiment_list(ctx: _Context) -> int:
    ctx.emit([{"name": name} for name in ctx.workspace().experiments])
    return 0


def _run_list(ctx: _Context) -> int:
    from runner.run import Run

    ws = ctx.workspace()
    name = _experiment_name(ctx)
    experiments = ws.experiments
    if name not in experiments:
        raise NotFoundError(
            f"no experiment {name!r} in workspace {ws.name}; known: "
            f"{', '.join(experiments) or 'none yet'}"
        )
    args = ctx.args
    tag_pairs = _parse_conditions(args.tags or [], "--tags")
    prop_pairs = _parse_conditions(args.properties or [], "--properties")
    # The store matches either key=value or key-only conditions in one query; a mix
    # sends the pairs to the store and checks the bare keys here.
    tag_filter, tag_keys = _split_filter(tag_pairs)
    prop_filter, prop_keys = _split_filter(prop_pairs)
    runs = Run.list(
        experiments[name],
        tags=tag_filter,
        properties=prop_filter,
        status=args.status,
        include_children=args.include_children,
    )
    summaries = (run_summary(r) for r in runs)
    matching = (
        s
        for s in summaries
        if all(k in s["tags"] for k in tag_keys) and all(k in s["properties"] for k in prop_keys)
    )
    result = list(itertools.islice(matching, args.last) if args.last else matching)
    ctx.emit(result, _RUN_TABLE_COLUMNS)
    return 0


def _split_filter(
    pairs: dict[str, str | None],
) -> tuple[dict[str, str | None] | list[str] | None, list[str]]:
    """(filter for Run.list, bare keys left to check on the results)."""
    with_value: dict[str, str | None] = {k: v for k, v in pairs.items() if v is not None}
    bare = [k for k, v in pairs.items() if v is None]
    if not pairs:
        return None, []
    if not with_value:
        return bare, []
    return with_value, bare


def _run_show(ctx: _Context) -> int:
    run = _get_run(ctx)
    details = run.get_details()
    parent = run.parent
    shown = {
        "runId": details.pop("runId"),
        "experimentName": run.experiment.name,
        "number": run.number,
        "displayName": run.display_name,
        "type": run.type,
        "parentRunId": None if parent is None else parent.id,
        **details,
        "tags": run.get_tags(),
        "metrics": run.get_metrics(),
    }
    ctx.emit(shown)
    return 0


def _run_update(ctx: _Context) -> int:
    args = ctx.args
    if not args.add_tag and not args.remove_tag:
        raise UserError(
            "nothing to update; pass --add-tag KEY[=VALUE] and/or --remove-tag KEY; see "
            "'runner run update --help'"
        )
    adds = _parse_key_values(args.add_tag, "--add-tag")
    removes = list(dict.fromkeys(args.remove_tag))
    for key in removes:
        if not key.strip():
            raise UserError("--remove-tag needs a tag key, got ''")
        if key in adds:
            raise UserError(f"tag {key!r} is both added and removed; pick one")
    run = _get_run(ctx)
    if adds:
        run.set_tags(adds)
    if removes:
        missing = [k for k in removes if k not in run.get_tags()]
        if missing:
            note(f"run {run.id} had no tag {', '.join(map(repr, missing))}; nothing to remove")
        run.remove_tags(removes)
    ctx.emit(run.get_tags())
    return 0


def _run_cancel(ctx: _Context) -> int:
    run = _get_run(ctx)
    exp_name = ctx.args.experiment_name
    if exp_name is not None and run.experiment.name != exp_name:
        raise UserError(
            f"run {run.id} is in experiment {run.experiment.name!r}, not {exp_name!r}; "
            "drop -e or pass the run's experiment"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunnerWarning)
        run.cancel()
    for w in caught:
        if issubclass(w.category, RunnerWarning):
            note(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ctx.emit({"runId": run.id, "status": run.get_status()})
    return 0


def _run_logs(ctx: _Context) -> int:
    run = _get_run(ctx)
    if ctx.args.follow and not RunStatus(run.get_status()).is_terminal:
        with _needs("runner.logstream", "'runner run logs --follow'"):
            from runner.logstream import stream_run_output

        with _still_running(run):
            stream_run_output(run, out=sys.stdout)
        return 0
    files = run.get_details()["logFiles"]
    if not files:
        note(f"run {run.id} has no log files yet (status {run.get_status()})")
        return 0
    for i, (name, path) in enumerate(files.items()):
        if len(files) > 1:
            sys.stdout.write(("\n" if i else "") + f"==> {name} <==\n")
        _copy_text(Path(path), sys.stdout)
    sys.stdout.flush()
    return 0


def _copy_text(path: Path, out: TextIO) -> None:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            while chunk := f.read(1 << 16):
                out.write(chunk)
    except FileNotFoundError:
        note(f"log file {path} disappeared while reading it")


def _run_download(ctx: _Context) -> int:
    run = _get_run(ctx)
    prefix = ctx.args.prefix
    written = run.download_files(prefix=prefix, output_directory=ctx.args.output_dir)
    if not written:
        names = run.get_file_names()
        where = f" under {prefix!r}" if prefix else ""
        note(
            f"run {run.id} has no files{where}"
            + (
                f"; its files: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
                if names
                else ""
            )
        )
    ctx.emit(written)
    return 0


def _run_submit_script(ctx: _Context) -> int:
    from runner.config import RunConfiguration, ScriptRunConfig
    from runner.experiment import Experiment

    args = ctx.args
    script_args: list[str] = args.args
    misplaced = [a for a in script_args if a in ("-e", "--experiment-name")]
    if not args.experiment_name and misplaced and _default_experiment() is None:
        raise UserError(
            f"no experiment given: {misplaced[0]!r} came after the script, so it is an argument of "
            f"{args.script}; put runner's options before SCRIPT: runner run submit-script "
            f"-e EXPERIMENT {args.script} ..."
        )
    exp_name = _experiment_name(ctx)
    ws = ctx.workspace()
    if args.target:
        from runner.compute import ComputeTarget

        ComputeTarget(ws, args.target)  # an unknown name fails here, before anything runs
    run_config = None
    if args.run_configuration_name:
        rc_name: str = args.run_configuration_name
        if rc_name.endswith(".runconfig") or os.sep in rc_name or "/" in rc_name:
            run_config = RunConfiguration.load(path=rc_name)
        else:
            run_config = RunConfiguration.load(path=".", name=rc_name)
    config = ScriptRunConfig(
        source_directory=args.source_directory,
        script=args.script,
        arguments=script_args,
        run_config=run_config,
        compute_target=args.target,
    )
    experiment = Experiment(ws, exp_name)
    with _needs("runner.submit", "'runner run submit-script'"):
        run = experiment.submit(config)
    ctx.emit(run_summary(run))
    if not args.show_output:
        return 0
    with (
        _needs("runner.logstream", "'runner run submit-script --show-output'"),
        _still_running(run),
    ):
        details = run.wait_for_completion(show_output=True, raise_on_error=False)
    status = details["status"]
    if status == RunStatus.COMPLETED.value:
        return 0
    error = (details.get("error") or {}).get("error") or {}
    message = error.get("message")
    print(
        f"{PROG}: run {run.id} ended {status}" + (f": {_one_line(message)}" if message else ""),
        file=sys.stderr,
    )
    return 1


def _folder_attach(ctx: _Context) -> int:
    from runner.config import RunConfiguration
    from runner.environment import DEFAULT_CPU_IMAGE, Environment
    from runner.workspace import check_experiment_name

    folder = Path(ctx.args.path).expanduser().resolve()
    if not folder.is_dir():
        raise NotFoundError(f"--path {str(folder)!r} is not a folder; create it first")
    exp_name = ctx.args.experiment_name
    if exp_name is not None:
        check_experiment_name(exp_name)
    ws = ctx.workspace(create=True)  # az ml's first step names the workspace: make it here
    config_path = folder / ".runner" / "config.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(config_path.read_text(encoding="utf-8"))
        previous = loaded if isinstance(loaded, dict) else {}
    existed = config_path.exists()
    written = ws.write_config(folder)
    exp_name = exp_name or previous.get(EXPERIMENT_KEY)
    if exp_name:
        data = json.loads(written.read_text(encoding="utf-8"))
        data[EXPERIMENT_KEY] = exp_name
        tmp = written.with_name(f".config.json.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, written)
    files = [{"path": str(written), "action": "updated" if existed else "created"}]

    docker = RunConfiguration()
    docker_env = Environment("runner-docker")
    docker_env.python.user_managed_dependencies = True  # the image's own python
    docker_env.docker.enabled = True
    docker_env.docker.base_image = DEFAULT_CPU_IMAGE
    docker.environment = docker_env
    for name, rc in (("local", RunConfiguration()), ("docker", docker)):
        target = folder / ".runner" / f"{name}.runconfig"
        if target.exists():
            files.append({"path": str(target), "action": "kept"})
        else:
            files.append({"path": rc.save(path=str(folder), name=name), "action": "created"})
    ctx.emit(
        {
            "workspaceName": ws.name,
            "workspacePath": str(ws.path),
            "experimentName": exp_name,
            "files": files,
        }
    )
    return 0


_TARGET_COLUMNS = ("name", "type", "address", "sshPort", "username")


def _target_row(target: Any) -> dict[str, Any]:
    """What ``target list`` shows of a target: where and as whom, never a secret."""
    config = target.config
    return {
        "name": target.name,
        "type": target.type,
        "address": config.get("address"),
        "sshPort": config.get("ssh_port"),
        "username": config.get("username"),
        "privateKeyFile": config.get("private_key_file"),
        "password": "keyvault" if config.get("password_secret") else None,
    }


def _target_list(ctx: _Context) -> int:
    targets = ctx.workspace().compute_targets.values()
    ctx.emit([_target_row(t) for t in targets], _TARGET_COLUMNS)
    return 0


def _target_attach(ctx: _Context) -> int:
    from runner.compute import ComputeTarget, RemoteCompute
    from runner.errors import HostKeyError

    args = ctx.args
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("--password-stdin read an empty password; pipe the password in")
    key_file = None
    if args.private_key_file:
        key = Path(args.private_key_file).expanduser()
        if not key.is_file():
            raise NotFoundError(f"--private-key-file: no file at {key}")
        key_file = str(key.resolve())
    if key_file is None and password is None:
        raise UserError("pass --private-key-file FILE or --password-stdin to log in to the host")

    def attach(fingerprint: str | None) -> Any:
        config = RemoteCompute.attach_configuration(
            address=args.address,
            ssh_port=args.ssh_port,
            username=args.username,
            password=password,
            private_key_file=key_file,
            host_key_fingerprint=fingerprint,
        )
        return ComputeTarget.attach(ctx.workspace(), args.name, config)

    try:
        target = attach(args.accept_host_key)
    except HostKeyError as err:
        if not err.unknown:
            raise
        if not sys.stdin.isatty():
            raise HostKeyError(
                f"the host key of {err.host} is not known yet: it presents {err.key_type} "
                f"{err.fingerprint}",
                host=err.host,
                key_type=err.key_type,
                fingerprint=err.fingerprint,
                hint="if that is the host's key (on the host: `ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub`), run the command again with --accept-host-key "
                f"{err.fingerprint}",
            ) from None
        if not _confirm_host_key(err, args.name):
            raise UserError(
                f"host key {err.fingerprint} of {err.host} not accepted; nothing was attached"
            ) from None
        target = attach(err.fingerprint)
        note(f"accepted the {err.key_type} key {err.fingerprint} of {err.host}")
    ctx.emit(_target_row(target))
    return 0


def _confirm_host_key(err: Any, name: str) -> bool:
    """Show an unknown host key on the terminal and ask whether to accept it."""
    sys.stderr.write(
        f"The host key of {err.host} (target {name!r}) is not known yet.\n"
        f"  host:        {err.host}\n"
        f"  key type:    {err.key_type}\n"
        f"  fingerprint: {err.fingerprint}\n"
        "Compare it with the host's own: `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` there.\n"
        "Accept this host key? [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _target_detach(ctx: _Context) -> int:
    from runner.compute import ComputeTarget

    ComputeTarget(ctx.workspace(), ctx.args.name).detach()
    ctx.emit({"name": ctx.args.name, "detached": True})
    return 0


def _env_list(ctx: _Context) -> int:
    rows = []
    for env in ctx.workspace().environments.values():
        d = env.to_dict()
        rows.append(
            {
                "name": d["name"],
                "version": d["version"],
                "userManagedDependencies": d["python"]["userManagedDependencies"],
                "dockerEnabled": d["docker"]["enabled"],
                "baseImage": d["docker"]["baseImage"],
            }
        )
    ctx.emit(rows)
    return 0


def _env_show(ctx: _Context) -> int:
    from runner.environment import Environment, redacted

    version = None if ctx.args.version is None else str(ctx.args.version)
    ctx.emit(redacted(Environment.get(ctx.workspace(), ctx.args.name, version).to_dict()))
    return 0


def _env_build(ctx: _Context) -> int:
    from runner import envbuild

    args = ctx.args
    given = [
        what
        for what, value in (
            ("NAME", args.name),
            ("--from-run", args.from_run),
            ("--file", args.file),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise UserError(
            ("give only one of " + ", ".join(given) if given else "nothing to build")
            + ": pass a registered environment's NAME, --from-run RUN_ID or --file PATH"
        )
    if args.version is not None and args.name is None:
        raise UserError(f"--version goes with NAME, not with {given[0]}")
    ws = ctx.workspace()
    log = envbuild.new_build_log(ws)
    source: dict[str, Any]
    if args.from_run is not None:
        run_id: str = args.from_run
        source = {"runId": run_id}

        def build() -> Any:
            return envbuild.rebuild_from_run(ws, run_id, log)

    elif args.file is not None:
        env = envbuild.load_definition(args.file)
        source = {"file": str(Path(args.file).expanduser().resolve()), "name": env.name}

        def build() -> Any:
            return envbuild.build_definition(env, log)

    else:
        name: str = args.name
        version = None if args.version is None else str(args.version)
        source = {"name": name, "version": version}

        def build() -> Any:
            return envbuild.build_registered(ws, name, version, log)

    prepared, seconds = envbuild.timed_build(build, log, None if args.quiet else sys.stderr)
    ctx.emit({**source, **envbuild.describe(prepared, seconds), "log": str(log)})
    return 0


def _daemon_start(ctx: _Context) -> int:
    from runner import daemon_client

    ws = ctx.workspace()
    _write_daemon_settings(ws, ctx.args)
    if ctx.args.foreground:
        from runner.daemon import run_daemon

        return run_daemon(str(ws.path), detach=False, idle_exit_s=None)
    daemon_client.ensure_daemon(ws.path, idle_exit_s=0)
    daemon_client.request(ws.path, {"op": "keep"})
    daemon_client.request(ws.path, {"op": "configure"})
    ctx.emit(daemon_client.request(ws.path, {"op": "status"}))
    return 0


def _write_daemon_settings(ws: Workspace, args: argparse.Namespace) -> None:
    """Record --gpus/--max-concurrent/--system-metrics-s in WS/daemon/settings.json.

    Everything is checked first (the flags, the file, the ``RUNNER_*`` variables): a bad
    value is a ConfigError with the valid range, and then nothing is written or started.
    """
    from runner import access, daemon, gpus

    path = daemon.settings_path(ws.path)
    settings = daemon.read_settings_file(path)
    if args.gpus is not None:
        try:
            gpus.parse_gpu_list(args.gpus, gpus.discover())
        except ValueError as exc:
            raise UserError(str(exc)) from None
        settings["gpus"] = args.gpus
    if args.max_concurrent is not None:
        daemon.check_max_concurrent(args.max_concurrent, "--max-concurrent")
        settings["max_concurrent"] = args.max_concurrent
    if args.system_metrics_s is not None:
        settings["system_metrics_s"] = daemon.check_system_metrics_s(
            args.system_metrics_s, "--system-metrics-s"
        )
    daemon.settings_from(settings, path, strict=True)
    access.make_dirs(path.parent, ws._access)
    access.write_private(path, json.dumps(settings, indent=2) + "\n", ws._access)


def _workspace_check(ctx: _Context) -> int:
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


def _workspace_access(ctx: _Context) -> int:
    from runner import access, daemon_client

    ws = ctx.workspace()
    if ctx.args.private:
        group: str | int | None = None
    elif ctx.args.group is not None:
        group = ctx.args.group
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


def _daemon_stop(ctx: _Context) -> int:
    from runner import daemon_client

    ws = ctx.workspace()
    stopped = daemon_client.stop_daemon(ws.path)
    ctx.emit({"workspace": str(ws.path), "stopped": stopped})
    return 0


def _daemon_status(ctx: _Context) -> int:
    from runner import daemon_client

    ws = ctx.workspace()
    try:
        answer = daemon_client.request(ws.path, {"op": "status"}, timeout_s=5.0)
    except daemon_client.DaemonImpostorError as exc:
        # Said, not obeyed: something else holds the daemon's socket.
        answer = {"running": False, "workspace": str(ws.path), "problem": str(exc)}
    except OSError:
        answer = {"running": False, "workspace": str(ws.path)}
    else:
        answer = {"running": True, **{k: v for k, v in answer.items() if k != "ok"}}
    from runner.daemon import load_settings

    try:
        load_settings(ws, strict=True)
    except UserError as exc:  # the daemon uses the defaults instead: say what to fix
        answer["settingsError"] = str(exc)
        warnings.warn(str(exc), RunnerWarning, stacklevel=1)
    ctx.emit(answer)
    return 0


# -- entry point ----------------------------------------------------------------------------


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if issubclass(category, RunnerWarning):
        print(f"{PROG}: warning: {_one_line(str(message))}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``runner`` command line; returns the exit code.

    Example:
        >>> main(["run", "list", "-e", "mnist", "-o", "table"])  # doctest: +SKIP
        0
    """
    words = list(sys.argv[1:] if argv is None else argv)
    head, script_args = _split_script_args(words)
    try:
        _check_utf8(head)
        args = build_parser().parse_args(head)
        query = _compile_query(getattr(args, "query", None))
    except UserError as err:
        print(f"{PROG}: error: {_one_line(str(err))}", file=sys.stderr)
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
    ctx = _Context(args, query)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunnerWarning)
        warnings.showwarning = _show_warning
        try:
            code: int = args.handler(ctx)
        except RunnerError as err:
            print(f"{PROG}: error: {_one_line(str(err))}", file=sys.stderr)
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


def _compile_query(text: str | None) -> ParsedResult | None:
    if text is None:
        return None
    import jmespath
    import jmespath.exceptions

    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise UserError(
            f"--query {text!r} is not a valid JMESPath expression: {_jmespath_message(exc)}"
        ) from exc


def _silence_stdout() -> None:
    """After the reader of a pipe went away, keep Python from complaining at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
