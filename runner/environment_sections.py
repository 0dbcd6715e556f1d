"""The sections of an Environment: ``env.python`` (:class:`PythonSection`), ``env.docker``
(:class:`DockerSection`) and the registry of its base image (:class:`ContainerRegistry`).

Imported by the in-run client (through :mod:`runner.environment`): standard library only,
and it must import on Python 3.9.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

from runner.conda_dependencies import CondaDependencies
from runner.environment_checks import _check_bool, _check_str_list, _dockerfile_text
from runner.errors import ConfigError

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "ContainerRegistry",
    "DockerSection",
    "PythonSection",
]

#: The base image of ``env.docker`` unless you set one: Debian with CPython 3.11, from
#: Docker Hub. Pull it (or retag your own) before going offline; it has no CUDA.
DEFAULT_CPU_IMAGE = "python:3.11-slim"
#: v1's ``DEFAULT_GPU_IMAGE`` for ``env.docker.base_image``: CUDA 12.4 and cuDNN 9 with
#: Python (``python3``) and PyTorch, from Docker Hub; the run's reserved GPUs are passed in.
#: Never chosen on its own: set it where v1 code does.
DEFAULT_GPU_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
_DEFAULT_SHM_SIZE = "2g"
_SHM_SIZE = re.compile(r"^\d+[bkmgBKMG]?$")

JSONDict = dict[str, Any]


class PythonSection:
    """Which Python a run uses, and what is installed into it.

    Attributes:
        user_managed_dependencies: True: use an existing interpreter as it is; False (the
            default, as in azureml): build one from ``conda_dependencies``.
        interpreter_path: the interpreter of a user-managed environment; None is the
            Python that submits the run.
        conda_dependencies: what to install when not user-managed.
        conda_dependencies_file: DEPRECATED in azureml; a conda file's path relative to the
            run's source directory, kept as written for the builder.
    """

    def __init__(self) -> None:
        self._user_managed = False
        self._interpreter_path: str | None = None
        self._conda_dependencies: CondaDependencies | None = CondaDependencies()
        self._conda_dependencies_file: str | None = None

    @property
    def user_managed_dependencies(self) -> bool:
        """True to use the interpreter as it is; False to build an environment."""
        return self._user_managed

    @user_managed_dependencies.setter
    def user_managed_dependencies(self, value: bool) -> None:
        self._user_managed = _check_bool(value, "python.user_managed_dependencies")

    @property
    def interpreter_path(self) -> str | None:
        """The interpreter of a user-managed environment; None: the submitting Python."""
        return self._interpreter_path

    @interpreter_path.setter
    def interpreter_path(self, value: str | os.PathLike[str] | None) -> None:
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"python.interpreter_path {value!r} is not a path or None")
        text = None if value is None else os.fspath(value)
        if text is not None and not text.strip():
            raise ConfigError(
                "python.interpreter_path is empty; pass a path such as '/usr/bin/python3', "
                "or None for the Python that submits the run"
            )
        self._interpreter_path = text

    @property
    def conda_dependencies(self) -> CondaDependencies | None:
        """The packages to install when not user-managed."""
        return self._conda_dependencies

    @conda_dependencies.setter
    def conda_dependencies(self, value: CondaDependencies | None) -> None:
        if value is not None and not isinstance(value, CondaDependencies):
            raise ConfigError(
                f"python.conda_dependencies {value!r} is not a CondaDependencies; build one "
                "with CondaDependencies.create(conda_packages=[...], pip_packages=[...])"
            )
        self._conda_dependencies = value

    @property
    def conda_dependencies_file(self) -> str | None:
        """DEPRECATED (azureml): prefer ``Environment.from_conda_specification``."""
        return self._conda_dependencies_file

    @conda_dependencies_file.setter
    def conda_dependencies_file(self, value: str | os.PathLike[str] | None) -> None:
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"python.conda_dependencies_file {value!r} is not a path or None")
        self._conda_dependencies_file = os.fspath(value) if value else None


class ContainerRegistry:
    """The registry ``docker.base_image`` is pulled from, with its login (as azureml's).

    With an ``address`` the base image is ``ADDRESS/BASE_IMAGE``; with a ``username`` and
    ``password`` the pull logs in with them (the engine keeps no login of its own). Without
    an address, images come from wherever this machine's Docker engine finds them.

    Example:
        >>> env = Environment("private-base")
        >>> env.docker.base_image = "team/train:1.0"
        >>> env.docker.base_image_registry.address = "registry.example:5000"
        >>> env.docker.base_image_reference
        'registry.example:5000/team/train:1.0'
    """

    def __init__(
        self, address: str | None = None, username: str | None = None, password: str | None = None
    ) -> None:
        self.address = address
        self.username = username
        self.password = password

    def check(self) -> None:
        """ConfigError unless every field is text without spaces (or None)."""
        for what, value in (
            ("address", self.address),
            ("username", self.username),
            ("password", self.password),
        ):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(
                    f"docker.base_image_registry.{what} {value!r} is not text; set a string or None"
                )
        if self.address is not None and any(c.isspace() or c == "@" for c in self.address):
            raise ConfigError(
                f"docker.base_image_registry.address {self.address!r} is not a registry "
                "address such as 'myregistry.azurecr.io' or '127.0.0.1:5000'"
            )
        if (self.username is None) != (self.password is None):
            raise ConfigError(
                "docker.base_image_registry needs both username and password, or neither"
            )

    def _dict(self) -> JSONDict:
        return {"address": self.address, "username": self.username, "password": self.password}

    def __repr__(self) -> str:  # never the password
        hidden = None if self.password is None else "***"
        return (
            f"ContainerRegistry(address={self.address!r}, username={self.username!r}, "
            f"password={hidden!r})"
        )


class DockerSection:
    """Whether a run goes into a Docker container, and the image it is built from.

    ``base_image`` and ``base_dockerfile`` exclude each other: setting one clears the other.

    Attributes:
        enabled: run in a container on this machine's Docker engine (default False).
        base_image: the image to start from (default :data:`DEFAULT_CPU_IMAGE`).
        base_dockerfile: a Dockerfile's text to build the base image from; assigning the
            path of an existing file reads it.
        shm_size: ``/dev/shm`` of the container, such as ``"2g"`` (default).
        arguments: extra ``docker run`` arguments.
        shared_volumes: kept for azureml compatibility.
    """

    def __init__(self) -> None:
        self._enabled = False
        self._base_image: str | None = DEFAULT_CPU_IMAGE
        self._base_dockerfile: str | None = None
        self._shm_size: str | None = _DEFAULT_SHM_SIZE
        self._arguments: list[str] = []
        self._shared_volumes = True
        self._registry = ContainerRegistry()

    @property
    def enabled(self) -> bool:
        """True: run in a Docker container (the docker target)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = _check_bool(value, "docker.enabled")

    @property
    def base_image(self) -> str | None:
        """The base image, such as ``"python:3.11-slim"``; setting it clears base_dockerfile."""
        return self._base_image

    @base_image.setter
    def base_image(self, value: str | None) -> None:
        if not value:
            self._base_image = None
            return
        if not isinstance(value, str) or any(c.isspace() for c in value):
            raise ConfigError(
                f"docker.base_image {value!r} is not an image name; pass one such as "
                f"{DEFAULT_CPU_IMAGE!r}"
            )
        self._base_image = value
        self._base_dockerfile = None

    @property
    def base_dockerfile(self) -> str | None:
        """The base Dockerfile's text; setting it (text or a path) clears base_image."""
        return self._base_dockerfile

    @base_dockerfile.setter
    def base_dockerfile(self, value: str | os.PathLike[str] | None) -> None:
        if value is None or value == "":
            self._base_dockerfile = None
            return
        self._set_dockerfile_text(_dockerfile_text(value, "docker.base_dockerfile"))

    def _set_dockerfile_text(self, text: str) -> None:
        self._base_dockerfile = text
        self._base_image = None

    @property
    def base_image_registry(self) -> ContainerRegistry:
        """The registry of ``base_image`` and its login (a ContainerRegistry to fill in)."""
        return self._registry

    @base_image_registry.setter
    def base_image_registry(self, value: ContainerRegistry | None) -> None:
        if value is None:
            value = ContainerRegistry()
        if not isinstance(value, ContainerRegistry):
            raise ConfigError(
                f"docker.base_image_registry {value!r} is not a ContainerRegistry; pass "
                "ContainerRegistry(address=..., username=..., password=...)"
            )
        self._registry = value

    @property
    def base_image_reference(self) -> str | None:
        """``base_image`` as the engine pulls it: prefixed with the registry's address."""
        image, address = self._base_image, self._registry.address
        if image is None or not address or image.startswith(address.rstrip("/") + "/"):
            return image
        return f"{address.rstrip('/')}/{image}"

    @property
    def shm_size(self) -> str | None:
        """Shared memory of the container, such as ``"2g"``; None: Docker's default."""
        return self._shm_size

    @shm_size.setter
    def shm_size(self, value: str | None) -> None:
        if value is not None and (not isinstance(value, str) or not _SHM_SIZE.match(value)):
            raise ConfigError(
                f"docker.shm_size {value!r} is not a size; pass a number with an optional "
                "unit b, k, m or g, such as '2g'"
            )
        self._shm_size = value

    @property
    def arguments(self) -> list[str]:
        """Extra ``docker run`` arguments (a list you may change in place)."""
        return self._arguments

    @arguments.setter
    def arguments(self, value: list[str]) -> None:
        self._arguments = _check_str_list(value, "docker.arguments")

    @property
    def shared_volumes(self) -> bool:
        """Kept for azureml compatibility (stored; not part of the spec hash)."""
        return self._shared_volumes

    @shared_volumes.setter
    def shared_volumes(self, value: bool) -> None:
        self._shared_volumes = _check_bool(value, "docker.shared_volumes")

    @property
    def gpu_support(self) -> bool:
        """DEPRECATED and ignored: GPUs are given to a run by ``gpu_count``."""
        warnings.warn(
            "docker.gpu_support is deprecated and ignored; ask for GPUs with "
            "RunConfiguration.gpu_count",
            DeprecationWarning,
            stacklevel=2,
        )
        return True

    @gpu_support.setter
    def gpu_support(self, value: bool) -> None:
        warnings.warn(
            "docker.gpu_support is deprecated and ignored; ask for GPUs with "
            "RunConfiguration.gpu_count",
            DeprecationWarning,
            stacklevel=2,
        )
