"""Compute targets: where runs execute. ``local`` always exists; others are attached.

The registry keeps each target's name, kind and JSON configuration in the workspace
store; secrets (an SSH password) go to the workspace keyvault, never into the config.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from runner.workspace import Workspace

LOCAL = "local"


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
        rows = workspace._store.query(
            "SELECT kind, config FROM compute_targets WHERE name = ?", (name,)
        )
        if not rows:
            known = sorted(list_targets(workspace))
            raise NotFoundError(
                f"no compute target {name!r} in workspace {workspace.name}; known: {known}; "
                "attach one with ComputeTarget.attach(ws, name, config) or `runner target attach`"
            )
        self.type = str(rows[0][0])
        self.config = json.loads(rows[0][1])

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: Any) -> ComputeTarget:
        """Register a target under ``name`` from an attach configuration."""
        if not isinstance(name, str) or not name or name == LOCAL:
            raise ConfigError(
                f"target name {name!r} is not allowed; pick a name other than 'local'"
            )
        if not hasattr(attach_configuration, "to_config"):
            raise ConfigError(
                "attach_configuration must come from RemoteCompute.attach_configuration(...)"
            )
        kind, config = attach_configuration.to_config(workspace, name)
        try:
            with workspace._store.write() as conn:
                conn.execute(
                    "INSERT INTO compute_targets(name, kind, config, created_utc) VALUES (?,?,?,?)",
                    (name, kind, json.dumps(config), time.time()),
                )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise ConflictError(
                    f"a compute target named {name!r} exists; detach it first or pick another name"
                ) from exc
            raise
        return ComputeTarget(workspace, name)

    def detach(self) -> None:
        """Remove the target from the workspace (runs on it stay recorded)."""
        if self.name == LOCAL:
            raise ConfigError("the 'local' target cannot be detached")
        with self.workspace._store.write() as conn:
            conn.execute("DELETE FROM compute_targets WHERE name = ?", (self.name,))

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

    def __init__(
        self,
        address: str,
        ssh_port: int = 22,
        username: str | None = None,
        password: str | None = None,
        private_key_file: str | None = None,
        private_key_passphrase: str | None = None,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise ConfigError("attach_configuration needs address= (a host name or IP)")
        if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 0 < ssh_port < 65536:
            raise ConfigError(f"ssh_port={ssh_port!r}; pass a port number between 1 and 65535")
        if not username:
            raise ConfigError("attach_configuration needs username=")
        if password is None and private_key_file is None:
            raise ConfigError("attach_configuration needs private_key_file= or password=")
        self.address = address
        self.ssh_port = ssh_port
        self.username = username
        self.password = password
        self.private_key_file = private_key_file
        self.private_key_passphrase = private_key_passphrase

    def to_config(self, workspace: Workspace, name: str) -> tuple[str, dict[str, Any]]:
        """(kind, JSON config); the password goes to the keyvault, never into the config."""
        config: dict[str, Any] = {
            "address": self.address,
            "ssh_port": self.ssh_port,
            "username": self.username,
            "private_key_file": self.private_key_file,
        }
        if self.password is not None:
            secret = f"compute-{name}-password".replace("_", "-")
            workspace.get_default_keyvault().set_secret(secret, self.password)
            config["password_secret"] = secret
        if self.private_key_passphrase is not None:
            secret = f"compute-{name}-key-passphrase".replace("_", "-")
            workspace.get_default_keyvault().set_secret(secret, self.private_key_passphrase)
            config["passphrase_secret"] = secret
        return "remote", config


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
    ) -> RemoteComputeAttachConfiguration:
        """Describe an SSH host to attach with ``ComputeTarget.attach``."""
        return RemoteComputeAttachConfiguration(
            address or "", ssh_port, username, password, private_key_file, private_key_passphrase
        )


def list_targets(workspace: Workspace) -> dict[str, ComputeTarget]:
    """name -> target for every target of the workspace, ``local`` first."""
    names = [r[0] for r in workspace._store.query("SELECT name FROM compute_targets ORDER BY name")]
    return {n: ComputeTarget(workspace, n) for n in [LOCAL, *names]}
