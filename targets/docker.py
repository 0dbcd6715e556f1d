"""DockerTarget: the run in a container on this machine's Docker engine (docker SDK, no CLI).

The container, made from ``LaunchSpec.image``:

- bind-mounts the workspace folder (``RUNNER_WORKSPACE``), the run's work folder and the
  folders of the driver log and the exit file at the *same paths* as on the host, so the
  in-run client writes metrics straight into the workspace database (SQLite WAL works
  across a bind mount on one kernel) and every path in the environment stays valid;
- bind-mounts the in-run client (the ``PYTHONPATH`` folders) read-only: ``import runner``
  works without installing anything in the image;
- runs as the owner (uid:gid) of the run's work folder, the submitting user, so ./outputs
  and the logs on the host belong to them, not to root;
- runs ``docker-init`` (``init=True``) as PID 1 with ``TINI_KILL_PROCESS_GROUP=1``: a stop
  TERMs the whole process group, then the engine KILLs what is left after the grace period;
- carries the labels ``runner.run_id`` and ``runner.workspace``: leftovers are found by
  label (:func:`cleanup_leftovers`), never by name;
- gets the GPUs of the run through a device request (inside, they are numbered from 0).

The command is a ``sh`` shim (a local run has runner.keeper instead): it appends stdout and stderr to the driver
log (a file on the host, so logs survive a daemon restart), runs the argv in the background
and waits for it (ignoring a TERM itself, so the script gets its grace period), then writes
the exit code into the exit file. A restarted daemon learns how a container ended from that
file, or from the engine (the container is removed only when the run is finalized).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runner.errors import TargetUnavailableError
from runner.shim import container_name, read_exit_file
from targets.base import Job, LaunchSpec, LocalTree, RunEvents
from targets.host import HostHandle, HostTarget

if TYPE_CHECKING:
    from runner.service.proc import ProcessId

__all__ = [
    "LABEL_RUN_ID",
    "LABEL_WORKSPACE",
    "DockerHandle",
    "DockerTarget",
    "cleanup_leftovers",
    "container_config",
    "docker_available",
]

LABEL_RUN_ID = "runner.run_id"
LABEL_WORKSPACE = "runner.workspace"
#: Leftovers younger than this are not removed when their run has no stored handle yet:
#: a run being launched right now has its container before its handle is stored.
_YOUNG_S = 60.0

# $1 work folder, $2 exit file, $3 driver log, then the argv. The script runs in the
# background so that the shim, which ignores TERM (its children do not inherit a trap), can
# wait for it through the grace period; `wait` returns early on a trapped signal, hence the loop.
_SHIM = (
    'exec >>"$3" 2>&1 </dev/null; cd "$1" || exit 127; ef=$2; shift 3; '
    'trap ":" TERM INT HUP; "$@" & p=$!; '
    "while :; do wait $p; c=$?; kill -0 $p 2>/dev/null || break; done; "
    'echo "$c" > "$ef"; exit "$c"'
)
#: Variables of the daemon that mean nothing inside a container.
_HOST_ONLY = {"PATH", "HOME", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONHOME", "TMPDIR", "PWD"}


def _client() -> Any:
    from environments.docker_image import docker_client

    return docker_client()


def _mount_roots(paths: Sequence[Path]) -> list[Path]:
    """The paths with every one inside another left out (sorted, absolute, resolved)."""
    roots: list[Path] = []
    for path in sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not any(path == r or r in path.parents for r in roots):
            roots.append(path)
    return roots


def container_config(spec: LaunchSpec, user: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for ``spec`` (no engine involved)."""
    from docker.types import DeviceRequest, Mount

    if not spec.image:
        raise TargetUnavailableError(
            f"run {spec.run_id}: the docker target needs an image, and the prepared "
            "environment has none"
        )
    env = {k: v for k, v in spec.env.items() if k not in _HOST_ONLY}
    env.setdefault("HOME", "/tmp")  # noqa: S108 - the container's /tmp: any uid can write there
    env["TINI_KILL_PROCESS_GROUP"] = "1"
    device_requests = []
    if spec.gpu_ids:
        device_requests.append(
            DeviceRequest(device_ids=[str(g) for g in spec.gpu_ids], capabilities=[["gpu"]])
        )
        # Inside the container the GPUs it was given are numbered 0..n-1.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpu_ids)))
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
    writable = [spec.workdir, spec.driver_log.parent, spec.exit_file.parent]
    workspace = env.get("RUNNER_WORKSPACE")
    if workspace:
        writable.append(Path(workspace))
    client_dirs = [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    mounts = [Mount(str(p), str(p), type="bind") for p in _mount_roots(writable)]
    for p in _mount_roots([c for c in client_dirs if c.is_dir()]):
        mounts.append(Mount(str(p), str(p), type="bind", read_only=True))
    if user is None:
        st = spec.workdir.stat()
        user = f"{st.st_uid}:{st.st_gid}"
    labels = {LABEL_RUN_ID: spec.run_id}
    if workspace:
        labels[LABEL_WORKSPACE] = str(Path(workspace).resolve())
    return {
        "image": spec.image,
        # The shim as the entrypoint: an ENTRYPOINT of the image must not wrap it.
        "entrypoint": ["/bin/sh", "-c", _SHIM, "runner-shim"],
        "command": [
            str(spec.workdir),
            str(spec.exit_file),
            str(spec.driver_log),
            *spec.argv,
        ],
        "name": container_name(spec.run_id),
        "working_dir": str(spec.workdir),
        "environment": env,
        "mounts": mounts,
        "user": user,
        "init": True,
        "labels": labels,
        "device_requests": device_requests or None,
        "detach": True,
    }


class DockerHandle(HostHandle):
    """A run's container."""

    def __init__(
        self, client: Any, container_id: str, exit_file: Path, run_id: str | None = None
    ) -> None:
        self.client = client
        self.container_id = container_id
        self.exit_file = exit_file
        self.run_id = run_id
        self._code: int | None = None
        self._engine_code: int | None = None
        self._exited = threading.Event()
        self._cancel_lock = threading.Lock()
        self._pid: ProcessId | None = None
        threading.Thread(target=self._wait_engine, daemon=True).start()

    def local_tree(self) -> LocalTree | None:
        """The container's init as a host process (None when not running): the daemon
        samples CPU and memory of the run's tree through it."""
        if self._pid is None and not self._exited.is_set():
            from runner.service.proc import ProcessId  # psutil: not needed to submit

            try:
                state = self.client.api.inspect_container(self.container_id).get("State") or {}
                if state.get("Pid"):
                    self._pid = ProcessId.of(int(state["Pid"]))
            except Exception:  # gone, or the engine is busy: no sample this time
                return None
        return None if self._pid is None else LocalTree(self._pid, root_is_runner=False)

    def _wait_engine(self) -> None:
        import docker.errors

        code: int | None
        try:
            # timeout=None: no HTTP timeout; the call returns when the container stops.
            result = self.client.api.wait(self.container_id, timeout=None)
            code = int(result.get("StatusCode", -1))
        except docker.errors.NotFound:
            code = None  # removed (a finished run being finalized, or by hand)
        except Exception:
            code = self._poll_engine()
            if code is None:  # the engine connection broke while it runs: keep polling
                while (code := self._poll_engine()) is None:
                    time.sleep(0.5)
        self._engine_code = code
        self._exited.set()

    def _poll_engine(self) -> int | None:
        import docker.errors

        try:
            info = self.client.api.inspect_container(self.container_id)
        except docker.errors.NotFound:
            return -1
        except Exception:
            return None
        state = info.get("State") or {}
        if state.get("Running") or state.get("Status") in ("created", "restarting"):
            return None
        return int(state.get("ExitCode", -1))

    def poll(self) -> int | None:
        """The exit code, or None while the container runs."""
        if self._code is not None:
            return self._code
        if not self._exited.is_set():
            return None
        code = read_exit_file(self.exit_file)
        if code is None:  # the shim was killed (stop past the grace period): the engine's code
            code = self._engine_code if self._engine_code is not None else -1
        self._code = code
        return code

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the exit code; None if ``timeout_s`` passed first."""
        if not self._exited.wait(timeout_s):
            return None
        return self.poll()

    def cancel(self, grace_s: float = 10.0) -> None:
        """Stop (TERM to the process group, KILL after ``grace_s``), then remove; idempotent."""
        import docker.errors

        with self._cancel_lock:
            try:
                self.client.api.stop(self.container_id, timeout=max(1, math.ceil(grace_s)))
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                with contextlib.suppress(docker.errors.APIError):
                    self.client.api.kill(self.container_id)
            self._exited.wait(10.0)
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(self.container_id, force=True)

    def describe(self) -> dict[str, str]:
        """Enough to reattach: the container id and the exit file (and the run id)."""
        described = {
            "kind": "docker",
            "container_id": self.container_id,
            "exit_file": str(self.exit_file),
        }
        if self.run_id:
            described["run_id"] = self.run_id
        return described


class DockerTarget(HostTarget):
    """Runs in containers on this machine's Docker engine.

    Args:
        client: a ``docker.DockerClient``; default from the environment (``DOCKER_HOST``).
        user: ``uid:gid`` to run as; default the owner of the run's work folder.
        shm_size: ``/dev/shm`` of the containers (``env.docker.shm_size``), such as ``"2g"``.
    """

    kind: ClassVar[str] = "docker"

    def __init__(
        self, client: Any = None, user: str | None = None, shm_size: str | None = None
    ) -> None:
        self._client = client
        self.user = user
        self.shm_size = shm_size

    @property
    def client(self) -> Any:
        """The Docker client (made, and the engine pinged, on first use)."""
        if self._client is None:
            self._client = _client()
        return self._client

    def check(self) -> None:
        """Raise TargetUnavailableError with the fix when no engine answers."""
        _ = self.client

    def launch(self, spec: LaunchSpec, events: RunEvents | None = None) -> DockerHandle:
        """Create and start the run's container; return at once."""
        import docker.errors

        if spec.ranks:  # submit refuses these; a definition written by hand must not slip by
            raise TargetUnavailableError(
                "a distributed run cannot run in a docker environment in this version of runner"
            )

        spec.driver_log.parent.mkdir(parents=True, exist_ok=True)
        config = container_config(spec, self.user)
        if self.shm_size:
            config["shm_size"] = self.shm_size
        if os.geteuid() == 0 and spec.driver_log.exists():  # the shim appends as the run's user
            uid, gid = (int(x) for x in str(config["user"]).split(":"))
            os.chown(spec.driver_log, uid, gid)
        try:
            try:
                container = self.client.containers.create(**config)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a leftover with this name
                    raise
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_container(config["name"], force=True)
                container = self.client.containers.create(**config)
            try:
                container.start()
            except Exception:
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
                raise
        except docker.errors.ImageNotFound as exc:
            raise TargetUnavailableError(
                f"image {spec.image!r} of run {spec.run_id} is not on this machine: {exc}"
            ) from exc
        except docker.errors.APIError as exc:
            raise TargetUnavailableError(
                f"the Docker engine could not start the container of run {spec.run_id}: "
                f"{exc.explanation or exc}"
            ) from exc
        return DockerHandle(self.client, container.id, spec.exit_file, run_id=spec.run_id)

    def recover(self, job: Job) -> dict[str, str] | None:
        """The run's container, by the name it was given (if it was not created, the
        handle finds it gone and the run ends Failed)."""
        return {
            "kind": "docker",
            "container_id": container_name(job.run_id),
            "exit_file": str(job.exit_file),
            "run_id": job.run_id,
        }

    def reattach(
        self, described: Mapping[str, str], events: RunEvents | None = None
    ) -> DockerHandle:
        """A handle for a container started by an earlier daemon."""
        return DockerHandle(
            self.client,
            described["container_id"],
            Path(described["exit_file"]),
            run_id=described.get("run_id"),
        )

    def close(self) -> None:
        """Close the client connection; idempotent."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def docker_available(timeout_s: float = 5.0) -> Any:
    """A client when an engine answers, else None (no error)."""
    from environments.docker_image import docker_client

    try:
        return docker_client(timeout_s)
    except TargetUnavailableError:
        return None


def cleanup_leftovers(
    client: Any,
    workspace: Path,
    active: Callable[[], Mapping[str, str | None]],
    now: float | None = None,
) -> list[str]:
    """Remove this workspace's containers that belong to no active run; their ids.

    Args:
        client: a ``docker.DockerClient``.
        workspace: the workspace folder (its label value).
        active: returns run id -> container id stored in its handle (None: not stored yet)
            for the runs that are active; called after the containers are listed. A container of an active run is kept when its handle names
            it, or when it is young (being launched now).
        now: the current time (seconds since the epoch), for tests.
    """
    import docker.errors

    now = time.time() if now is None else now
    removed: list[str] = []
    label = f"{LABEL_WORKSPACE}={workspace.resolve()}"
    containers = client.api.containers(all=True, filters={"label": label})
    if not containers:
        return removed
    keep = active()
    for info in containers:
        run_id = str((info.get("Labels") or {}).get(LABEL_RUN_ID) or "")
        cid = str(info.get("Id"))
        if run_id in keep:
            stored = keep[run_id]
            young = now - float(info.get("Created") or 0) < _YOUNG_S
            if stored == cid or (stored is None and young):
                continue
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(cid, force=True)
            removed.append(cid)
    return removed


def sweep_containers(workspace: Path, active: Callable[[], dict[str, dict[str, str]]]) -> list[str]:
    """Remove the workspace's containers that no active run owns (a crash's leftovers);
    ``active`` gives the active runs' stored handles. Nothing when no engine is here."""
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return []  # no engine here: do not pay for importing docker
    client = docker_available()
    if client is None:
        return []
    try:
        # The containers are listed first, then the active runs (so a run launched in
        # between counts as active).
        return cleanup_leftovers(
            client,
            workspace,
            lambda: {run_id: h.get("container_id") for run_id, h in active().items()},
        )
    finally:
        client.close()
