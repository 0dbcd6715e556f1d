"""``runner env ...``: its commands and their handlers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.cli.context import Context
from runner.cli.parser import Tree, positive_int
from runner.errors import UserError


def add_commands(tree: Tree) -> None:
    """Add the ``env`` commands to the command tree."""
    env = tree.group(
        "env",
        "registered environments",
        """
        examples:
          runner env list
          runner env show sklearn-env --version 2
          runner env build --from-run mnist_1700000000_1a2b3c4d
        """,
    )
    tree.leaf(
        env,
        "list",
        "List registered environments (latest version of each).",
        """
        example:
          runner env list -o table
        """,
        _env_list,
    )
    p = tree.leaf(
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
        "--version", type=positive_int, metavar="V", help="a version (default: the latest)"
    )
    p = tree.leaf(
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
        type=positive_int,
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


def _env_list(ctx: Context) -> int:
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


def _env_show(ctx: Context) -> int:
    from runner.environment import Environment, redacted

    version = None if ctx.args.version is None else str(ctx.args.version)
    ctx.emit(redacted(Environment.get(ctx.workspace(), ctx.args.name, version).to_dict()))
    return 0


def _env_build(ctx: Context) -> int:
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
