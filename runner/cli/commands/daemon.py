"""``runner daemon ...``: its commands and their handlers."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import TYPE_CHECKING

from runner.cli.context import Context
from runner.cli.parser import Tree
from runner.errors import RunnerWarning, UserError

if TYPE_CHECKING:
    from runner.workspace import Workspace


def add_commands(tree: Tree) -> None:
    """Add the ``daemon`` commands to the command tree."""
    daemon = tree.group(
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
    p = tree.leaf(
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
    tree.leaf(
        daemon,
        "stop",
        "Stop the workspace daemon; running runs go on and a new daemon re-adopts them.",
        """
        example:
          runner daemon stop
        """,
        _daemon_stop,
    )
    tree.leaf(
        daemon,
        "status",
        "Show whether the daemon runs, its pid, and the runs it supervises.",
        """
        example:
          runner daemon status -o table
        """,
        _daemon_status,
    )


def _daemon_start(ctx: Context) -> int:
    from runner import daemon_client

    ws = ctx.workspace()
    _write_daemon_settings(ws, ctx.args)
    if ctx.args.foreground:
        from runner.service.daemon import run_daemon

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
    from runner import access
    from runner.service import gpus
    from runner.service import settings as daemon

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


def _daemon_stop(ctx: Context) -> int:
    from runner import daemon_client

    ws = ctx.workspace()
    stopped = daemon_client.stop_daemon(ws.path)
    ctx.emit({"workspace": str(ws.path), "stopped": stopped})
    return 0


def _daemon_status(ctx: Context) -> int:
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
    from runner.service.settings import load_settings

    try:
        load_settings(ws, strict=True)
    except UserError as exc:  # the daemon uses the defaults instead: say what to fix
        answer["settingsError"] = str(exc)
        warnings.warn(str(exc), RunnerWarning, stacklevel=1)
    ctx.emit(answer)
    return 0
