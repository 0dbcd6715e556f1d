"""The workspace's local secret store: one JSON file with mode 0600.

Mirrors the part of azureml's Keyvault that training code uses. Writes take an
exclusive ``flock`` and replace the file atomically, so concurrent writers never lose
each other's secrets and readers never see a torn file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import ConfigError, NotFoundError, StoreError

_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"secret name {name!r} is not valid; use 1-127 letters, digits and '-' "
            "(the Azure Key Vault rule)"
        )
    return name


class Keyvault:
    """Secrets of one workspace, readable only by its owner.

    Example:
        >>> kv = ws.get_default_keyvault()
        >>> kv.set_secret("db-password", "hunter2")
        >>> kv.get_secret("db-password")
        'hunter2'
    """

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path = path
        #: the file's mode: the owner's only, or a shared workspace's group too
        self.mode = mode

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, self.mode)
        if self.mode & 0o070 and os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, self.mode)  # shared: the group must open it too, whatever the umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, str]:
        """The stored secrets; StoreError naming the file when it is garbled."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        fix = (
            "restore it from a backup, or move it away and set the secrets again "
            "(ws.get_default_keyvault().set_secret(name, value))"
        )
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
            raise StoreError(f"the keyvault file {self.path} is garbled ({exc}); {fix}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise StoreError(
                f"the keyvault file {self.path} does not hold a JSON object of name -> "
                f"secret strings; {fix}"
            )
        return data

    def _write(self, data: dict[str, str]) -> None:
        tmp = f"{self.path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.chmod(tmp, self.mode)
        os.replace(tmp, self.path)

    def set_secret(self, name: str, value: str) -> None:
        """Add or replace one secret."""
        self.set_secrets({name: value})

    def set_secrets(self, secrets_batch: dict[str, str]) -> None:
        """Add or replace several secrets at once."""
        for name, value in secrets_batch.items():
            _check_name(name)
            if not isinstance(value, str):
                raise ConfigError(
                    f"secret {name!r}: the value must be a str, not {type(value).__name__}"
                )
        with self._locked():
            data = self._read()
            data.update(secrets_batch)
            self._write(data)

    def get_secret(self, name: str) -> str:
        """The value of a secret; NotFoundError if there is none of that name."""
        data = self._read()
        if name not in data:
            raise NotFoundError(
                f"no secret named {name!r} in the workspace keyvault ({self.path}); "
                "add it with ws.get_default_keyvault().set_secret(name, value)"
            )
        return data[name]

    def get_secrets(self, secrets: list[str]) -> dict[str, str | None]:
        """name -> value for each name; None for names that are not stored."""
        data = self._read()
        return {name: data.get(name) for name in secrets}

    def list_secrets(self) -> list[dict[str, str]]:
        """The stored secrets' names, as ``[{'name': ...}]`` like azureml."""
        return [{"name": name} for name in sorted(self._read())]

    def delete_secret(self, name: str) -> None:
        """Remove a secret; NotFoundError if there is none of that name."""
        with self._locked():
            data = self._read()
            if name not in data:
                raise NotFoundError(f"no secret named {name!r} to delete")
            del data[name]
            self._write(data)

    def delete_secrets(self, secrets: list[str]) -> None:
        """Remove several secrets."""
        for name in secrets:
            self.delete_secret(name)
