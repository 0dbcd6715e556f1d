"""The remote side of an SSH target: standard library only, Python 3.9+.

runner copies its in-run client (this package) to a host once per version, under
``~/.runner-remote/client/<version>/runner``, and talks to this module over ``ssh``.
Everything of a run lives under ``~/.runner-remote/runs/<run id>/``:

- ``work/``: the run's copy of the snapshot (``./outputs`` and ``./logs`` inside);
- ``ws/``: a workspace of the run alone: the script's ``Run.get_context()`` records into
  it as on any machine, and every change is also appended to ``journal`` (JSON lines),
  which the submitting machine reads from an offset and replays into its own history;
- ``driver.log``, ``exit_code`` (written by the shim when the script ends) and ``pid``.

Snapshot contents are kept in ``~/.runner-remote/blobs`` by SHA-256, so a file the host
has is never sent again. The script runs in its own session, so it lives on when the
connection drops; ``cancel`` (a new connection) signals that session.

Protocol (``session``): frames both ways on stdin/stdout, each a JSON header line with
``n``, the length of the binary payload that follows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from runner.conda_platform import conda_subdir
from runner.shim import SHIM, container_name, read_exit_file

#: Grace for processes a finished script left in its session.
LEFTOVER_GRACE_S = 2.0


def default_base() -> Path:
    """Where runner keeps its files on this host."""
    return Path(os.environ.get("RUNNER_REMOTE_BASE") or "~/.runner-remote").expanduser()


# -- framing ---------------------------------------------------------------------------


def write_frame(out: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    """Send one frame: a JSON header line (with the payload length) and the payload."""
    head = dict(header)
    head["n"] = len(payload)
    out.write(json.dumps(head, separators=(",", ":")).encode() + b"\n")
    if payload:
        out.write(payload)
    out.flush()


def read_frame(inp: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at the end of the stream."""
    line = inp.readline()
    if not line:
        return None
    header: dict[str, Any] = json.loads(line)
    n = int(header.get("n") or 0)
    payload = inp.read(n) if n else b""
    if len(payload) != n:
        return None
    return header, payload


# -- processes --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' when gone): pid + this
    names one process, even after the pid is reused."""
    fields = _stat(pid)
    return fields[19] if fields else ""


def is_alive(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not a zombie)."""
    fields = _stat(pid)
    if not fields:
        return False
    return fields[0] != "Z" and (not started or fields[19] == started)


def run_processes(sid: int, run_id: str) -> list[int]:
    """Processes of the run: in its session, or carrying its RUNNER_RUN_ID."""
    marker = f"RUNNER_RUN_ID={run_id}".encode()
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        fields = _stat(pid)
        if not fields or fields[0] == "Z":
            continue
        if int(fields[3]) == sid:
            found.append(pid)
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker + b"\0" in f.read() + b"\0":
                    found.append(pid)
        except OSError:
            pass
    return found


def stop_container(folder: Path, grace_s: float) -> None:
    """Stop the run's container, if it has one (TERM, grace, KILL by the engine)."""
    if not (folder / "container").exists():
        return
    name = (folder / "container").read_text().strip()
    subprocess.run(
        ["docker", "stop", "-t", str(max(0, int(grace_s))), name], capture_output=True, check=False
    )


def terminate(sid: int, run_id: str, grace_s: float) -> int:
    """TERM the run's processes, wait up to ``grace_s``, KILL the rest; how many there were."""
    pids = run_processes(sid, run_id)
    found = len(pids)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap()
        pids = [p for p in pids if _stat(p) and _stat(p)[0] != "Z"]  # type: ignore[index]
    for pid in run_processes(sid, run_id):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


# -- the session -------------------------------------------------------------------------


class Session:
    """Answers one connection's requests, in order."""

    def __init__(self, base: Path, inp: BinaryIO, out: BinaryIO) -> None:
        self.base = base
        self.inp = inp
        self.out = out
        self.blobs = base / "blobs"
        self.pending: dict[str, list[list[Any]]] = {}

    def serve(self) -> None:
        """Handle frames until ``bye`` or the end of input."""
        while True:
            frame = read_frame(self.inp)
            if frame is None:
                return
            header, payload = frame
            op = header.get("op")
            if op == "bye":
                return
            handler = getattr(self, f"op_{op}", None)
            try:
                if handler is None:
                    raise ValueError(f"unknown request {op!r}")
                handler(header, payload)
            except BrokenPipeError:
                return
            except Exception as exc:
                write_frame(self.out, {"error": f"{type(exc).__name__}: {exc}"})

    def reply(self, header: dict[str, Any], payload: bytes = b"") -> None:
        write_frame(self.out, header, payload)

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"bad run id {run_id!r}")
        return self.base / "runs" / run_id

    # -- requests ------------------------------------------------------------------------

    def op_hello(self, header: dict[str, Any], payload: bytes) -> None:
        self.reply(self.hello())

    def hello(self) -> dict[str, Any]:
        """What the first answer says of this host."""
        return {
            "python": sys.executable,
            "version": list(sys.version_info[:3]),
            "docker": shutil.which("docker") is not None,
            "base": str(self.base),
            "pid": os.getpid(),
        }

    def _blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest[2:]

    def op_snapshot(self, header: dict[str, Any], payload: bytes) -> None:
        """Is the snapshot here? With its entries: which contents are missing."""
        snap_id = str(header["id"])
        if (self.base / "snapshots" / f"{snap_id}.json").exists():
            self.reply({"have": True})
            return
        entries = header.get("entries")
        if entries is None:
            self.reply({"have": False})
            return
        self.pending[snap_id] = entries
        missing = sorted({e[1] for e in entries if not self._blob_path(e[1]).exists()})
        self.reply({"have": False, "missing": missing})

    def op_blob(self, header: dict[str, Any], payload: bytes) -> None:
        """Store one content (no reply: blobs stream; ``snapshot_done`` answers)."""
        digest = str(header["digest"])
        if hashlib.sha256(payload).hexdigest() != digest:
            raise ValueError(f"content of {digest[:12]} arrived damaged")
        path = self._blob_path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(payload)
        os.replace(tmp, path)

    def op_snapshot_done(self, header: dict[str, Any], payload: bytes) -> None:
        snap_id = str(header["id"])
        entries = self.pending.pop(snap_id, None)
        if entries is None:
            raise ValueError(f"snapshot {snap_id[:12]} was not announced")
        missing = [e[0] for e in entries if not self._blob_path(e[1]).exists()]
        if missing:
            raise ValueError(f"snapshot {snap_id[:12]}: contents of {missing[:5]} did not arrive")
        folder = self.base / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{snap_id}.{os.getpid()}"
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, folder / f"{snap_id}.json")
        self.reply({"ok": True})

    def op_prepare(self, header: dict[str, Any], payload: bytes) -> None:
        """Make the run's interpreter ready; answers its path and the build log."""
        log = io.StringIO()
        kind = header.get("kind")
        if kind == "user_managed":
            python = header.get("python") or sys.executable
            found = shutil.which(python) if os.sep not in python else python
            if not found or not os.access(found, os.X_OK):
                raise ValueError(f"interpreter {python!r} does not exist on this host")
            log.write(f"user-managed environment: using {found} as it is\n")
            self.reply({"python": found, "log": log.getvalue()})
        elif kind == "venv":
            python = self._venv(str(header["key"]), header.get("requirements") or [], log)
            self.reply({"python": python, "log": log.getvalue()})
        elif kind == "docker":
            tag = self._image(str(header["tag"]), str(header["dockerfile"]), log)
            self.reply(
                {
                    "python": header.get("python") or "python3",
                    "image": tag,
                    "shm_size": header.get("shm_size"),
                    "log": log.getvalue(),
                }
            )
        elif kind == "conda":
            answer = self._conda(header, log)
            self.reply({**answer, "log": log.getvalue()})
        else:
            raise ValueError(f"environments of kind {kind!r} cannot be prepared on this host")

    def op_conda_host(self, header: dict[str, Any], payload: bytes) -> None:
        """What a conda lock for this host is solved for, and what can install it here."""
        self.reply(conda_host())

    def _conda(self, header: dict[str, Any], log: io.StringIO) -> dict[str, Any]:
        """The conda prefix of a lock made elsewhere, built once (under a lock) and reused.

        The header names the lock (``key``: its hash; ``lock``: its text), its archives
        (``packages``: ``[sha256, file name]``, kept in the blob store as they arrive), and
        the installer: ``installer`` (the digest of a py-rattler bundle, or None to use a
        py-rattler this host's Python imports) and ``worker`` (runner's rattler worker).
        Answers ``{"missing": [digests]}`` while archives or the bundle are not here yet
        (send them as blobs and ask again), else the prefix's python and variables.
        """
        import fcntl

        key = str(header["key"])
        if not key.isalnum():
            raise ValueError(f"bad environment key {key!r}")
        envs = self.base / "envs"
        folder = envs / f"conda-{key}"
        envs.mkdir(parents=True, exist_ok=True)
        with open(envs / f"conda-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (folder / ".ready").exists():
                log.write(f"conda environment {folder}: cached\n")
                return _conda_answer(folder)
            packages = [(str(d), str(n)) for d, n in header.get("packages") or []]
            bundle = header.get("installer")
            for digest in [d for d, _ in packages] + ([str(bundle)] if bundle else []):
                if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
                    raise ValueError(f"bad content digest {digest!r}")
            pkgs = self.base / "conda" / "pkgs"
            missing = [
                d
                for d, n in packages
                if not (pkgs / d / n).exists() and not self._blob_path(d).exists()
            ]
            if (
                bundle
                and not (self._installer_dir(str(bundle)) / ".ready").exists()
                and not self._blob_path(str(bundle)).exists()
            ):
                missing.append(str(bundle))
            if missing:
                return {"missing": missing}
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.monotonic()
            archives = {d: str(self._place_archive(pkgs, d, n)) for d, n in packages}
            folder.mkdir(parents=True)
            (folder / "conda-lock.yml").write_text(str(header["lock"]))
            argv, env = self._conda_installer(bundle, str(header["worker"]))
            request = {
                "op": "install",
                "lock_file": str(folder / "conda-lock.yml"),
                "prefix": str(folder),
                "platform": str(header["platform"]),
                "package_cache": str(self.base / "conda" / "cache"),
                "archives": archives,
            }
            try:
                _run_rattler(argv, env, request, log)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            (folder / ".ready").write_text(key)
            log.write(
                f"conda environment {folder}: {len(packages)} package(s) installed in "
                f"{time.monotonic() - t0:.1f} s\n"
            )
        return _conda_answer(folder)

    def _installer_dir(self, digest: str) -> Path:
        return self.base / "conda" / "installer" / digest[:32]

    def _place_archive(self, pkgs: Path, digest: str, name: str) -> Path:
        """The archive under its own file name (the installer reads the format from it)."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad archive name {name!r}")
        path = pkgs / digest / name
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}")
        try:
            os.link(self._blob_path(digest), tmp)
        except OSError:
            shutil.copyfile(self._blob_path(digest), tmp)
        os.replace(tmp, path)
        return path

    def _conda_installer(self, bundle: str | None, worker: str) -> tuple[list[str], dict[str, str]]:
        """The command that runs the rattler worker here, and its environment."""
        import fcntl

        env = dict(os.environ)
        if bundle:
            folder = self._installer_dir(bundle)
            folder.parent.mkdir(parents=True, exist_ok=True)
            with open(folder.parent / f"{folder.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (folder / ".ready").exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    with tarfile.open(str(self._blob_path(bundle)), "r:gz") as tar:
                        _extract(tar, folder)
                    (folder / ".ready").write_text(bundle)
            env["PYTHONPATH"] = str(folder / "site")
            return [sys.executable, str(folder / "rattler_worker.py")], env
        script = (
            self.base
            / "conda"
            / f"rattler_worker-{hashlib.sha256(worker.encode()).hexdigest()[:16]}.py"
        )
        if not script.exists():
            script.parent.mkdir(parents=True, exist_ok=True)
            tmp = script.with_name(f".{script.name}.{os.getpid()}")
            tmp.write_text(worker)
            os.replace(tmp, script)
        return [sys.executable, str(script)], env

    def _venv(self, key: str, requirements: list[str], log: io.StringIO) -> str:
        """A venv per requirements hash, built once (under a lock) and reused."""
        import fcntl

        folder = self.base / "envs" / key
        python = folder / "bin" / "python"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (folder / ".ready").exists():
                log.write(f"venv {folder}: cached\n")
                return str(python)
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.monotonic()
            args = [sys.executable, "-m", "venv"]
            if not requirements:
                args.append("--without-pip")
            self._build([*args, str(folder)], log)
            if requirements:
                self._build([str(python), "-m", "pip", "install", "--quiet", *requirements], log)
            (folder / ".ready").write_text(json.dumps(requirements))
            log.write(f"venv {folder}: built in {time.monotonic() - t0:.1f} s\n")
        return str(python)

    def _image(self, tag: str, dockerfile: str, log: io.StringIO) -> str:
        """The environment's image on this host's engine, built once (under a lock)."""
        import fcntl

        if shutil.which("docker") is None:
            raise ValueError("this host has no docker command; install Docker Engine there")
        locks = self.base / "envs"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{tag.replace(':', '-')}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            probe = subprocess.run(
                ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                log.write(f"image {tag}: cached\n")
                return tag
            if b"permission denied" in probe.stderr.lower():
                raise ValueError(
                    "the host's user may not use the docker engine ("
                    + probe.stderr.decode("utf-8", "replace").strip()
                    + "); add it to the docker group there"
                )
            t0 = time.monotonic()
            log.write(f"image {tag}: building\n{dockerfile}")
            proc = subprocess.run(
                ["docker", "build", "-t", tag, "-"],
                input=dockerfile.encode(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
            log.write(proc.stdout.decode("utf-8", "replace"))
            if proc.returncode != 0:
                raise ValueError(f"docker build of {tag} failed:\n" + log.getvalue()[-3000:])
            log.write(f"image {tag}: built in {time.monotonic() - t0:.1f} s\n")
        return tag

    @staticmethod
    def _build(argv: list[str], log: io.StringIO) -> None:
        log.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        log.write(proc.stdout.decode("utf-8", "replace"))
        if proc.returncode != 0:
            raise ValueError(
                f"{argv[0]} {' '.join(argv[1:3])} failed (exit {proc.returncode}):\n"
                + log.getvalue()[-3000:]
            )

    def op_launch(self, header: dict[str, Any], payload: bytes) -> None:
        """Materialize the snapshot, record the run in its own workspace, start it."""
        run_id = str(header["run_id"])
        folder = self.run_dir(run_id)
        if (folder / "pid").exists():
            raise ValueError(f"run {run_id} was launched on this host already")
        shutil.rmtree(folder, ignore_errors=True)
        work = self.materialize(folder, header.get("snapshot"))
        record_run(folder / "ws", header)
        client = Path(__file__).resolve().parent.parent
        env = run_environment(client, header, folder / "ws", folder / "journal")
        argv = [str(a) for a in header["argv"]]
        if header.get("python") and argv and argv[0] == "{python}":
            argv[0] = str(header["python"])
        (folder / "journal").touch()
        if header.get("image"):
            argv = self._in_container(folder, work, client, env, header, argv)
            env = {**os.environ, "RUNNER_RUN_ID": run_id}
        with open(folder / "driver.log", "ab") as log, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", SHIM, "runner-shim", str(work), str(folder / "exit_code"), *argv],
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        started = start_time(proc.pid)
        (folder / "pid").write_text(f"{proc.pid} {started}\n")
        self.reply({"pid": proc.pid, "started": started})

    def materialize(self, folder: Path, snap_id: object) -> Path:
        """The run's working folder ``folder/work``: its snapshot (if any), ./outputs, ./logs."""
        from runner.artifacts import BlobStore
        from runner.snapshot import Snapshot, SnapshotEntry, materialize

        work = folder / "work"
        if snap_id:
            entries = json.loads((self.base / "snapshots" / f"{snap_id}.json").read_text())
            snap = Snapshot(
                id=str(snap_id),
                entries=tuple(SnapshotEntry(p, d, int(s), bool(x)) for p, d, s, x in entries),
            )
            materialize(snap, BlobStore(self.blobs), work)
        work.mkdir(parents=True, exist_ok=True)
        (work / "outputs").mkdir(exist_ok=True)
        (work / "logs").mkdir(exist_ok=True)
        return work

    def _in_container(
        self,
        folder: Path,
        work: Path,
        client: Path,
        env: dict[str, str],
        header: dict[str, Any],
        argv: list[str],
    ) -> list[str]:
        """``docker run`` of ``argv`` in the environment's image: the run's folder and the
        client mounted at the same paths, as this host's user, variables from a 0600 file."""
        # The container starts from its image's environment, not this host's.
        run_env = dict(header.get("env") or {})
        for key in ("PYTHONPATH", "RUNNER_RUN_ID", "AZUREML_RUN_ID", "RUNNER_WORKSPACE"):
            run_env[key] = env[key]
        run_env["RUNNER_JOURNAL"] = env["RUNNER_JOURNAL"]
        run_env["PYTHONUNBUFFERED"] = "1"
        run_env.setdefault("HOME", "/tmp")  # noqa: S108 - the container's /tmp
        env_file = folder / "container.env"
        fd = os.open(str(env_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            for key, value in run_env.items():
                if "\n" in value:
                    raise ValueError(f"environment variable {key} holds a newline")
                f.write(f"{key}={value}\n")
        name = container_name(folder.name)
        (folder / "container").write_text(name)
        command = [
            "docker",
            "run",
            "--rm",
            "--init",
            "--name",
            name,
            "--label",
            f"runner.run_id={folder.name}",
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            "--env-file",
            str(env_file),
            "-v",
            f"{folder}:{folder}",
            "-v",
            f"{client}:{client}:ro",
            "-w",
            str(work),
        ]
        if header.get("shm_size"):
            command += ["--shm-size", str(header["shm_size"])]
        return [*command, str(header["image"]), *argv]

    def op_follow(self, header: dict[str, Any], payload: bytes) -> None:
        """Stream the run's log and journal from the given offsets until it has ended.

        Frames: ``{"s": "log"|"journal", "o": offset}`` with bytes, ``{"s": "blob"}`` with
        a file the journal names (sent before the journal lines naming it), ``{"s": "hb"}``
        when there was nothing to say for a heartbeat interval, and last ``{"s": "exit"}``.
        """
        run_id = str(header["run_id"])
        folder = self.run_dir(run_id)
        if not (folder / "pid").exists():  # never launched here, or already cleaned up
            self.reply({"s": "exit", "code": read_exit_file(folder / "exit_code"), "missing": True})
            return
        pid_text = (folder / "pid").read_text().split()
        pid, started = int(pid_text[0]), pid_text[1] if len(pid_text) > 1 else ""
        offsets = {"log": int(header.get("log") or 0), "journal": int(header.get("journal") or 0)}
        files = {"log": folder / "driver.log", "journal": folder / "journal"}
        hb = float(header.get("hb") or 2.0)
        blobs = folder / "ws" / "blobs"
        last_sent = time.monotonic()
        t0 = time.monotonic()
        while True:
            _reap()
            code = read_exit_file(folder / "exit_code")
            done = code is not None or not is_alive(pid, started)
            sent = False
            for stream in ("log", "journal"):
                data = _read_from(files[stream], offsets[stream])
                if stream == "journal":
                    data = data[: data.rfind(b"\n") + 1]
                    self._send_blobs(data, blobs)
                if data:
                    self.reply({"s": stream, "o": offsets[stream]}, data)
                    offsets[stream] += len(data)
                    sent = True
            if done and not sent:
                if code is None:
                    code = read_exit_file(folder / "exit_code")
                # What the script left running in its session ends with it, as in a container
                # (and a container whose client was killed ends too).
                stop_container(folder, 0)
                terminate(pid, run_id, LEFTOVER_GRACE_S)
                self.reply({"s": "exit", "code": code})
                return
            now = time.monotonic()
            if sent:
                last_sent = now
            elif now - last_sent >= hb:
                self.reply({"s": "hb", "t": time.time()})
                last_sent = now
            # Poll fast at first (short runs end in milliseconds), then settle.
            time.sleep(0.002 if now - t0 < 0.5 else 0.02 if now - t0 < 5 else 0.1)

    def _send_blobs(self, lines: bytes, blobs: Path) -> None:
        """Send the contents journal ``lines`` name (any event's ``"blobs"``), each once,
        read through a BlobStore (snapshot contents may be packed); one that cannot be
        read is skipped: the line still applies, only that content is missing."""
        if b'"blobs":' not in lines:
            return
        from runner.artifacts import BlobStore
        from runner.errors import StoreError

        store = BlobStore(blobs)
        sent: set[str] = set()
        for line in lines.splitlines():
            if b'"blobs":' not in line:
                continue
            try:
                named = json.loads(line).get("blobs") or []
            except ValueError:
                continue
            for digest in named:
                if not isinstance(digest, str) or digest in sent:
                    continue
                sent.add(digest)
                try:
                    data = store.read_bytes(digest)
                except (OSError, StoreError):
                    continue
                self.reply({"s": "blob", "digest": digest}, data)

    def op_outputs(self, header: dict[str, Any], payload: bytes) -> None:
        """A tar of the run's ./outputs and ./logs."""
        work = self.run_dir(str(header["run_id"])) / "work"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in ("outputs", "logs"):
                if (work / name).is_dir():
                    tar.add(str(work / name), arcname=name)
        self.reply({"ok": True}, buf.getvalue())

    def op_cleanup(self, header: dict[str, Any], payload: bytes) -> None:
        shutil.rmtree(self.run_dir(str(header["run_id"])), ignore_errors=True)
        self.reply({"ok": True})


def record_run(ws_path: Path, header: dict[str, Any]) -> None:
    """Create the run (Running, its tags and properties) in a workspace of its own."""
    from runner.store import NewRun
    from runner.workspace import Workspace

    run_id = str(header["run_id"])
    store = Workspace.create(ws_path, exist_ok=True).store
    exp_id = store.ensure_experiment(str(header.get("experiment") or "remote"))
    store.create_runs(
        exp_id,
        [
            NewRun(
                id=run_id,
                type="azureml.scriptrun",
                status="Running",
                target=str(header.get("target") or "remote"),
                tags=header.get("tags") or {},
            )
        ],
    )
    if header.get("properties"):
        store.add_properties(run_id, header["properties"])
    store.close()


def run_environment(
    client: Path, header: dict[str, Any], ws_path: Path, journal: Path
) -> dict[str, str]:
    """The script's variables: this host's, the run's, runner's client first on the path,
    its own workspace and the journal every change of it is appended to."""
    run_id = str(header["run_id"])
    env = dict(os.environ)
    env.update(header.get("env") or {})
    env["PYTHONPATH"] = os.pathsep.join(
        [str(client), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env["RUNNER_RUN_ID"] = run_id
    env["AZUREML_RUN_ID"] = run_id
    env["RUNNER_WORKSPACE"] = str(ws_path)
    env["RUNNER_JOURNAL"] = str(journal)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- conda -------------------------------------------------------------------------------


def conda_host() -> dict[str, Any]:
    """This host for a conda solve made elsewhere: its conda platform, virtual packages
    (``[name, version, build]``), and what runs py-rattler here (Python, glibc, CPU)."""
    import importlib.util
    import platform as _platform

    machine = _platform.machine().lower()
    system = sys.platform
    virtual: list[list[str]] = []
    conda_platform = conda_subdir(system, machine)
    glibc = None
    if system.startswith("linux"):
        system = "linux"
        with contextlib.suppress(ValueError, OSError, AttributeError):
            name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
            if name == "glibc" and version:
                glibc = version
        virtual.append(["__unix", "0", "0"])
        release = _leading_version(_platform.release())
        if release:
            virtual.append(["__linux", release, "0"])
        if glibc:
            virtual.append(["__glibc", glibc, "0"])
    elif system == "darwin":
        virtual.append(["__unix", "0", "0"])
        mac = _leading_version(_platform.mac_ver()[0])
        if mac:
            virtual.append(["__osx", mac, "0"])
    virtual.append(["__archspec", "1", machine])
    return {
        "platform": conda_platform,
        "virtual": virtual,
        "system": system,
        "machine": machine,
        "glibc": glibc,
        "python": list(sys.version_info[:3]),
        "rattler": importlib.util.find_spec("rattler") is not None,
    }


def _leading_version(text: str) -> str:
    """``6.18.44-fc-v1252`` -> ``6.18.44``."""
    parts = []
    for part in text.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(digits)
        if len(digits) != len(part):
            break
    return ".".join(parts)


def _conda_answer(folder: Path) -> dict[str, Any]:
    python = folder / "bin" / "python"
    path = os.environ.get("PATH") or os.defpath
    return {
        "python": str(python) if python.exists() else sys.executable,
        "env": {"CONDA_PREFIX": str(folder), "PATH": f"{folder / 'bin'}{os.pathsep}{path}"},
        "prefix": str(folder),
    }


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Unpack runner's own bundle (member names checked: nothing outside ``folder``)."""
    for member in tar.getmembers():
        name = member.name
        if (
            name.startswith("/")
            or ".." in name.split("/")
            or not (member.isfile() or member.isdir())
        ):
            raise ValueError(f"the installer bundle holds an unexpected entry {name!r}")
    tar.extractall(str(folder))  # noqa: S202 - checked above


def _run_rattler(
    argv: list[str], env: dict[str, str], request: dict[str, Any], log: io.StringIO
) -> dict[str, Any]:
    """One request to the rattler worker; its JSON result counts, not its exit code (its
    finalization can crash after the work is done: see environments/conda_worker.py)."""
    log.write("$ " + " ".join(argv) + "\n")
    proc = subprocess.run(
        argv,
        input=json.dumps(request).encode(),
        capture_output=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    log.write(proc.stderr.decode("utf-8", "replace"))
    result = None
    for line in reversed(proc.stdout.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and "ok" in value:
                result = value
                break
    if result is None:
        raise ValueError(
            f"the conda install ended with exit code {proc.returncode} and no result:\n"
            + log.getvalue()[-3000:]
        )
    if result.get("ok") is not True:
        raise ValueError(
            f"the conda install failed: {result.get('message')}\n" + log.getvalue()[-3000:]
        )
    return result


def _read_from(path: Path, offset: int, limit: int = 4 << 20) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except OSError:
        return b""


def cancel(base: Path, run_id: str, grace_s: float) -> dict[str, Any]:
    """TERM the run's session, wait ``grace_s``, KILL what is left."""
    folder = base / "runs" / run_id
    try:
        pid = int((folder / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {"ok": True, "found": False}
    stop_container(folder, grace_s)
    return {"ok": True, "found": True, "signaled": terminate(pid, run_id, grace_s)}


def main(argv: list[str] | None = None) -> int:
    """``session`` | ``cancel RUN_ID GRACE_S``."""
    args = sys.argv[1:] if argv is None else argv
    base = default_base()
    if not args:
        sys.stderr.write("usage: remote_agent session | cancel RUN_ID GRACE_S\n")
        return 2
    if args[0] == "session":
        Session(base, sys.stdin.buffer, sys.stdout.buffer).serve()
        return 0
    if args[0] == "cancel" and len(args) == 3:
        sys.stdout.write(json.dumps(cancel(base, args[1], float(args[2]))) + "\n")
        return 0
    sys.stderr.write(f"remote_agent: unknown command {args!r}\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
