"""Benchmark what the daemon's access checks cost one request (the submit path's "wake").

Run: ``python bench/daemon_request.py [--reps 2000]``

A daemon serves a temporary workspace. Timed, interleaved in pairs (the order flipped
every pair): ``daemon_client.request(ws, {"op": "wake"})`` as submit sends it, with the
client's check of the daemon (SO_PEERCRED against daemon.json) vs the same request with
that check switched off in this process; the daemon's own check of the caller runs in
both. Baseline for scale: a bare AF_UNIX connect/send/receive of the same line to the
same daemon. Goal: the client's check costs <= 1 ms per request (median difference), and
the whole request stays within 1 ms of the bare socket round trip.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from common import interleaved, med, ms, print_header, print_table, temp_workspace, verdict

from runner import daemon_client


def bare(path: str) -> None:
    """The same request without runner: connect, one line each way."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(json.dumps({"op": "wake"}).encode() + b"\n")
        daemon_client.recv_line(sock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    print_header(
        "daemon request: the access checks on the submit path",
        f"median of {args.reps} requests each, A/B interleaved",
    )
    with temp_workspace() as ws:
        daemon_client.ensure_daemon(ws.path)
        try:
            path = str(daemon_client.socket_path(ws.path))
            checked = daemon_client._verify_daemon

            def with_check() -> None:
                daemon_client._verify_daemon = checked
                daemon_client.request(ws.path, {"op": "wake"})

            def without_check() -> None:
                daemon_client._verify_daemon = lambda ws_path, sock: None
                daemon_client.request(ws.path, {"op": "wake"})

            for _ in range(200):  # warm up both sides
                with_check()
                bare(path)
            t_check, t_nocheck = interleaved(args.reps, with_check, without_check)
            t_request, t_bare = interleaved(args.reps, with_check, lambda: bare(path))
            daemon_client._verify_daemon = checked
        finally:
            daemon_client.stop_daemon(ws.path)
    cost = med(t_check) - med(t_nocheck)
    over_bare = med(t_request) - med(t_bare)
    print_table(
        ["request", "median ms", "vs"],
        [
            ["request (wake), client check on", ms(med(t_check)), ""],
            ["request (wake), client check off", ms(med(t_nocheck)), ""],
            ["bare socket round trip", ms(med(t_bare)), ""],
            ["runner request, same pairs as bare", ms(med(t_request)),
             f"{med(t_request) / med(t_bare):.2f}x"],
        ],
    )  # fmt: skip
    ok = cost <= 0.001 and over_bare <= 0.001
    print(f"client check: {cost * 1e6:+.0f} us per request (goal <= 1 ms)")
    print(f"runner request over the bare round trip: {over_bare * 1e6:+.0f} us (goal <= 1 ms)")
    print(verdict(ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
