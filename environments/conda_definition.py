"""What a conda environment installs, read from an Environment once
(:class:`CondaDefinition`), and this machine's conda platform."""

from __future__ import annotations

import platform as _platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from environments.venv import _uv_options
from runner.conda_platform import conda_subdir
from runner.errors import ConfigError, EnvironmentBuildError

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = ["CondaDefinition", "channel_url", "conda_definition", "conda_platform"]


@dataclass(frozen=True, slots=True)
class CondaDefinition:
    """What a conda environment installs, read from an Environment."""

    name: str  #: the environment's name (for messages)
    channels: tuple[str, ...]  #: channel URLs or names, highest priority first
    specs: tuple[str, ...]  #: conda match specs, python excluded
    python_version: str | None  #: the pinned Python, "X.Y" or "X.Y.Z"
    pip_requirements: tuple[str, ...]  #: pip requirements, as written
    uv_options: tuple[str, ...]  #: uv arguments for the pip options
    variables: Mapping[str, str]  #: the conda ``variables`` section


def channel_url(channel: str) -> str:
    """A channel as py-rattler takes it: local paths become ``file://`` URLs.

    Names (``conda-forge``) and URLs are kept; ``/abs/path``, ``./rel`` and ``~/path`` are
    made absolute ``file://`` URLs.
    """
    if "://" in channel:
        return channel
    if channel.startswith(("/", "./", "../", "~")) or channel in (".", ".."):
        return Path(channel).expanduser().resolve().as_uri()
    return channel


def conda_definition(env: Environment) -> CondaDefinition:
    """The conda definition of ``env``.

    Raises:
        ConfigError: ``env`` is user-managed, a docker image, names a conda file, has no
            conda dependencies, or a pip option uv cannot take.
    """
    python = env.python
    name = env.name
    if python.user_managed_dependencies:
        raise ConfigError(
            f"environment {name!r} is user-managed (python.user_managed_dependencies = True): "
            "nothing is installed; it runs with its interpreter as it is, not the conda builder"
        )
    if env.docker.enabled:
        raise ConfigError(
            f"environment {name!r} has docker.enabled = True: it is built as a docker image; "
            "set docker.enabled = False to build a conda environment on this machine"
        )
    if python.conda_dependencies_file is not None:
        raise ConfigError(
            f"environment {name!r} names python.conda_dependencies_file "
            f"{python.conda_dependencies_file!r}; the conda builder reads only "
            "python.conda_dependencies: use Environment.from_conda_specification(name, path)"
        )
    conda = python.conda_dependencies
    if conda is None:
        raise ConfigError(
            f"environment {name!r} has no conda_dependencies and is not user-managed; set "
            "python.conda_dependencies = CondaDependencies.create(conda_packages=[...])"
        )
    variables = conda.as_dict().get("variables") or {}
    return CondaDefinition(
        name=name,
        channels=tuple(channel_url(c) for c in conda.conda_channels),
        specs=tuple(conda.conda_packages),
        python_version=conda.python_version,
        pip_requirements=tuple(conda.pip_packages),
        uv_options=tuple(_uv_options(conda.pip_options, name)),
        variables={str(k): str(v) for k, v in variables.items()},
    )


def conda_platform() -> str:
    """This machine's conda platform (subdir): ``linux-64``, ``osx-arm64``...

    Raises:
        EnvironmentBuildError: an operating system or CPU conda has no platform for.
    """
    machine = _platform.machine().lower()
    found = conda_subdir(sys.platform, machine)
    if found is None:
        raise EnvironmentBuildError(
            f"conda environments are not supported on {sys.platform}/{machine}: there is no "
            "conda platform for it; use a venv (pip packages only) or a docker environment"
        )
    return found
