"""``runner studio``: the local web UI over a workspace (runner.studio)."""

from __future__ import annotations

from runner.cli.context import Context
from runner.cli.parser import Tree, port_number


def add_commands(tree: Tree) -> None:
    """Add ``studio`` (a command without sub-commands) to the command tree."""
    p = tree.leaf(
        tree.groups,
        "studio",
        "Serve the studio, a web UI of the workspace's runs: live status, charts, logs, compare, cancel.",
        """
        Binds 127.0.0.1 unless --host says otherwise; any other address needs the
        token printed at start (open the printed URL once). While it serves,
        run.get_portal_url() returns the run's page. Ctrl-C stops it.

        examples:
          runner studio --open
          runner studio -w ~/ws --port 9000
          runner studio --host 0.0.0.0      # other machines too, with the printed token
        """,
        _studio,
    )
    p.add_argument(
        "--port",
        type=lambda text: 0 if text == "0" else port_number(text),
        default=8765,
        metavar="P",
        help="port to listen on (default 8765; 0: any free port)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="H",
        help="address to listen on (default 127.0.0.1; others need the printed token)",
    )
    p.add_argument("--open", action="store_true", help="open the studio in a web browser")


def _studio(ctx: Context) -> int:
    ws = ctx.workspace()
    # Starlette and uvicorn load only for this command: every other command stays quick.
    from runner.studio.server import serve

    return serve(ws, host=ctx.args.host, port=ctx.args.port, open_browser=ctx.args.open)
