"""What another user of the machine can do to a workspace: run as that user.

    lc_intruder.py requests WS RUN_ID [OP...]   every daemon request (or those named),
                                                sent straight to the socket
    lc_intruder.py read LIST_FILE           try to read (or list) each path in LIST_FILE
    lc_intruder.py squat WS RECORD_FILE     bind the daemon's socket name, answer everything

Standard library only, imports nothing of runner (an intruder has no reason to). Prints
one JSON object. ``requests``: op -> outcome, one of ``unreachable`` (the socket file
cannot be reached: permissions), ``refused`` (the daemon answered "permission denied"),
``no daemon`` (nothing listens), or ``obeyed: ...`` (the daemon answered the request).
``read``: the paths that could be read or listed. ``squat`` answers every connection
with ``{"ok": true}`` and appends what it received to RECORD_FILE, until killed.
"""

import contextlib
import json
import os
import socket
import sys

OPS = ["ping", "wake", "status", "cancel", "wait", "configure", "keep", "stop"]


def address(ws):
    path = os.path.join(ws, "daemon", "daemon.sock")
    if len(path) < 100:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/daemon.sock", fd


def request(ws, message):
    path, fd = address(ws)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(path)
            except PermissionError:
                return "unreachable"
            except (FileNotFoundError, ConnectionRefusedError):
                return "no daemon"
            # refused before the daemon read the request: its answer is still here
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    finally:
        if fd is not None:
            os.close(fd)
    answer = json.loads(data) if data else {}
    if str(answer.get("error", "")).startswith("permission denied"):
        return "refused"
    return "obeyed: " + data.decode(errors="replace").strip()[:200]


def requests(ws, run_id, ops):
    return {op: request(ws, {"op": op, "run_id": run_id, "timeout_s": 0.1}) for op in ops}


def read(list_file):
    with open(list_file, encoding="utf-8") as f:
        paths = json.load(f)
    readable = []
    for path in paths:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
        except OSError:
            continue
        readable.append(path)
    return readable


def squat(ws, record):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path, _ = address(ws)
    sock.bind(path)
    os.chmod(os.path.join(ws, "daemon", "daemon.sock"), 0o777)  # noqa: S103 - an intruder's
    sock.listen(16)
    print(json.dumps({"squatting": os.getpid()}), flush=True)
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2)
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            with open(record, "ab") as f:
                f.write(data)
            with contextlib.suppress(OSError):
                conn.sendall(b'{"ok": true, "identity": null}\n')


def main():
    what = sys.argv[1]
    if what == "requests":
        ops = sys.argv[4:] or OPS
        print(json.dumps({"uid": os.getuid(), "requests": requests(sys.argv[2], sys.argv[3], ops)}))
    elif what == "read":
        print(json.dumps({"uid": os.getuid(), "read": read(sys.argv[2])}))
    elif what == "squat":
        squat(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
