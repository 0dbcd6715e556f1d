"""Benchmark runs on an SSH host: a remote hello run vs plain ``ssh HOST python3 hello.py``,
and what an unchanged snapshot costs when it is sent again.

Run: ``python bench/ssh.py [--reps 15] [--warmup 3] [--files 200] [--profile-reps 10]``
(needs the test sshd: ``sudo bash scripts/ssh_services.sh``, which serves 127.0.0.1:2222,
user jobrunner, key /tmp/infra-ssh/client_key; ``--host/--port/--user/--key/--known-hosts``
point it elsewhere).

(a) Hello run: ``exp.submit(ScriptRunConfig(src, 'hello.py', compute_target='box'))``
    ``.wait_for_completion()`` on the attached host (``RemoteCompute``), warm: the daemon
    up, its shared SSH connection open, runner's remote side installed (one untimed run
    first, then --warmup more), vs ``ssh -i KEY -p PORT -o BatchMode=yes -o
    IdentitiesOnly=yes -o UserKnownHostsFile=KNOWN USER@HOST python3 hello.py`` with the
    same hello.py (``print("hello")``) copied into the remote home first: a full connection
    each time, as a user types it. Goal: median ratio <= 1.5 (median of --reps each, A/B
    interleaved, the order flipped every pair).
(b) Snapshot bytes: a source folder of --files files (~10 KB of random bytes each, ~2 MB,
    plus hello.py; new contents every time the benchmark runs, so the host has none of
    them) submitted twice unchanged. The daemon writes ``snapshot ID: N bytes of contents
    sent`` into each run's ``azureml-logs/55_environment_prep_log.txt``; the second must
    send ~0 bytes. Also counted: the bytes the client sent on the TCP socket of the shared
    connection during each run (``bytes_sent`` of ``ss -ti`` for the master's socket:
    encrypted SSH payload, all requests of the run, without TCP/IP headers), and, for
    information, a third run with one file changed.

Also shown, for information: the cold first run (it starts the daemon, opens the shared
connection and installs runner's remote side if this version is not on the host yet),
the phases of the warm runs (wall clock around the calls plus the store's times), the
install of the remote side into a fresh folder, and the requests of one run replayed in
this process one at a time, as the daemon sends them.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

GOAL_RATIO = 1.5
HELLO = 'print("hello")\n'
TARGET = "box"
REPLAY = f"benchreplay_{os.getpid()}_"  # run ids of the replayed runs on the host
SENT_RE = re.compile(r"snapshot ([0-9a-f]+): (\d+) bytes of contents sent")


def fingerprint(known_hosts: str) -> str | None:
    """The SHA256 fingerprint of the (first) host key in ``known_hosts``."""
    proc = subprocess.run(
        ["ssh-keygen", "-lf", known_hosts], capture_output=True, text=True, check=False
    )
    m = re.search(r"SHA256:\S+", proc.stdout)
    return m.group(0) if m else None


def master_pid(conn: Any) -> int | None:
    """The pid of the shared connection's master (``ssh -O check``), None when down."""
    proc = subprocess.run(
        ["ssh", *conn.options(), "-O", "check", conn.endpoint.address],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"pid=(\d+)", proc.stderr)
    return int(m.group(1)) if m else None


def wire_bytes(pid: int | None, port: int) -> tuple[int, int] | None:
    """(bytes sent, bytes received) on the TCP socket of ssh process ``pid`` (``ss -ti``)."""
    if pid is None or shutil.which("ss") is None:
        return None
    proc = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = False
    for line in proc.stdout.splitlines():
        if not line[:1].isspace():  # a socket's first line; its details follow, indented
            mine = f"pid={pid}," in line
            continue
        if mine:
            sent = re.search(r"bytes_sent:(\d+)", line)
            got = re.search(r"bytes_received:(\d+)", line)
            return int(sent.group(1)) if sent else 0, int(got.group(1)) if got else 0
    return None


def prep_sent(run: Any) -> tuple[str, int] | None:
    """(snapshot id prefix, content bytes sent) from the run's prep log."""
    logs = run.get_details_with_logs()["logFiles"]
    for name, text in logs.items():
        if name.endswith("55_environment_prep_log.txt"):
            m = SENT_RE.search(text)
            if m:
                return m.group(1), int(m.group(2))
    return None


class RemoteHello:
    """Runs hello.py on the host through exp.submit and keeps wall-clock stamps."""

    def __init__(self, exp: Any, src: Path) -> None:
        self.exp = exp
        self.src = str(src)
        self.stamps: list[tuple[float, float, float, str]] = []  # call, submit back, end, id

    def __call__(self) -> Any:
        from runner import ScriptRunConfig

        t0 = time.time()
        run = self.exp.submit(ScriptRunConfig(self.src, "hello.py", compute_target=TARGET))
        t1 = time.time()
        details = run.wait_for_completion()
        t2 = time.time()
        if details["status"] != "Completed":
            raise SystemExit(f"FAIL: run {run.id} ended {details['status']}")
        self.stamps.append((t0, t1, t2, run.id))
        return run

    def phases(self, ws: Any) -> list[list[str]]:
        """Median phases of the runs so far, as table rows."""
        cols: list[list[float]] = [[], [], [], [], []]
        for t0, t1, t2, run_id in self.stamps:
            row = ws._store.get_run(run_id)
            if row is None or row.start_utc is None or row.end_utc is None:
                continue
            parts = (
                row.created_utc - t0,
                t1 - row.created_utc,
                row.start_utc - t1,
                row.end_utc - row.start_utc,
                t2 - row.end_utc,
            )
            for col, v in zip(cols, parts):
                col.append(v)
        labels = (
            "submit() call -> run row created (target check: `ssh -O check`; snapshot)",
            "run row created -> submit() returns (properties, status, notify)",
            "submit() returns -> Running (daemon: session, snapshot, prepare, launch)",
            "Running -> ended (script on the host, follow, outputs, cleanup, store logs)",
            "ended -> wait_for_completion() returns",
        )
        return [[label, common.ms(common.med(col))] for label, col in zip(labels, cols)]


def replay_once(target: Any, client_dir: Path, snap: Any, run_id: str) -> list[float]:
    """One run's requests, as the daemon sends them: the time stamps between them."""
    from targets.ssh import AgentSession, sync_snapshot

    t = [time.perf_counter()]
    target.check()
    t.append(time.perf_counter())
    target.conn.ensure_master()
    t.append(time.perf_counter())
    session = AgentSession(target.conn, client_dir)
    try:
        answer = session.hello()
        t.append(time.perf_counter())
        sync_snapshot(session, target.ws._blobs, snap)
        t.append(time.perf_counter())
        prepared, _ = session.request({"op": "prepare", "kind": "user_managed", "python": ""})
        t.append(time.perf_counter())
        session.request(
            {
                "op": "launch",
                "run_id": run_id,
                "snapshot": snap.id,
                "experiment": "replay",
                "target": TARGET,
                "tags": {},
                "properties": {},
                "python": prepared.get("python") or answer.get("python"),
                "argv": ["{python}", "hello.py"],
                "env": {},
            }
        )
        t.append(time.perf_counter())
        session.send({"op": "follow", "run_id": run_id, "log": 0, "journal": 0, "hb": 2.0})
        while session.receive()[0].get("s") != "exit":
            pass
        t.append(time.perf_counter())
        _, data = session.request({"op": "outputs", "run_id": run_id})
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.getmembers()
        t.append(time.perf_counter())
        session.request({"op": "cleanup", "run_id": run_id})
        t.append(time.perf_counter())
    except BaseException:
        session.kill()
        session.close()
        raise
    session.close()
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])]


def replay_steps(
    target: Any, client_dir: Path, snapshot_id: str, reps: int
) -> tuple[list[list[str]], int]:
    """The requests of ``reps`` runs timed one by one in this process, as table rows, and
    how many attempts something else cut off (their connection closed under them)."""
    from runner.errors import TargetUnavailableError
    from runner.snapshot import load_snapshot

    snap = load_snapshot(target.ws._blobs, snapshot_id)
    names = [
        "target.check() at submit (master up: one `ssh -O check`)",
        "session: ensure_master (`ssh -O check` again)",
        "session: ssh channel + python3 on the host + hello",
        "snapshot: already on the host?",
        "prepare (user-managed interpreter)",
        "launch (materialize, run's own workspace, start the script)",
        "follow until the exit frame (python3 hello.py on the host)",
        "outputs (tar of ./outputs and ./logs)",
        "cleanup (remove the run's folder on the host)",
        "close the session (bye, ssh exits)",
    ]
    samples: list[list[float]] = []
    cut = 0
    attempt = 0
    while len(samples) < reps:
        attempt += 1
        try:
            samples.append(replay_once(target, client_dir, snap, f"{REPLAY}{attempt}"))
        except TargetUnavailableError:
            cut += 1
            if cut > 3:
                raise
    rows = [[name, common.ms(common.med([s[i] for s in samples]))] for i, name in enumerate(names)]
    rows.append(
        ["all of the above (median of the sums)", common.ms(common.med([sum(s) for s in samples]))]
    )
    return rows, cut


def fresh_install(target: Any, client_dir: Path) -> float:
    """Seconds for a session whose remote side is not on the host yet (installed first):
    the client copied under a new version name, removed from the host afterwards."""
    from targets.ssh import AgentSession

    with common.temp_dir("runner-bench-ssh-client-") as tmp:
        fresh = tmp / f"bench-{os.getpid()}-{time.time_ns()}"
        shutil.copytree(client_dir, fresh)
        t0 = time.perf_counter()
        session = AgentSession(target.conn, fresh)
        session.hello()
        took = time.perf_counter() - t0
        session.close()
        target.conn.run(f"rm -rf .runner-remote/client/{shlex.quote(fresh.name)}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="interleaved pairs (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm pairs first")
    parser.add_argument("--files", type=int, default=200, help="files of the (b) folder")
    parser.add_argument("--file-kb", type=int, default=10, help="KB per file of (b)")
    parser.add_argument("--profile-reps", type=int, default=10, help="replayed runs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2222)
    parser.add_argument("--user", default="jobrunner")
    parser.add_argument("--key", default="/tmp/infra-ssh/client_key")
    parser.add_argument("--known-hosts", default="/tmp/infra-ssh/known_hosts")
    args = parser.parse_args()

    probe = subprocess.run(
        common.ssh_argv(args, "python3 -c pass"), stdin=subprocess.DEVNULL, capture_output=True
    )
    if probe.returncode != 0:
        print(
            f"cannot reach {args.user}@{args.host}:{args.port} ({probe.stderr.decode().strip()}); "
            "start the test hosts with `sudo bash scripts/ssh_services.sh`"
        )
        return 2

    common.print_header(
        "ssh: a hello run on an SSH host vs `ssh HOST python3 hello.py`; snapshot re-send",
        f"median of {args.reps}, A/B interleaved with the order flipped every pair; wall clock",
    )
    os.environ["RUNNER_DAEMON_IDLE_S"] = "60"  # a daemon left by a crash ends on its own
    from runner import ComputeTarget, Experiment, RemoteCompute, daemon_client
    from targets.ssh import SshTarget

    n_procs = common.process_count()
    print(f"host: {args.user}@{args.host}:{args.port}; processes on the machine: {n_procs}")
    print()

    remote_hello = f"runner-bench-hello-{os.getpid()}.py"
    cleanup_remote: list[str] = []  # paths under ~/.runner-remote to remove at the end
    with common.temp_dir("runner-bench-ssh-") as tmp, common.temp_workspace() as ws:
        (ws.path / "ssh").mkdir(parents=True, exist_ok=True)
        shutil.copy(args.known_hosts, ws.path / "ssh" / "known_hosts")
        attach_kw: dict[str, Any] = dict(
            address=args.host, ssh_port=args.port, username=args.user, private_key_file=args.key
        )
        params = inspect.signature(RemoteCompute.attach_configuration).parameters
        if "host_key_fingerprint" in params:
            attach_kw["host_key_fingerprint"] = fingerprint(args.known_hosts)
        ComputeTarget.attach(ws, TARGET, RemoteCompute.attach_configuration(**attach_kw))
        target = SshTarget(ws, TARGET, ComputeTarget(ws, TARGET).config)

        src = tmp / "src"
        src.mkdir()
        (src / "hello.py").write_text(HELLO)
        subprocess.run(
            common.ssh_argv(args, f"cat > {remote_hello}"),
            input=HELLO.encode(),
            capture_output=True,
            check=True,
        )
        exp = Experiment(ws, "b")
        runner_run = RemoteHello(exp, src)

        def baseline() -> None:
            subprocess.run(
                common.ssh_argv(args, f"python3 {remote_hello}"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                check=True,
            )

        try:
            # Cold: daemon start, shared connection, remote side (information).
            cold_run = runner_run()
            c0, c1, c2, _ = runner_run.stamps[0]
            cold, cold_submit = c2 - c0, c1 - c0
            client_dir = next(p for p in (ws.path / "client").iterdir() if p.is_dir())
            mtime = target.conn.run(f"stat -c %Y .runner-remote/client/{client_dir.name}")
            installed = mtime.returncode == 0 and float(mtime.stdout.decode() or 0) >= c0 - 1
            hello_snapshot = cold_run.get_details()["runDefinition"]["snapshotId"]
            for _ in range(args.warmup):
                runner_run()
                baseline()
            runner_run.stamps.clear()

            # (a) warm, interleaved.
            ta, tb = common.interleaved(args.reps, runner_run, baseline)
            phase_rows = runner_run.phases(ws)

            # (b) snapshot bytes: a new folder of random contents, submitted twice unchanged.
            big = tmp / "big"
            big.mkdir()
            (big / "hello.py").write_text(HELLO)
            digests: list[str] = []
            for i in range(args.files - 1):
                data = os.urandom(args.file_kb * 1024)
                digests.append(hashlib.sha256(data).hexdigest())
                (big / f"data_{i:04d}.bin").write_bytes(data)
            folder_bytes = sum(p.stat().st_size for p in big.iterdir())
            big_run = RemoteHello(exp, big)
            sends: list[tuple[str, int | None, tuple[int, int] | None, float]] = []

            def measured(label: str) -> None:
                pid = master_pid(target.conn)
                w0 = wire_bytes(pid, args.port)
                t0 = time.perf_counter()
                run = big_run()
                took = time.perf_counter() - t0
                w1 = wire_bytes(pid, args.port)
                wire = (w1[0] - w0[0], w1[1] - w0[1]) if w0 and w1 else None
                found = prep_sent(run)
                sends.append((label, found[1] if found else None, wire, took))
                cleanup_remote.append(
                    f"snapshots/{run.get_details()['runDefinition']['snapshotId']}.json"
                )

            measured("first submit (the host has none of the contents)")
            measured("second submit, folder unchanged")
            changed = os.urandom(args.file_kb * 1024)
            digests.append(hashlib.sha256(changed).hexdigest())
            (big / "data_0000.bin").write_bytes(changed)
            measured("third submit, one file changed (information)")
            cleanup_remote.extend(f"blobs/{d[:2]}/{d[2:]}" for d in digests)

            # Information: the remote side installed into a fresh folder; one run's
            # requests replayed one by one; bare costs of the link.
            install_s = fresh_install(target, client_dir)
            step_rows, replay_cut = replay_steps(
                target, client_dir, hello_snapshot, args.profile_reps
            )

            def over_master(command: str) -> Callable[[], None]:
                return lambda: target.conn.run(command)

            def local(*argv: str) -> Callable[[], None]:
                return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)

            bare_rows = [
                [label, common.ms(common.med(common.timings(args.profile_reps, fn)))]
                for label, fn in (
                    ("`ssh -O check` (is the shared connection up?)", target.conn.master_alive),
                    ("`true` over the shared connection", over_master("true")),
                    (
                        "`python3 -c pass` over the shared connection",
                        over_master("python3 -c pass"),
                    ),
                    (
                        "`python3 hello.py` over the shared connection",
                        over_master(f"python3 {remote_hello}"),
                    ),
                    (
                        "plain `ssh HOST true` (full connection)",
                        local(*common.ssh_argv(args, "true")),
                    ),
                )
            ]
        finally:
            daemon_client.stop_daemon(ws.path)
            with_master = target.conn.master_alive()
            removal = " ".join(shlex.quote(p) for p in cleanup_remote)
            subprocess.run(
                common.ssh_argv(
                    args,
                    f"rm -f {remote_hello}; cd .runner-remote && rm -rf runs/{REPLAY}*"
                    + (f" && rm -f {removal}" if removal else ""),
                ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            if with_master:
                target.conn.close()  # the daemon leaves it up for ControlPersist (10 min)

    ma, mb = common.med(ta), common.med(tb)
    ratio = ma / mb
    ok_a = ratio <= GOAL_RATIO

    print("(a) a hello run on the host, runner warm")
    common.print_table(
        ["case", "median ms", "min ms", "max ms", "vs baseline", f"goal <= {GOAL_RATIO}x"],
        [
            common.timing_row("baseline: ssh HOST python3 hello.py", tb),
            common.timing_row(
                "exp.submit(..., compute_target='box').wait_for_completion()",
                ta,
                f"{ratio:.2f}",
                common.verdict(ok_a),
            ),
        ],
    )
    print("phases of the warm runs of (a) (medians; wall clock and the store's timestamps):")
    common.print_table(["phase", "ms"], phase_rows)
    print(
        f"cold first run (information): {common.ms(cold)} ms until wait_for_completion() "
        f"returned; submit() returned after {common.ms(cold_submit)} ms; runner's remote side "
        + ("installed by this run" if installed else "already on the host (an earlier run)")
    )
    print(
        f"installing runner's remote side into a fresh folder (information): "
        f"{common.ms(install_s)} ms for the session (hello, exit 86, tar over ssh, hello)"
    )
    print()

    first, second = sends[0][1], sends[1][1]
    ok_b = first is not None and second is not None and second <= 0.001 * max(first, 1)
    print(
        f"(b) snapshot of {args.files} files, {folder_bytes / 1e6:.2f} MB: content bytes "
        "sent (the daemon's prep log) and bytes on the shared connection's socket"
    )
    rows = []
    for label, sent, wire, took in sends:
        rows.append(
            [
                label,
                "?" if sent is None else f"{sent:,}",
                "n/a" if wire is None else f"{wire[0]:,}",
                "n/a" if wire is None else f"{wire[1]:,}",
                common.ms(took),
            ]
        )
    common.print_table(
        ["submit", "contents sent", "socket bytes out", "socket bytes in", "run ms"], rows
    )
    if first and second is not None:
        print(f"second / first content bytes: {second / first:.4f} (goal ~0)")
    print(f"unchanged snapshot re-sent costs ~0 content bytes: {common.verdict(ok_b)}")
    print()

    print(
        f"one run's requests replayed in this process (medians of {args.profile_reps}; "
        "the daemon sends the same over one session):"
    )
    common.print_table(["step", "ms"], step_rows)
    if replay_cut:
        print(
            f"({replay_cut} replayed run(s) cut off and repeated: something closed the shared "
            "connection under them, e.g. another process's `ssh -O exit`)"
        )
        print()
    print(f"bare costs (medians of {args.profile_reps}):")
    common.print_table(["command", "ms"], bare_rows)
    return common.overall(
        {f"hello run <= {GOAL_RATIO}x": ok_a, "unchanged snapshot ~0 bytes": ok_b}
    )


if __name__ == "__main__":
    sys.exit(main())
