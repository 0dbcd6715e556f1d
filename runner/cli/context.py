"""What every command handler shares: the parsed options, the workspace, output."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cli.render import dumps_json, jmespath_message, note, render_table, render_tsv
from runner.errors import RunnerError, UserError

if TYPE_CHECKING:
    from jmespath.parser import ParsedResult

    from runner.run import Run
    from runner.workspace import Workspace


#: Key of the default experiment that ``runner folder attach -e`` records in config.json.
EXPERIMENT_KEY = "experiment_name"


class Interrupted(RunnerError):
    """Ctrl-C while following a run."""

    exit_code = 130


class Context:
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
                    f"--query {self._query_text!r} failed: {jmespath_message(exc)}"
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


@contextlib.contextmanager
def needs(module: str, what: str) -> Iterator[None]:
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
def still_running(run: Run) -> Iterator[None]:
    """Ctrl-C while following a run stops the following, not the run: say so."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; run {run.id} keeps running; stop it with 'runner run cancel -r {run.id}'"
        ) from None


def parse_key_values(items: Sequence[str], option: str) -> dict[str, str | None]:
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


def parse_conditions(items: Sequence[str], option: str) -> dict[str, str | None]:
    """Query conditions: KEY=VALUE, or a bare KEY (any value); a value implies the key."""
    out: dict[str, str | None] = {}
    for item in items:
        ((key, value),) = parse_key_values([item], option).items()
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


def default_experiment() -> str | None:
    """The experiment recorded by ``runner folder attach -e`` here or in a folder above."""
    found = find_project_config()
    if found is not None and isinstance(found[1].get(EXPERIMENT_KEY), str):
        return str(found[1][EXPERIMENT_KEY])
    return None


def experiment_name(ctx: Context) -> str:
    name: str | None = ctx.args.experiment_name or default_experiment()
    if name:
        return name
    raise UserError(
        "no experiment given; pass -e EXPERIMENT, or record a default for this folder with "
        "'runner folder attach -e EXPERIMENT'"
    )


def get_run(ctx: Context) -> Run:
    from runner.run import Run

    return Run.get(ctx.workspace(), ctx.args.run_id)
