"""Compute targets: where runs execute. ``local`` always exists; others are attached.

The registry keeps each target's name, kind and JSON configuration in the workspace
store; secrets (an SSH password) go to the workspace keyvault, never into the config.
Attaching an SSH host checks it first (host key, login, python3; ``targets.ssh.hostkeys``)
and records nothing when a check fails; detaching removes the target's secrets and the
host key attaching added, unless another target still uses that host.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from runner.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    TargetNotFoundError,
    TargetUnavailableError,
)

if TYPE_CHECKING:
    from runner.workspace import Workspace

LOCAL = "local"
#: Compute types reached over SSH (their host keys are the workspace's to keep).
_SSH_TYPES = ("remote", "slurm")


class ComputeTarget:
    """A named place to run: ``ComputeTarget(ws, name)`` looks one up.

    Example:
        >>> cfg = RemoteCompute.attach_configuration(address="gpu-box", username="me",
        ...                                          private_key_file="~/.ssh/id_ed25519")
        >>> target = ComputeTarget.attach(ws, "gpu-box", cfg)
        >>> ScriptRunConfig(".", "train.py", compute_target=target)
    """

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        if name == LOCAL:
            self.type = "local"
            self.config: dict[str, Any] = {}
            return
        rows = workspace.store.query(
            "SELECT kind, config FROM compute_targets WHERE name = ?", (name,)
        )
        if not rows:
            raise target_not_found(workspace, name, list(list_targets(workspace)))
        self.type = str(rows[0][0])
        self.config = json.loads(rows[0][1])

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: Any) -> ComputeTarget:
        """Register a target under ``name`` from an attach configuration.

        An SSH host is checked before anything is recorded: its host key must be known to
        ssh already, or be the one whose fingerprint the configuration names
        (``host_key_fingerprint=``, then it is added to ``WS/ssh/known_hosts``); the login
        must be accepted; python3 >= 3.9 must be on the host's PATH.

        Raises:
            HostKeyError: the host's key is not known yet (the message gives its fingerprint
                and how to accept it), is not the one given, or changed.
            TargetUnavailableError: the host cannot be reached, refuses the login, or lacks
                python3 >= 3.9.
            ConflictError: a target of that name exists.
        """
        if not isinstance(name, str) or not name or name == LOCAL:
            raise ConfigError(
                f"target name {name!r} is not allowed; pick a name other than 'local'"
            )
        if not hasattr(attach_configuration, "to_config"):
            raise ConfigError(
                "attach_configuration must come from RemoteCompute.attach_configuration(...)"
            )
        if _exists(workspace, name):
            raise _taken(name)
        if not isinstance(attach_configuration, RemoteComputeAttachConfiguration):
            kind, config = attach_configuration.to_config(workspace, name)
            _insert(workspace, name, kind, config)
            return ComputeTarget(workspace, name)
        kind, config, stored = attach_configuration._config(name)
        try:
            hostkeys = importlib.import_module("targets.ssh.hostkeys")
        except ImportError as exc:  # inside a run's environment: runner is not installed
            raise TargetUnavailableError(
                f"attaching SSH host {attach_configuration.address!r} needs runner installed "
                "(its targets package); attach from where you submit runs"
            ) from exc
        new_key = hostkeys.verify_attach(
            workspace,
            name,
            config,
            attach_configuration.password,
            attach_configuration.host_key_fingerprint,
            passphrase=attach_configuration.private_key_passphrase,
            then=attach_configuration.cluster_check,
        )
        inserted = False
        try:
            if stored:
                workspace.get_default_keyvault().set_secrets(stored)
            _insert(workspace, name, kind, config)
            inserted = True
            if new_key is not None:
                hostkeys.add_known_host(workspace, new_key)
        except BaseException:
            if inserted:
                with workspace.store.write() as conn:
                    conn.execute("DELETE FROM compute_targets WHERE name = ?", (name,))
            _delete_secrets(workspace, list(stored))
            raise
        return ComputeTarget(workspace, name)

    def detach(self) -> None:
        """Remove the target from the workspace (runs on it stay recorded).

        Its keyvault secrets go too, and so does its host's line in ``WS/ssh/known_hosts``
        unless another attached target reaches the same host and port.
        """
        if self.name == LOCAL:
            raise ConfigError("the 'local' target cannot be detached")
        with self.workspace.store.write() as conn:
            conn.execute("DELETE FROM compute_targets WHERE name = ?", (self.name,))
        _delete_secrets(
            self.workspace,
            [
                str(self.config[k])
                for k in ("password_secret", "passphrase_secret")
                if self.config.get(k)
            ],
        )
        if self.type not in _SSH_TYPES:
            return
        label = _host_label(self.config)
        in_use = {
            _host_label(t.config)
            for t in list_targets(self.workspace).values()
            if t.type in _SSH_TYPES
        }
        if label in in_use:
            return
        with contextlib.suppress(ImportError):  # without targets/ nothing was ever added
            importlib.import_module("targets.ssh.hostkeys").remove_known_host(self.workspace, label)

    def get_status(self) -> str:
        """'Succeeded' for a registered target (provisioning is not a thing here)."""
        return "Succeeded"

    def serialize(self) -> dict[str, Any]:
        """A JSON-safe description."""
        return {"name": self.name, "type": self.type, "config": self.config}

    def __repr__(self) -> str:
        return f"ComputeTarget(name={self.name!r}, type={self.type!r})"


class RemoteComputeAttachConfiguration:
    """How to reach a host over SSH (made by ``RemoteCompute.attach_configuration``)."""

    #: ``module:function`` checking what the target needs beyond the login (None: nothing)
    cluster_check: str | None = None

    def __init__(
        self,
        address: str,
        ssh_port: int = 22,
        username: str | None = None,
        password: str | None = None,
        private_key_file: str | None = None,
        private_key_passphrase: str | None = None,
        host_key_fingerprint: str | None = None,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise ConfigError("attach_configuration needs address= (a host name or IP)")
        if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 0 < ssh_port < 65536:
            raise ConfigError(f"ssh_port={ssh_port!r}; pass a port number between 1 and 65535")
        if not username:
            raise ConfigError("attach_configuration needs username=")
        if password is None and private_key_file is None:
            raise ConfigError("attach_configuration needs private_key_file= or password=")
        if private_key_file is not None and not os.path.isfile(
            os.path.expanduser(private_key_file)
        ):
            raise ConfigError(
                f"private_key_file={private_key_file!r}: no such file; pass the path of the "
                "SSH private key that logs in to the host (e.g. '~/.ssh/id_ed25519')"
            )
        self.address = address
        self.ssh_port = ssh_port
        self.username = username
        self.password = password
        self.private_key_file = private_key_file
        self.private_key_passphrase = private_key_passphrase
        self.host_key_fingerprint = check_fingerprint(host_key_fingerprint)

    def _config(self, name: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """(kind, JSON config, the secrets it names: secret name -> value)."""
        config: dict[str, Any] = {
            "address": self.address,
            "ssh_port": self.ssh_port,
            "username": self.username,
            "private_key_file": self.private_key_file,
        }
        stored: dict[str, str] = {}
        # Secret names allow letters, digits and '-'; the suffix keeps names that differ
        # only in other characters ('gpu.box', 'gpu_box') from sharing a secret.
        base = "compute-" + re.sub(r"[^A-Za-z0-9-]", "-", name)[:80] + "-" + secrets.token_hex(4)
        if self.password is not None:
            config["password_secret"] = f"{base}-password"
            stored[config["password_secret"]] = self.password
        if self.private_key_passphrase is not None:
            config["passphrase_secret"] = f"{base}-key-passphrase"
            stored[config["passphrase_secret"]] = self.private_key_passphrase
        return "remote", config, stored

    def to_config(self, workspace: Workspace, name: str) -> tuple[str, dict[str, Any]]:
        """(kind, JSON config); the password goes to the keyvault, never into the config."""
        kind, config, stored = self._config(name)
        if stored:
            workspace.get_default_keyvault().set_secrets(stored)
        return kind, config


class RemoteCompute(ComputeTarget):
    """A host reached over SSH."""

    @staticmethod
    def attach_configuration(
        address: str | None = None,
        ssh_port: int = 22,
        username: str | None = None,
        password: str | None = None,
        private_key_file: str | None = None,
        private_key_passphrase: str | None = None,
        compute_resource_id: str | None = None,
        host_key_fingerprint: str | None = None,
    ) -> RemoteComputeAttachConfiguration:
        """Describe an SSH host to attach with ``ComputeTarget.attach``.

        Args:
            host_key_fingerprint: runner's addition: the SHA256 fingerprint of the host's key,
                as ``ssh-keygen -l`` prints it (``SHA256:...``), to accept a host that is in
                no known_hosts file yet. Attaching without it to such a host fails with the
                fingerprint the host presents; check it against the host's own
                (``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`` there) and pass it.
                For a host whose key ssh knows already it is not consulted: ssh checks
                that key.

        Example:
            >>> cfg = RemoteCompute.attach_configuration(
            ...     address="10.0.0.5", ssh_port=22, username="me",
            ...     private_key_file="~/.ssh/id_ed25519",
            ...     host_key_fingerprint="SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg")
            >>> ComputeTarget.attach(ws, "gpu-box", cfg)
            ComputeTarget(name='gpu-box', type='remote')
        """
        return RemoteComputeAttachConfiguration(
            address or "",
            ssh_port,
            username,
            password,
            private_key_file,
            private_key_passphrase,
            host_key_fingerprint,
        )


class SlurmComputeAttachConfiguration(RemoteComputeAttachConfiguration):
    """A Slurm cluster: its login node over SSH, and how jobs are submitted there (made by
    ``SlurmCompute.attach_configuration``)."""

    cluster_check = "targets.slurm.attach:check_cluster"

    def __init__(
        self,
        address: str,
        ssh_port: int = 22,
        username: str | None = None,
        password: str | None = None,
        private_key_file: str | None = None,
        private_key_passphrase: str | None = None,
        host_key_fingerprint: str | None = None,
        *,
        shared_dir: str | None = None,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        sbatch_args: list[str] | None = None,
    ) -> None:
        super().__init__(
            address,
            ssh_port,
            username,
            password,
            private_key_file,
            private_key_passphrase,
            host_key_fingerprint,
        )
        if not isinstance(shared_dir, str) or not shared_dir:
            raise ConfigError(
                "SlurmCompute.attach_configuration needs shared_dir=: a folder the login node "
                "and every compute node see at the same path (e.g. '~/runner' on a shared "
                "home, or '/shared/me/runner')"
            )
        # (targets.slurm says why a path is refused; it is not importable inside a run)
        if not (shared_dir.startswith(("/", "~/")) or shared_dir == "~"):
            raise ConfigError(
                f"shared_dir={shared_dir!r} is not an absolute path; give the folder every "
                "node sees at the same path (e.g. '/shared/me/runner' or '~/runner')"
            )
        for what, value in (("partition", partition), ("account", account), ("qos", qos)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{what}={value!r}; pass a Slurm {what} name, or leave it out")
        if sbatch_args is not None and (
            not isinstance(sbatch_args, (list, tuple))
            or not all(isinstance(a, str) and a.startswith("--") for a in sbatch_args)
        ):
            raise ConfigError(
                f"sbatch_args={sbatch_args!r}; pass a list of long sbatch options such as "
                "['--constraint=a100', '--mem=32G']"
            )
        self.shared_dir = shared_dir
        self.partition = partition
        self.account = account
        self.qos = qos
        self.sbatch_args = list(sbatch_args or [])

    def _config(self, name: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        _, config, stored = super()._config(name)
        config.update(
            shared_dir=self.shared_dir,
            partition=self.partition,
            account=self.account,
            qos=self.qos,
            sbatch_args=self.sbatch_args,
        )
        return "slurm", config, stored


class SlurmCompute(ComputeTarget):
    """A Slurm cluster, reached through its login node over SSH (runner's addition: Azure
    ML v1 had no Slurm target)."""

    @staticmethod
    def attach_configuration(
        address: str | None = None,
        ssh_port: int = 22,
        username: str | None = None,
        private_key_file: str | None = None,
        password: str | None = None,
        partition: str | None = None,
        shared_dir: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        sbatch_args: list[str] | None = None,
        private_key_passphrase: str | None = None,
        host_key_fingerprint: str | None = None,
    ) -> SlurmComputeAttachConfiguration:
        """Describe a Slurm cluster to attach with ``ComputeTarget.attach``.

        Attaching logs in to the login node (its host key checked as for
        ``RemoteCompute``), and checks that ``sbatch`` is there, that the partition exists
        and that ``shared_dir`` is writable; nothing is recorded when a check fails.

        Args:
            shared_dir: a folder the login node and every compute node see at the same
                path; runner keeps its client, snapshots, environments and the runs'
                folders there.
            partition, account, qos: sbatch's ``--partition``, ``--account``, ``--qos``
                (None: the cluster's defaults).
            sbatch_args: more sbatch options for every job, e.g. ``["--mem=32G"]``.

        Example:
            >>> cfg = SlurmCompute.attach_configuration(
            ...     address="login.cluster", username="me", private_key_file="~/.ssh/id_ed25519",
            ...     partition="gpu", shared_dir="~/runner")
            >>> ComputeTarget.attach(ws, "cluster", cfg)
            ComputeTarget(name='cluster', type='slurm')
        """
        return SlurmComputeAttachConfiguration(
            address or "",
            ssh_port,
            username,
            password,
            private_key_file,
            private_key_passphrase,
            host_key_fingerprint,
            shared_dir=shared_dir,
            partition=partition,
            account=account,
            qos=qos,
            sbatch_args=sbatch_args,
        )


_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def check_fingerprint(value: object) -> str | None:
    """A host key fingerprint as ``ssh-keygen -l`` prints it (``SHA256:`` + 43 base64
    characters; a pasted ``=`` padding is dropped), or None; ConfigError otherwise."""
    if value is None:
        return None
    text = value.strip().rstrip("=") if isinstance(value, str) else ""
    if text[:7].upper() == "SHA256:":
        text = "SHA256:" + text[7:]
    if not _FINGERPRINT.fullmatch(text):
        raise ConfigError(
            f"host_key_fingerprint={value!r} is not a SHA256 host key fingerprint; give it as "
            "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it on the host: "
            "'SHA256:' and 43 characters"
        )
    return text


def _exists(workspace: Workspace, name: str) -> bool:
    return bool(workspace.store.query("SELECT 1 FROM compute_targets WHERE name = ?", (name,)))


def _taken(name: str) -> ConflictError:
    return ConflictError(
        f"a compute target named {name!r} exists; detach it first or pick another name"
    )


def _insert(workspace: Workspace, name: str, kind: str, config: dict[str, Any]) -> None:
    try:
        with workspace.store.write() as conn:
            conn.execute(
                "INSERT INTO compute_targets(name, kind, config, created_utc) VALUES (?,?,?,?)",
                (name, kind, json.dumps(config), time.time()),
            )
    except Exception as exc:
        if "UNIQUE" in str(exc):
            raise _taken(name) from exc
        raise


def _delete_secrets(workspace: Workspace, names: list[str]) -> None:
    keyvault = workspace.get_default_keyvault()
    for secret in names:
        with contextlib.suppress(NotFoundError):
            keyvault.delete_secret(secret)


def _host_label(config: dict[str, Any]) -> str:
    """The host of an SSH target's config as known_hosts names it."""
    port = int(config.get("ssh_port") or 22)
    address = str(config.get("address"))
    return address if port == 22 else f"[{address}]:{port}"


def target_not_found(workspace: Workspace, name: object, known: list[str]) -> TargetNotFoundError:
    """The error for a target name the workspace does not have, naming the ones it has."""
    return TargetNotFoundError(
        f"no compute target {name!r} in workspace {workspace.name}; its targets: "
        f"{', '.join(map(repr, known))}; attach one with ComputeTarget.attach(ws, name, config) "
        "or `runner target attach`"
    )


class ComputeTargets(dict[str, ComputeTarget]):
    """``ws.compute_targets``: name -> target; an unknown name is a TargetNotFoundError
    (a KeyError too) that names the targets there are."""

    def __init__(self, workspace: Workspace, targets: dict[str, ComputeTarget]) -> None:
        super().__init__(targets)
        self._workspace = workspace

    def __missing__(self, name: str) -> ComputeTarget:
        raise target_not_found(self._workspace, name, list(self))


def list_targets(workspace: Workspace) -> ComputeTargets:
    """name -> target for every target of the workspace, ``local`` first."""
    names = [r[0] for r in workspace.store.query("SELECT name FROM compute_targets ORDER BY name")]
    return ComputeTargets(workspace, {n: ComputeTarget(workspace, n) for n in [LOCAL, *names]})
