"""SSH targets: runs on a host reached with the system's OpenSSH client.

The package: ``connection`` (endpoint, the shared OpenSSH connection, connect errors),
``session`` (one agent session on the host), ``handle`` (a run followed from here),
``hostkeys`` (accepting a host's key at attach); the host's side is
``runner/remote_agent.py``, shipped with runner's in-run client.

Why the OpenSSH client and not a Python SSH library: it is on every machine that has
``ssh``, it reads the user's ``~/.ssh/config`` (aliases, ProxyJump, agents, certificates)
and known_hosts exactly as the user's own ``ssh`` does, and its ControlMaster keeps one
authenticated connection per host that every later command reuses (a new channel costs
a few milliseconds instead of a handshake). paramiko/asyncssh would add a compiled
dependency and reimplement all of that less faithfully.

The remote side is runner's own in-run client plus ``runner.remote_agent`` (standard
library only), copied to ``~/.runner-remote/client/<version>`` once per version. One
``session`` per run carries the snapshot (only contents the host lacks), prepares the
interpreter, starts the script in its own session, and then streams the driver log and
the run's journal back from offsets the supervisor keeps, with heartbeats. When the link
drops, the run goes on over there; the handle reports the link lost (the run becomes
NotResponding), reconnects, and resumes both streams where they stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from environments.base import PreparedEnvironment
from runner.definition import RunDefinition
from runner.errors import ConfigError, TargetUnavailableError
from targets.base import Job, LaunchSpec, Place, RunEvents, TargetKind
from targets.ssh.connection import (
    BOOTSTRAP,
    REMOTE_BASE,
    Connection,
    Endpoint,
    explain_ssh_failure,
    known_hosts_files,
    python_problem,
)
from targets.ssh.handle import SshHandle
from targets.ssh.session import AgentSession, RemoteError

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = [
    "KIND",
    "AgentSession",
    "Connection",
    "Endpoint",
    "RemoteError",
    "SshHandle",
    "SshTarget",
    "environment_request",
    "explain_ssh_failure",
    "known_hosts_files",
    "python_problem",
    "sync_snapshot",
]


def environment_request(env: Any) -> dict[str, Any]:
    """What the host needs to prepare ``env``; ConfigError for kinds it cannot prepare."""
    from environments.selection import kind_of

    kind = kind_of(env)
    if kind == "user_managed":
        return {"kind": "user_managed", "python": env.python.interpreter_path}
    if kind == "venv":
        from environments.venv import pip_install_args

        requirements, options, _ = pip_install_args(env)
        wanted = [*options, *requirements]
        key = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:16]
        return {"kind": "venv", "key": key, "requirements": wanted}
    if kind == "docker":
        from environments.docker_image import (
            DEFAULT_PYTHON,
            conda_packages,
            dockerfile_for,
            image_tag,
        )

        if conda_packages(env):
            raise ConfigError(
                f"environment {env.name!r} has conda packages in a docker image, which remote "
                "(SSH) targets cannot build yet; use pip packages in the image, or a base "
                "image that has them"
            )
        env.validate()
        return {
            "kind": "docker",
            "tag": image_tag(env),
            "dockerfile": dockerfile_for(env, env.spec_hash(), with_ca=False),
            "python": env.python.interpreter_path or DEFAULT_PYTHON,
            "shm_size": env.docker.shm_size,
        }
    if kind == "conda":
        from targets.ssh.conda import check_conda

        check_conda(env)
        # Locked here and installed there in steps: targets.ssh.conda.prepare_conda.
        return {"kind": "conda"}
    raise ConfigError(
        f"environment {env.name!r} is a {kind} environment, which remote (SSH) targets cannot "
        "prepare yet; use pip packages (a venv), a docker image, or a user-managed "
        "interpreter on the host"
    )


_PROBED: dict[str, float] = {}


class SshTarget:
    """Runs scripts on one SSH host (one object per run: it holds the run's agent session
    from ``prepare`` until ``launch`` hands it to the run's handle)."""

    kind: ClassVar[str] = "ssh"
    shares_host: ClassVar[bool] = False
    #: the host-side program (``remote_agent``) and its commands
    bootstrap: ClassVar[str] = BOOTSTRAP
    session_command: ClassVar[str] = "session"
    cancel_command: ClassVar[str] = "cancel"

    def __init__(
        self,
        ws: Any,
        name: str,
        config: Mapping[str, Any],
        endpoint: Endpoint | None = None,
        client_dir: Path | None = None,
    ) -> None:
        self.ws = ws
        self.name = name
        self.endpoint = endpoint or Endpoint.of(ws, name, config)
        self.conn = Connection(self.endpoint)
        self.client_dir = client_dir
        self.base = REMOTE_BASE  #: runner's folder on the host (a shell word)
        self._session: AgentSession | None = None
        self._prepared: dict[str, Any] = {}
        self._snapshot_id: str | None = None

    @classmethod
    def from_endpoint(cls, ws: Any, endpoint: Endpoint) -> SshTarget:
        """A target not recorded (yet): attach checks the login with it."""
        return cls(ws, endpoint.name, {}, endpoint)

    @property
    def remote_client(self) -> str:
        """Where runner's remote side of this version lives on the host."""
        return f"{self.base}/client/{self._client().name}"

    def agent_command(self, *args: str) -> str:
        """A shell command line running runner's host side with ``args``."""
        env = "" if self.base == REMOTE_BASE else f'RUNNER_REMOTE_BASE="{self.base}" '
        words = " ".join(shlex.quote(a) for a in args)
        return f'{env}exec python3 -c "{self.bootstrap}" "{self.remote_client}" {words}'

    def _client(self) -> Path:
        if self.client_dir is None:
            raise TargetUnavailableError(
                f"target {self.name!r}: runs on it are started by the workspace daemon"
            )
        return self.client_dir

    def check(self) -> None:
        """Host key, login and python3 on the host: a clear error now, not a failed run."""
        if self.endpoint.key_file and not os.path.exists(self.endpoint.key_file):
            raise explain_ssh_failure(self.endpoint, "")
        if self.conn.control_path in _PROBED and self.conn.master_alive():
            return
        proc = self.conn.run(
            'exec python3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 87)"',
            timeout_s=60,
        )
        problem = python_problem(self.endpoint, proc.returncode)
        if problem is not None:
            raise problem
        if proc.returncode != 0:
            raise explain_ssh_failure(self.endpoint, proc.stderr.decode("utf-8", "replace"))
        _PROBED[self.conn.control_path] = time.time()

    def check_environment(self, env: Environment) -> None:
        """ConfigError for an environment kind the host cannot prepare."""
        environment_request(env)
        env.validate()

    def open_session(self) -> AgentSession:
        """A session with runner's remote side (installed first if needed)."""
        session = AgentSession(
            self.conn, self._client(), self.base, self.bootstrap, self.session_command
        )
        session.hello()
        return session

    def prepare(self, job: Job) -> PreparedEnvironment:
        """The environment, prepared on the host by its agent."""
        with open(job.prep_log, "a", encoding="utf-8") as log:
            log.write(f"connecting to {self.endpoint.user}@{self.endpoint.address}\n")
        if self._session is None:
            self._session = self.open_session()
        request = environment_request(job.environment)
        if request["kind"] == "conda":
            from targets.ssh.conda import prepare_conda

            prepared, answer = prepare_conda(self._session, job.environment, job.prep_log)
            self._prepared = {**answer, "env": dict(prepared.env)}
            return prepared
        answer, _ = self._session.request({"op": "prepare", **request})
        with open(job.prep_log, "a", encoding="utf-8") as log:
            log.write(str(answer.get("log") or ""))
        self._prepared = answer
        image = answer.get("image")
        return PreparedEnvironment(
            python=str(answer.get("python") or "{python}"), image=str(image) if image else None
        )

    def stage(self, job: Job, workdir: Path) -> str:
        """Send the host the snapshot contents it lacks; ./outputs come back to ``workdir``."""
        workdir.mkdir(parents=True, exist_ok=True)
        if job.snapshot is None:
            return ""
        if self._session is None:
            self._session = self.open_session()
        self._snapshot_id = job.snapshot.id
        sent = sync_snapshot(self._session, job.blobs, job.snapshot)
        return f"snapshot {job.snapshot.id[:12]}: {sent} bytes of contents sent"

    def launch(self, spec: LaunchSpec, events: RunEvents) -> SshHandle:
        """Start the run on the host in its own session; follow it from here."""
        session, _ = self.send_launch(spec)
        return SshHandle(self, spec.run_id, events, session)

    def send_launch(self, spec: LaunchSpec, **extra: Any) -> tuple[AgentSession, dict[str, Any]]:
        """Ask the host's agent to start the run (``extra``: more for the agent); returns
        the run's session, which its handle owns from now on, and the agent's answer."""
        session = self._session
        if session is None:
            raise TargetUnavailableError(f"run {spec.run_id} was not prepared on {self.name!r}")
        self._session = None  # the run's handle owns it from here
        try:
            answer, _ = session.request(
                {
                    "op": "launch",
                    "run_id": spec.run_id,
                    "snapshot": self._snapshot_id,
                    "experiment": spec.experiment,
                    "target": self.name,
                    "tags": dict(spec.tags),
                    "properties": dict(spec.properties),
                    "python": self._prepared.get("python"),
                    "image": spec.image,
                    "shm_size": self._prepared.get("shm_size"),
                    "argv": list(spec.argv),
                    # what the host's environment needs set (a conda prefix's PATH...),
                    # then the run's own variables
                    "env": {**dict(self._prepared.get("env") or {}), **spec.env},
                    **extra,
                }
            )
        except BaseException:
            session.close()
            raise
        return session, answer

    def recover(self, job: Job) -> dict[str, str] | None:
        """The run by its id on the host (the agent says there if it never started)."""
        return {"kind": "ssh", "target": self.name, "run_id": job.run_id}

    def reattach(self, described: Mapping[str, str], events: RunEvents) -> SshHandle:
        """A handle for a run launched earlier; it follows the run from now on."""
        return SshHandle(self, str(described["run_id"]), events)

    def close(self) -> None:
        """End a session no run took over (a run canceled before launch); the shared
        connection stays up for the next run (ControlPersist ends it)."""
        if self._session is not None:
            self._session.close()
            self._session = None


def sync_snapshot(session: AgentSession, blobs: Any, snapshot: Any) -> int:
    """Make the host hold the snapshot; returns the content bytes sent (0 when it had all)."""
    if session.request({"op": "snapshot", "id": snapshot.id})[0].get("have"):
        return 0
    entries = [[e.path, e.digest, e.size, e.executable] for e in snapshot.entries]
    answer, _ = session.request({"op": "snapshot", "id": snapshot.id, "entries": entries})
    if answer.get("have"):  # another run's session completed it meanwhile
        return 0
    sent = 0
    for digest in answer.get("missing") or []:
        data = blobs.read_bytes(digest)
        session.send({"op": "blob", "digest": digest}, data)
        sent += len(data)
    session.request({"op": "snapshot_done", "id": snapshot.id})
    return sent


def _for_run(place: Place, definition: RunDefinition) -> SshTarget:
    return SshTarget(place.ws, place.name, place.config, client_dir=place.client_dir)


#: The ``remote`` compute target (registry.BUILTIN).
KIND = TargetKind(make=_for_run)
