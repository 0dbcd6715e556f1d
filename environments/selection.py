"""Which builder prepares an environment, and the checks that can fail at submit time.

- user-managed: the interpreter as it is (UserManagedBuilder)
- conda packages other than ``pip``: solved and locked with py-rattler (CondaBuilder)
- otherwise pip packages only: a uv venv (VenvBuilder)
- ``docker.enabled``: an image built with the Docker Engine API (DockerImageBuilder), run by
  the docker target
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from environments.base import is_pip_spec

if TYPE_CHECKING:
    from environments.base import EnvironmentBuilder
    from runner.environment import Environment


def kind_of(env: Environment) -> str:
    """'docker', 'user_managed', 'conda' or 'venv'."""
    if env.docker.enabled:
        return "docker"
    if env.python.user_managed_dependencies:
        return "user_managed"
    conda = env.python.conda_dependencies
    if conda is not None and any(not is_pip_spec(s) for s in conda.conda_packages):
        return "conda"
    return "venv"


def check(env: Environment) -> None:
    """Everything about ``env`` that can be judged without building it (no subprocess)."""
    kind = kind_of(env)
    if kind == "docker":
        from environments.docker_image import (
            conda_packages,
            docker_client,
            host_conda_env,
            pip_requirements,
        )

        env.validate()
        pip_requirements(env)
        if conda_packages(env):
            from environments.conda import conda_definition

            conda_definition(host_conda_env(env))
        docker_client(timeout_s=10).close()  # TargetUnavailableError with the fix
    elif kind == "conda":
        from environments.conda import conda_definition

        conda_definition(env)
    elif kind == "venv":
        from environments.venv import pip_install_args

        pip_install_args(env)


def builder_for(env: Environment, default_python: str | None = None) -> EnvironmentBuilder:
    """The builder that prepares ``env``."""
    kind = kind_of(env)
    if kind == "docker":
        from environments.docker_image import DockerImageBuilder

        return DockerImageBuilder()
    if kind == "user_managed":
        from environments.user_managed import UserManagedBuilder

        return UserManagedBuilder(default_python)
    if kind == "conda":
        from environments.conda import CondaBuilder

        return CondaBuilder()
    from environments.venv import VenvBuilder

    return VenvBuilder()
