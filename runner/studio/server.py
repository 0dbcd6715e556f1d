"""Serving the studio: bind (127.0.0.1 by default), say where, record the address in the
workspace's daemon folder (``get_portal_url`` reads it), serve until stopped, remove it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from runner import access
from runner.errors import UserError
from runner.studio.app import make_app
from runner.studio.security import Guard
from runner.workspace_paths import studio_file

if TYPE_CHECKING:
    from runner.workspace import Workspace


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
            "(0: any free one) or --host"
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(
    ws: Workspace, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False
) -> int:
    """Serve the studio over ``ws`` until SIGINT/SIGTERM; 0 then."""
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    guard = Guard.for_server(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}"  # noqa: S104
    first = url + (f"/?token={guard.token}" if guard.token else "/")
    record = studio_file(ws.path)
    access.make_dirs(record.parent, ws._access)
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    access.write_private(
        tmp, json.dumps({"url": url, "pid": os.getpid(), "host": host}), ws._access
    )
    os.replace(tmp, record)
    print(f"runner studio: serving workspace {ws.path} at {first}", flush=True)
    if guard.token:
        print("runner studio: the token is printed only here; Ctrl-C stops", flush=True)
    config = uvicorn.Config(
        make_app(ws, guard),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    if open_browser:
        webbrowser.open(first)
    # uvicorn re-raises the signal that stopped it once it is done: with these handlers
    # that ends here, where the address file is removed, instead of killing the process.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        _remove_record(record)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class _Stopped(BaseException):
    """SIGTERM or SIGINT after the server shut down."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def _remove_record(record: Path) -> None:
    """Remove the address file if it is still ours (a newer studio may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(record.read_text(encoding="utf-8")).get("pid") == os.getpid():
            record.unlink()
    sys.stdout.flush()
