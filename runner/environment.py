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

The spec hash (:meth:`Environment.spec_hash`) is the build cache key. It covers everything
that can change what gets built, and nothing that is applied when the run starts:

- in: ``python.user_managed_dependencies``, ``python.interpreter_path``,
  ``python.conda_dependencies_file`` (the path as written), and of the conda dependencies
  the Python version, the channels *in order* (earlier channels win), the conda packages and
  pip packages *as sets* (their order does not change the solve), the pip options in order,
  and the conda ``variables``; ``docker.enabled``, ``docker.base_image`` and
  ``docker.base_dockerfile`` (line endings normalised).
- out: ``name``, ``version``, ``environment_variables``, ``docker.shm_size``,
  ``docker.arguments``, ``docker.shared_volumes`` (all applied at launch, not baked in).

It errs towards rebuilding: fields are in even when the current builder ignores them (conda
packages of a user-managed environment, the base image when Docker is off). Package specs are
compared as written: ``numpy`` and ``NumPy`` are different keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runner import curated
from runner.conda_dependencies import (
    PYTHON_DEFAULT_VERSION,
    CondaDependencies,
    write_text_atomic,
)
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

#: The base image of ``env.docker`` unless you set one: Debian with CPython 3.11, from
#: Docker Hub. Pull it (or retag your own) before going offline; it has no CUDA.
DEFAULT_CPU_IMAGE = "python:3.11-slim"
#: v1's ``DEFAULT_GPU_IMAGE`` for ``env.docker.base_image``: CUDA 12.4 and cuDNN 9 with
#: Python (``python3``) and PyTorch, from Docker Hub; the run's reserved GPUs are passed in.
#: Never chosen on its own: set it where v1 code does.
DEFAULT_GPU_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
#: The name of :meth:`Environment.default`, the environment of a run that names none.
DEFAULT_ENVIRONMENT_NAME = "runner-default"
_DEFAULT_SHM_SIZE = "2g"

_DEFINITION_FILE_NAME = "azureml_environment.json"
_CONDA_DEPENDENCIES_FILE_NAME = "conda_dependencies.yml"
_BASE_DOCKERFILE_FILE_NAME = "BaseDockerfile"  # azureml's name for it
_SPEC_SCHEMA = "runner.environment.spec/1"  # change it whenever canonical_spec() changes

JSONDict = dict[str, Any]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_SHM_SIZE = re.compile(r"^\d+[bkmgBKMG]?$")
_DOCKERFILE_START = re.compile(r"^\s*FROM\s", re.IGNORECASE)
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule: '#' at the start or after whitespace
_PLATFORMS = {"linux": "Linux", "win32": "Windows", "darwin": "OSX"}

# Keys of azureml_environment.json that runner reads; the others azureml writes are
# accepted and ignored when empty (see Environment.from_dict).
_TOP_KEYS = {"name", "version", "environmentVariables", "python", "docker"}
_TOP_IGNORED = {"spark", "databricks", "r", "inferencingStackVersion", "assetId"}
_PYTHON_KEYS = {
    "userManagedDependencies",
    "interpreterPath",
    "condaDependenciesFile",
    "condaDependencies",
    "baseCondaEnvironment",
}
_DOCKER_KEYS = {
    "enabled",
    "baseImage",
    "baseDockerfile",
    "sharedVolumes",
    "shmSize",
    "arguments",
    "baseImageRegistry",
}
_DOCKER_IGNORED = {"buildContext", "platform", "gpuSupport"}


# --- value checks -------------------------------------------------------------------------


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"environment name {name!r} is not valid; use up to 255 letters, digits, '.', '_' "
            "and '-', starting with a letter, digit or '_', such as 'my-env'"
        )
    return name


def _check_version(version: object) -> str | None:
    if version is None:
        return None
    if isinstance(version, int) and not isinstance(version, bool):
        return str(version)
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f"environment version {version!r} is not valid; pass a string like '1'")
    return version


def _check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not True or False")
    return value


def check_env_vars(value: object, what: str = "environment_variables") -> dict[str, str]:
    """``value`` if it is a dict of variable names (no '=', no NUL, not empty) to str values
    without NUL; else ConfigError."""
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {value!r} is not a dict; pass {{'NAME': 'value'}}")
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise ConfigError(
                f"{what}: {key!r} is not a variable name (names are not empty and hold no '=' "
                "or NUL); use a name such as 'MY_VAR'"
            )
        if isinstance(item, str) and "\x00" in item:
            raise ConfigError(
                f"{what}[{key!r}] = {item!r} holds a NUL character, which no environment "
                "variable can; remove it"
            )
        if not isinstance(item, str):
            raise ConfigError(
                f"{what}[{key!r}] = {item!r} is not a string; environment variables are "
                f"strings, so pass str({item!r})"
            )
    return value


def _check_str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} {value!r} is not a list of strings; pass ['--flag', 'value']")
    if any("\x00" in v for v in value):
        raise ConfigError(f"{what} {value!r} holds a NUL character; remove it")
    return list(value)


def _read_text(path: Path, what: str) -> str:
    """A text file's content, line endings kept as they are."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"{what} {str(path)!r} not found; pass the path to an existing file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8
        raise ConfigError(f"{what} {str(path)!r} cannot be read as UTF-8 text ({exc})") from exc


def _dockerfile_text(value: object, what: str) -> str:
    """A Dockerfile's text, from its text or the path to it.

    An existing file is read; otherwise a string with a line break, or one that starts with
    ``FROM``, is the text itself; anything else is a path that does not exist.
    """
    if isinstance(value, os.PathLike):
        return _read_text(Path(value), what)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} {value!r} is neither a Dockerfile's text nor a path to one")
    if "\n" not in value and os.path.isfile(value):
        return _read_text(Path(value), what)
    if "\n" in value or _DOCKERFILE_START.match(value):
        return value
    raise ConfigError(
        f"{what} {value!r} not found: there is no such file, and it is not Dockerfile text "
        "(which has line breaks or starts with FROM); pass the path to a Dockerfile or its text"
    )


def _split_option(line: str) -> tuple[str, str]:
    """``"-i URL"``, ``"--index-url=URL"`` -> ``("--index-url", "URL")``."""
    match = re.match(r"^(--[A-Za-z0-9][A-Za-z0-9-]*|-[A-Za-z])(?:\s*=\s*|\s+)?(.*)$", line)
    if not match:
        return line, ""
    short = {"-r": "--requirement", "-c": "--constraint", "-i": "--index-url"}
    return short.get(match.group(1), match.group(1)), match.group(2).strip()


def _read_requirements(path: Path, chain: tuple[Path, ...]) -> list[str]:
    """The lines of a pip requirements file, with ``-r`` includes read in place."""
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"pip requirements files include each other in a loop: {loop}")
    what = "pip requirements file"
    if chain:
        what += f" (included by {str(chain[-1])!r})"
    text = _read_text(path, what)
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\") and not _COMMENT.search(raw):
            pending += raw[:-1]
            continue
        logical.append(pending + raw)
        pending = ""
    if pending:
        logical.append(pending)
    lines: list[str] = []
    for raw in logical:
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        if not line.startswith("-"):
            lines.append(line)
            continue
        option, value = _split_option(line)
        if option == "--requirement":
            if not value or "://" in value:
                raise ConfigError(
                    f"{str(path)!r}: {line!r} must name a local requirements file; "
                    "runner works offline, so copy remote files next to this one"
                )
            lines.extend(_read_requirements(path.parent / value, (*chain, resolved)))
        elif option == "--constraint":
            raise ConfigError(
                f"{str(path)!r}: constraints files ({line!r}) are not supported; "
                "pin the versions in the requirements file itself"
            )
        else:
            lines.append(f"{option} {value}" if value else option)
    return lines


# --- sections -----------------------------------------------------------------------------


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


def _get(data: dict[str, Any], key: str, default: object) -> Any:
    """``data[key]``, or ``default`` when it is missing or null."""
    value = data.get(key)
    return default if value is None else value


def _mapping(value: object, what: str, known: set[str], ignored: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} is not a JSON object, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in known and k not in ignored)
    if unknown:
        raise ConfigError(
            f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted(known))}"
        )
    return value


# --- the environment ----------------------------------------------------------------------


class Environment:
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

    def __init__(self, name: str) -> None:
        self._name = _check_name(name)
        self._version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self._environment_variables: dict[str, str] = {}

    # --- attributes -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The environment's name."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = _check_name(value)

    @property
    def version(self) -> str | None:
        """The registered version, such as ``"3"``; None until registered."""
        return self._version

    @version.setter
    def version(self, value: str | None) -> None:
        self._version = _check_version(value)

    @property
    def environment_variables(self) -> dict[str, str]:
        """Variables set in the run's process (a dict you may change in place)."""
        return self._environment_variables

    @environment_variables.setter
    def environment_variables(self, value: dict[str, str]) -> None:
        self._environment_variables = dict(check_env_vars(value))

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

    # --- checks and serialisation ---------------------------------------------------------

    def _check_types(self) -> None:
        """Re-check what can be changed in place, behind the setters' backs."""
        if not isinstance(self.python, PythonSection):
            raise ConfigError(f"env.python {self.python!r} is not a PythonSection")
        if not isinstance(self.docker, DockerSection):
            raise ConfigError(f"env.docker {self.docker!r} is not a DockerSection")
        check_env_vars(self._environment_variables)
        _check_str_list(self.docker.arguments, "docker.arguments")
        self.docker.base_image_registry.check()

    def validate(self) -> None:
        """Raise ConfigError unless this environment can be built.

        Called by ``spec_hash``, ``register`` and ``build_local``.
        """
        self._check_types()
        if self.docker.enabled and not (self.docker.base_image or self.docker.base_dockerfile):
            raise ConfigError(
                f"environment {self.name!r}: docker.enabled is True but there is no "
                f"docker.base_image or docker.base_dockerfile; set one, e.g. "
                f"env.docker.base_image = {DEFAULT_CPU_IMAGE!r}"
            )
        if not self.python.user_managed_dependencies and self.python.conda_dependencies is None:
            raise ConfigError(
                f"environment {self.name!r}: python.conda_dependencies is None, so there is "
                "nothing to build; set python.conda_dependencies, or "
                "python.user_managed_dependencies = True to use an existing interpreter"
            )

    def _dict(self) -> JSONDict:
        conda = self.python.conda_dependencies
        return {
            "name": self._name,
            "version": self._version,
            "environmentVariables": dict(self._environment_variables),
            "python": {
                "userManagedDependencies": self.python.user_managed_dependencies,
                "interpreterPath": self.python.interpreter_path,
                "condaDependenciesFile": self.python.conda_dependencies_file,
                "condaDependencies": None if conda is None else conda.as_dict(),
            },
            "docker": {
                "enabled": self.docker.enabled,
                "baseImage": self.docker.base_image,
                "baseDockerfile": self.docker.base_dockerfile,
                "sharedVolumes": self.docker.shared_volumes,
                "shmSize": self.docker.shm_size,
                "arguments": list(self.docker.arguments),
                # Only when set, so definitions without one read as they always did.
                **(
                    {"baseImageRegistry": self.docker.base_image_registry._dict()}
                    if self.docker.base_image_registry.address
                    or self.docker.base_image_registry.username
                    else {}
                ),
            },
        }

    def to_dict(self) -> JSONDict:
        """The definition as JSON-safe data, with azureml_environment.json's camelCase keys."""
        self._check_types()
        return self._dict()

    @classmethod
    def from_dict(cls, data: object) -> Environment:
        """Rebuild an Environment from :meth:`to_dict`'s output (or azureml's JSON).

        Keys left out are unset, as in azureml: no conda dependencies, no base image.
        azureml keys runner has no use for (``spark``, ``databricks``, ``platform``,
        ...) are ignored; ``buildContext``, ``baseCondaEnvironment`` and ``r`` must be empty.
        """
        top = _mapping(data, "environment definition", _TOP_KEYS, _TOP_IGNORED)
        if top.get("r") is not None:
            raise ConfigError("environment definition: R environments ('r') are not supported")
        env = cls(_check_name(top.get("name")))
        env.version = top.get("version")
        env.environment_variables = top.get("environmentVariables") or {}

        python = _mapping(top.get("python") or {}, "python", _PYTHON_KEYS, set())
        if python.get("baseCondaEnvironment") is not None:
            raise ConfigError("python.baseCondaEnvironment is not supported; list the packages")
        env.python.user_managed_dependencies = _get(python, "userManagedDependencies", False)
        env.python.interpreter_path = python.get("interpreterPath")
        env.python.conda_dependencies_file = python.get("condaDependenciesFile")
        conda = python.get("condaDependencies")
        env.python.conda_dependencies = (
            None if conda is None else CondaDependencies.from_dict(conda)
        )

        docker = _mapping(top.get("docker") or {}, "docker", _DOCKER_KEYS, _DOCKER_IGNORED)
        if docker.get("buildContext") is not None:
            raise ConfigError(
                "docker.buildContext is not supported; put the build in docker.baseDockerfile"
            )
        image, dockerfile = docker.get("baseImage"), docker.get("baseDockerfile")
        if image and dockerfile:
            raise ConfigError(
                "docker.baseImage and docker.baseDockerfile exclude each other; keep one"
            )
        env.docker.enabled = _get(docker, "enabled", False)
        env.docker.base_image = image
        if dockerfile is not None:
            if not isinstance(dockerfile, str):
                raise ConfigError(f"docker.baseDockerfile {dockerfile!r} is not text")
            env.docker._set_dockerfile_text(dockerfile)
        env.docker.shared_volumes = _get(docker, "sharedVolumes", True)
        env.docker.shm_size = docker.get("shmSize")
        env.docker.arguments = docker.get("arguments") or []
        registry = docker.get("baseImageRegistry") or {}
        if not isinstance(registry, dict):
            raise ConfigError(f"docker.baseImageRegistry {registry!r} is not a mapping")
        env.docker.base_image_registry = ContainerRegistry(
            registry.get("address"), registry.get("username"), registry.get("password")
        )
        env.docker.base_image_registry.check()
        return env

    def canonical_spec(self) -> JSONDict:
        """What :meth:`spec_hash` hashes: the fields that change the build, canonicalised."""
        self.validate()
        conda = self.python.conda_dependencies
        dockerfile = self.docker.base_dockerfile
        return {
            "schema": _SPEC_SCHEMA,
            "python": {
                "userManagedDependencies": self.python.user_managed_dependencies,
                "interpreterPath": self.python.interpreter_path,
                "condaDependenciesFile": self.python.conda_dependencies_file,
            },
            "conda": None
            if conda is None
            else {
                "pythonVersion": conda.python_version,
                "channels": list(conda.conda_channels),
                "condaPackages": sorted(set(conda.conda_packages)),
                "pipPackages": sorted(set(conda.pip_packages)),
                "pipOptions": list(conda.pip_options),
                "variables": conda.as_dict().get("variables", {}),
            },
            "docker": {
                "enabled": self.docker.enabled,
                "baseImage": self.docker.base_image_reference,
                "baseDockerfile": None if dockerfile is None else dockerfile.replace("\r\n", "\n"),
            },
        }

    def spec_hash(self) -> str:
        """SHA-256 hex digest of :meth:`canonical_spec`: the build cache key.

        Equal for environments that build the same thing, whatever their names, versions
        and environment variables (see the module docstring for what is in and out).
        """
        canonical = json.dumps(
            self.canonical_spec(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

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
