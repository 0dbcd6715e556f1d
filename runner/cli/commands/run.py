"""``runner run ...``: its commands and their handlers."""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.cli.context import (
    Context,
    default_experiment,
    experiment_name,
    get_run,
    needs,
    parse_conditions,
    parse_key_values,
    still_running,
)
from runner.cli.parser import (
    STATUS_VALUES,
    Tree,
    add_experiment_option,
    add_run_option,
    positive_int,
    status_value,
)
from runner.cli.render import PROG, note, one_line
from runner.errors import NotFoundError, RunnerWarning, UserError
from runner.status import RunStatus

if TYPE_CHECKING:
    from runner.run import Run


def add_commands(tree: Tree) -> None:
    """Add the ``run`` commands to the command tree."""
    run = tree.group(
        "run",
        "submit, list, inspect and control runs",
        """
        examples:
          runner run submit-script -e mnist train.py --lr 0.01
          runner run list -e mnist -o table
          runner run show -r mnist_1700000000_1a2b3c4d
        """,
    )
    _add_list(tree, run)
    _add_show(tree, run)
    _add_update(tree, run)
    _add_cancel(tree, run)
    _add_logs(tree, run)
    _add_download(tree, run)
    _add_submit_script(tree, run)


def _add_list(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_experiment_option(p)
    p.add_argument(
        "--status",
        type=status_value,
        metavar="STATUS",
        help=f"only runs with this status: {', '.join(STATUS_VALUES)}",
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
    p.add_argument("--last", type=positive_int, metavar="N", help="only the N newest runs")


def _add_show(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_run_option(p)


def _add_update(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_run_option(p)
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


def _add_cancel(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_run_option(p)
    add_experiment_option(p, "the run's experiment (checked when given)")


def _add_logs(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_run_option(p)
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the run ends"
    )


def _add_download(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_run_option(p)
    p.add_argument("-p", "--prefix", help="only files whose name starts with PREFIX, e.g. outputs")
    p.add_argument(
        "-d",
        "--output-dir",
        default=".",
        metavar="DIR",
        help="folder to write into (default: the current folder)",
    )


def _add_submit_script(tree: Tree, run: Any) -> None:
    p = tree.leaf(
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
    add_experiment_option(p)
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


RUN_TABLE_COLUMNS = ("number", "runId", "status", "target", "startTimeUtc", "endTimeUtc", "tags")


def _run_list(ctx: Context) -> int:
    from runner.run import Run

    ws = ctx.workspace()
    name = experiment_name(ctx)
    experiments = ws.experiments
    if name not in experiments:
        raise NotFoundError(
            f"no experiment {name!r} in workspace {ws.name}; known: "
            f"{', '.join(experiments) or 'none yet'}"
        )
    args = ctx.args
    tag_pairs = parse_conditions(args.tags or [], "--tags")
    prop_pairs = parse_conditions(args.properties or [], "--properties")
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
    ctx.emit(result, RUN_TABLE_COLUMNS)
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


def _run_show(ctx: Context) -> int:
    run = get_run(ctx)
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


def _run_update(ctx: Context) -> int:
    args = ctx.args
    if not args.add_tag and not args.remove_tag:
        raise UserError(
            "nothing to update; pass --add-tag KEY[=VALUE] and/or --remove-tag KEY; see "
            "'runner run update --help'"
        )
    adds = parse_key_values(args.add_tag, "--add-tag")
    removes = list(dict.fromkeys(args.remove_tag))
    for key in removes:
        if not key.strip():
            raise UserError("--remove-tag needs a tag key, got ''")
        if key in adds:
            raise UserError(f"tag {key!r} is both added and removed; pick one")
    run = get_run(ctx)
    if adds:
        run.set_tags(adds)
    if removes:
        missing = [k for k in removes if k not in run.get_tags()]
        if missing:
            note(f"run {run.id} had no tag {', '.join(map(repr, missing))}; nothing to remove")
        run.remove_tags(removes)
    ctx.emit(run.get_tags())
    return 0


def _run_cancel(ctx: Context) -> int:
    run = get_run(ctx)
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


def _run_logs(ctx: Context) -> int:
    run = get_run(ctx)
    if ctx.args.follow and not RunStatus(run.get_status()).is_terminal:
        with needs("runner.logstream", "'runner run logs --follow'"):
            from runner.logstream import stream_run_output

        with still_running(run):
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


def _run_download(ctx: Context) -> int:
    run = get_run(ctx)
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


def _run_submit_script(ctx: Context) -> int:
    from runner.config import RunConfiguration, ScriptRunConfig
    from runner.experiment import Experiment

    args = ctx.args
    script_args: list[str] = args.args
    misplaced = [a for a in script_args if a in ("-e", "--experiment-name")]
    if not args.experiment_name and misplaced and default_experiment() is None:
        raise UserError(
            f"no experiment given: {misplaced[0]!r} came after the script, so it is an argument of "
            f"{args.script}; put runner's options before SCRIPT: runner run submit-script "
            f"-e EXPERIMENT {args.script} ..."
        )
    exp_name = experiment_name(ctx)
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
    with needs("runner.submit", "'runner run submit-script'"):
        run = experiment.submit(config)
    ctx.emit(run_summary(run))
    if not args.show_output:
        return 0
    with (
        needs("runner.logstream", "'runner run submit-script --show-output'"),
        still_running(run),
    ):
        details = run.wait_for_completion(show_output=True, raise_on_error=False)
    status = details["status"]
    if status == RunStatus.COMPLETED.value:
        return 0
    error = (details.get("error") or {}).get("error") or {}
    message = error.get("message")
    print(
        f"{PROG}: run {run.id} ended {status}" + (f": {one_line(message)}" if message else ""),
        file=sys.stderr,
    )
    return 1
