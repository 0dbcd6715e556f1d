"""Environment and its sections: the definition of a run's Python, plus a canonical spec hash.

Mirrors ``azureml.core.environment.Environment`` (``env.python``, ``env.docker``,
``env.environment_variables``, ``from_conda_specification``, ``from_pip_requirements``,
``from_dockerfile``, ``register``, ``get``, ``list``, ``build_local``, ``save_to_directory``,
``load_from_directory``). This module is pure data: ``environments/`` builds what it describes,
and the workspace keeps the registered versions (:class:`EnvironmentRegistry`).

Differences from azureml, on purpose:

- ``python.interpreter_path`` defaults to None, meaning the Python that submits the run
  (azureml: ``"python"`` on PATH). :meth:`Environment.default` is what a run gets when it
  names no environment: user-managed, that same interpreter.
- ``docker.base_image`` defaults to :data:`DEFAULT_CPU_IMAGE` (``python:3.11-slim``, a public
  image that has Python; azureml's images live in Microsoft's registry).
- ``environment_variables`` starts empty and is not deprecated.
- ``from_dockerfile`` and ``from_docker_image`` set ``docker.enabled = True``: runner picks
  the Docker target from ``docker.enabled``, and a Dockerfile would otherwise be ignored.
- ``save_to_directory`` refuses a folder that is not empty unless ``overwrite=True``.


What an environment is as data (its checks, its JSON form, the spec hash that is the build
cache key) is in :mod:`runner.environment_spec`; its sections (``env.python``,
``env.docker``) in :mod:`runner.environment_sections`; the checks of its values and the
readers of its files in :mod:`runner.environment_checks`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

from runner import curated
from runner.conda_dependencies import (
    PYTHON_DEFAULT_VERSION,
    CondaDependencies,
    write_text_atomic,
)
from runner.environment_checks import (
    _check_bool,
    _check_name,
    _check_version,
    _dockerfile_text,
    _read_requirements,
    _read_text,
)
from runner.environment_checks import check_env_vars as check_env_vars
from runner.environment_sections import (
    DEFAULT_CPU_IMAGE,
    DEFAULT_GPU_IMAGE,
    ContainerRegistry,
    DockerSection,
    PythonSection,
)
from runner.environment_spec import JSONDict, _EnvironmentSpec
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerWarning

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_ENVIRONMENT_NAME",
    "DEFAULT_GPU_IMAGE",
    "ContainerRegistry",
    "DockerSection",
    "Environment",
    "EnvironmentRegistry",
    "PythonSection",
]

#: The name of :meth:`Environment.default`, the environment of a run that names none.
DEFAULT_ENVIRONMENT_NAME = "runner-default"

_DEFINITION_FILE_NAME = "azureml_environment.json"
_CONDA_DEPENDENCIES_FILE_NAME = "conda_dependencies.yml"
_BASE_DOCKERFILE_FILE_NAME = "BaseDockerfile"  # azureml's name for it
_PLATFORMS = {"linux": "Linux", "win32": "Windows", "darwin": "OSX"}


# --- the workspace side -------------------------------------------------------------------


@runtime_checkable
class EnvironmentRegistry(Protocol):
    """What ``register``/``get``/``list``/``build_local`` need from a workspace."""

    def _register_environment(self, environment: Environment) -> Environment:
        """Store the next version of ``environment``; return it with its ``version`` set."""

    def _get_environment(self, name: str, version: str | None) -> Environment:
        """One stored version (the latest for None); NotFoundError if there is none."""

    def _list_environments(self) -> dict[str, Environment]:
        """The latest version of every stored environment, by name."""

    def _build_environment(self, environment: Environment) -> object:
        """Prepare ``environment`` now, writing its build log."""


def _registry(workspace: object, what: str) -> EnvironmentRegistry:
    if not isinstance(workspace, EnvironmentRegistry):
        raise ConfigError(
            f"{what} needs a Workspace, got {type(workspace).__name__}; "
            "pass ws = Workspace.from_config()"
        )
    return workspace


# --- the environment ----------------------------------------------------------------------


class Environment(_EnvironmentSpec):
    """A named, versionable definition of the Python a run uses.

    Args:
        name: letters, digits, ``.``, ``_`` and ``-``.

    Example:
        >>> from runner import Environment
        >>> from runner.conda_dependencies import CondaDependencies
        >>> env = Environment("sklearn-env")
        >>> env.python.conda_dependencies = CondaDependencies.create(
        ...     conda_packages=["scikit-learn"], pip_packages=["joblib"])
        >>> env.docker.enabled = True
        >>> len(env.spec_hash())
        64
    """

    # --- constructors ---------------------------------------------------------------------

    @classmethod
    def default(cls) -> Environment:
        """The environment of a run that names none: the submitting Python, as it is.

        Example:
            >>> Environment.default().python.user_managed_dependencies
            True
        """
        env = cls(DEFAULT_ENVIRONMENT_NAME)
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = None
        env.python.conda_dependencies = None
        return env

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str | os.PathLike[str]) -> Environment:
        """An environment built from a conda environment YAML file.

        Without a ``python=`` entry, :data:`PYTHON_DEFAULT_VERSION` is used (with a warning).

        Example:
            >>> env = Environment.from_conda_specification("train", "env.yml")  # doctest: +SKIP
        """
        env = cls(name)
        conda = CondaDependencies(file_path)
        if conda.python_version is None:
            warnings.warn(
                f"{os.fspath(file_path)!r} pins no Python version; using "
                f"python={PYTHON_DEFAULT_VERSION}. Add 'python=X.Y' to its dependencies "
                "to choose one",
                RunnerWarning,
                stacklevel=2,
            )
            conda.set_python_version(PYTHON_DEFAULT_VERSION)
        env.python.conda_dependencies = conda
        return env

    @classmethod
    def from_pip_requirements(
        cls, name: str, file_path: str | os.PathLike[str], pip_version: str | None = None
    ) -> Environment:
        """An environment built from a pip requirements file.

        Requirement lines are kept as written (comments removed); ``-r other.txt`` includes
        are read relative to the including file; ``--index-url``, ``--extra-index-url``,
        ``--find-links`` and other options are kept as pip options. ``-c`` constraints files
        and remote ``-r`` URLs are refused. ``pip`` (or ``pip=<pip_version>``) is added as a
        conda package.

        Example:
            >>> env = Environment.from_pip_requirements("train", "reqs.txt")  # doctest: +SKIP
        """
        env = cls(name)
        if pip_version is not None and (
            not isinstance(pip_version, str) or not re.match(r"^\d+(\.\d+)*$", pip_version)
        ):
            raise ConfigError(f"pip_version {pip_version!r} is not a version such as '24.0'")
        if not isinstance(file_path, (str, os.PathLike)):
            raise ConfigError(f"file_path {file_path!r} is not the path to a requirements file")
        lines = _read_requirements(Path(file_path), ())
        conda = CondaDependencies()
        conda.set_pip_requirements(lines)
        conda.add_conda_package(f"pip={pip_version}" if pip_version else "pip")
        env.python.conda_dependencies = conda
        return env

    @classmethod
    def _from_dependencies(
        cls,
        name: str,
        conda_specification: str | os.PathLike[str] | None,
        pip_requirements: str | os.PathLike[str] | None,
    ) -> Environment:
        if conda_specification is not None and pip_requirements is not None:
            raise ConfigError(
                "pass conda_specification or pip_requirements, not both; "
                "a conda file can hold pip packages under 'pip:'"
            )
        if conda_specification is not None:
            return cls.from_conda_specification(name, conda_specification)
        if pip_requirements is not None:
            return cls.from_pip_requirements(name, pip_requirements)
        env = cls(name)
        env.python.user_managed_dependencies = True
        return env

    @classmethod
    def from_dockerfile(
        cls,
        name: str,
        dockerfile: str | os.PathLike[str],
        conda_specification: str | os.PathLike[str] | None = None,
        pip_requirements: str | os.PathLike[str] | None = None,
    ) -> Environment:
        """An environment in a container built from a Dockerfile.

        Args:
            name: the environment's name.
            dockerfile: the Dockerfile's text, or the path to an existing Dockerfile.
            conda_specification: a conda YAML file whose packages are added on top.
            pip_requirements: a pip requirements file whose packages are added on top.

        Without either file the environment is user-managed: the image's own Python is used.

        Example:
            >>> text = "FROM python:3.11-slim\\nRUN pip install numpy\\n"
            >>> env = Environment.from_dockerfile("numpy-image", text)
            >>> env.docker.enabled, env.python.user_managed_dependencies
            (True, True)
        """
        text = _dockerfile_text(dockerfile, "dockerfile")
        env = cls._from_dependencies(name, conda_specification, pip_requirements)
        env.docker._set_dockerfile_text(text)
        env.docker.enabled = True
        return env

    @classmethod
    def from_docker_image(
        cls,
        name: str,
        image: str,
        container_registry: ContainerRegistry | None = None,
        conda_specification: str | os.PathLike[str] | None = None,
        pip_requirements: str | os.PathLike[str] | None = None,
    ) -> Environment:
        """An environment in a container started from an existing image (see from_dockerfile)."""
        if container_registry is not None and not isinstance(container_registry, ContainerRegistry):
            raise ConfigError(
                f"container_registry {container_registry!r} is not a ContainerRegistry; pass "
                "ContainerRegistry(address=..., username=..., password=...) or None"
            )
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f"image {image!r} is not an image name such as 'python:3.11-slim'")
        env = cls._from_dependencies(name, conda_specification, pip_requirements)
        env.docker.base_image = image
        env.docker.base_image_registry = container_registry
        env.docker.enabled = True
        return env

    def clone(self, new_name: str) -> Environment:
        """A copy under a new name, unregistered (version None)."""
        env = Environment.from_dict(self._dict())
        env.name = new_name
        env.version = None
        return env

    # --- files ----------------------------------------------------------------------------

    def save_to_directory(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        """Write the definition to a folder, in azureml's layout.

        ``azureml_environment.json`` always; ``conda_dependencies.yml`` when there are conda
        dependencies and ``BaseDockerfile`` when there is a base Dockerfile (then left out of
        the JSON). The folder is created if needed.

        Raises:
            ConflictError: the folder has files in it and ``overwrite`` is False.
        """
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"cannot save the environment to {str(folder)!r}: it is a file")
        if folder.is_dir() and any(folder.iterdir()) and not overwrite:
            raise ConflictError(
                f"cannot save the environment to {str(folder)!r}: the folder is not empty; "
                "pass overwrite=True to replace what is saved there, or choose a new folder"
            )
        data = self.to_dict()
        folder.mkdir(parents=True, exist_ok=True)
        conda_file = folder / _CONDA_DEPENDENCIES_FILE_NAME
        dockerfile_file = folder / _BASE_DOCKERFILE_FILE_NAME
        conda = self.python.conda_dependencies
        if conda is not None:
            conda.save(conda_file)
            del data["python"]["condaDependencies"]
        elif conda_file.exists():  # left by an earlier save, and now wrong
            conda_file.unlink()
        if self.docker.base_dockerfile is not None:
            write_text_atomic(dockerfile_file, self.docker.base_dockerfile)
            del data["docker"]["baseDockerfile"]
        elif dockerfile_file.exists():
            dockerfile_file.unlink()
        write_text_atomic(folder / _DEFINITION_FILE_NAME, json.dumps(data, indent=4) + "\n")

    @classmethod
    def load_from_directory(cls, path: str | os.PathLike[str]) -> Environment:
        """Read an environment that :meth:`save_to_directory` (or azureml) wrote.

        Raises:
            NotFoundError: the folder has no ``azureml_environment.json``.
        """
        folder = Path(path)
        definition = folder / _DEFINITION_FILE_NAME
        if not definition.is_file():
            raise NotFoundError(
                f"no saved environment in {str(folder)!r}: {_DEFINITION_FILE_NAME} not found; "
                "write one with env.save_to_directory(path)"
            )
        try:
            data = json.loads(_read_text(definition, "environment definition"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{str(definition)!r} is not valid JSON: {exc}") from exc
        env = cls.from_dict(data)
        conda_file = folder / _CONDA_DEPENDENCIES_FILE_NAME
        if conda_file.is_file():
            env.python.conda_dependencies = CondaDependencies(conda_file)
        dockerfile_file = folder / _BASE_DOCKERFILE_FILE_NAME
        if dockerfile_file.is_file():
            env.docker._set_dockerfile_text(_read_text(dockerfile_file, "BaseDockerfile"))
        return env

    # --- workspace ------------------------------------------------------------------------

    def register(self, workspace: EnvironmentRegistry) -> Environment:
        """Store this definition as the next version of its name; return that version.

        Example:
            >>> registered = env.register(ws)  # doctest: +SKIP
            >>> registered.version  # doctest: +SKIP
            '1'
        """
        registry = _registry(workspace, "Environment.register()")
        if curated.is_curated_name(self._name):
            raise ConfigError(
                f"environment name {self._name!r} starts with {curated.PREFIX!r}, which is reserved "
                "for curated environments (as in azureml); register it under another name"
            )
        self.validate()
        return registry._register_environment(self)

    @staticmethod
    def get(workspace: EnvironmentRegistry, name: str, version: str | None = None) -> Environment:
        """A registered environment: ``version``, or the latest one when it is None.

        A curated name (``"AzureML-Minimal"``, ``"AzureML-sklearn-1.0-ubuntu20.04-py38-cpu"``,
        ...) gives runner's local equivalent, a pip-only venv (see :mod:`runner.curated`).

        Raises:
            NotFoundError: no such name or version in the workspace, or no such curated name
                (the message lists the curated names there are).
        """
        registry = _registry(workspace, "Environment.get()")
        name, version = _check_name(name), _check_version(version)
        if curated.is_curated_name(name):
            env = Environment(name)
            env.python.conda_dependencies = CondaDependencies.create(
                pip_packages=curated.packages(name, version)
            )
            env.version = "1"
            return env
        return registry._get_environment(name, version)

    def build_local(
        self,
        workspace: EnvironmentRegistry,
        platform: str | None = None,
        useDocker: bool | None = None,
    ) -> None:
        """Prepare this environment now, on this machine, with its build log.

        Args:
            workspace: the workspace whose cache and logs are used.
            platform: accepted for azureml compatibility; must be None or this machine's
                (``"Linux"``, ``"Windows"`` or ``"OSX"``).
            useDocker: True or False to build with or without Docker whatever
                ``docker.enabled`` says; None (the default) follows ``docker.enabled``.
        """
        registry = _registry(workspace, "Environment.build_local()")
        here = _PLATFORMS.get(sys.platform, sys.platform)
        if platform is not None and platform != here:
            raise ConfigError(
                f"build_local(platform={platform!r}): runner builds for this machine "
                f"({here!r}) only; leave platform out"
            )
        env = self
        if useDocker is not None:
            env = Environment.from_dict(self._dict())
            env.docker.enabled = _check_bool(useDocker, "useDocker")
        env.validate()
        registry._build_environment(env)

    # --- comparison -----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Environment):
            return NotImplemented
        return self._dict() == other._dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Environment(name={self._name!r}, version={self._version!r})"

    # Last, so that the name 'list' means the builtin in the annotations above.
    @staticmethod
    def list(workspace: EnvironmentRegistry) -> dict[str, Environment]:
        """The latest version of every registered environment, by name (as in azureml)."""
        return _registry(workspace, "Environment.list()")._list_environments()


def resolve_interpreter(env: Environment, default: str | None = None) -> str:
    """The interpreter a user-managed environment runs: interpreter_path, else ``default``.

    Raises ConfigError at submit time when the interpreter does not exist.
    """
    path = env.python.interpreter_path or default or sys.executable
    if os.sep not in path:
        found = shutil.which(path)
        if found is None:
            raise ConfigError(
                f"interpreter {path!r} of environment {env.name!r} is not on PATH; set "
                "env.python.interpreter_path to a full path"
            )
        path = found
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise ConfigError(
            f"interpreter {path!r} of environment {env.name!r} does not exist or is not "
            "executable; fix env.python.interpreter_path"
        )
    return path


def redacted(definition: JSONDict) -> JSONDict:
    """An environment definition (``to_dict()``) for display: the registry password hidden."""
    docker = definition.get("docker")
    if not isinstance(docker, dict):
        return definition
    registry = docker.get("baseImageRegistry")
    if not isinstance(registry, dict) or registry.get("password") is None:
        return definition
    return {
        **definition,
        "docker": {**docker, "baseImageRegistry": {**registry, "password": "***"}},
    }
