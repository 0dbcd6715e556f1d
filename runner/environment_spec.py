"""What an Environment is as data: its attributes, its checks, its JSON form
(``azureml_environment.json``'s camelCase keys) and its spec hash.

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

Imported by the in-run client (through :mod:`runner.environment`): standard library only,
and it must import on Python 3.9.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from runner.conda_dependencies import CondaDependencies
from runner.environment_checks import (
    _check_name,
    _check_str_list,
    _check_version,
    check_env_vars,
)
from runner.environment_sections import (
    DEFAULT_CPU_IMAGE,
    ContainerRegistry,
    DockerSection,
    PythonSection,
)
from runner.errors import ConfigError

_SPEC_SCHEMA = "runner.environment.spec/1"  # change it whenever canonical_spec() changes
JSONDict = dict[str, Any]

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


_E = TypeVar("_E", bound="_EnvironmentSpec")


class _EnvironmentSpec:
    """An Environment's data: its name, version, variables and sections, their checks, its
    JSON form and its spec hash. :class:`runner.environment.Environment` adds the
    constructors, the files, the workspace and comparison."""

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
    def from_dict(cls: type[_E], data: object) -> _E:
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
