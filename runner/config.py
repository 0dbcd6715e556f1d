"""ScriptRunConfig and RunConfiguration: what to run, where, and in which environment.

Both validate on construction (and again at submit), so a missing script, a source
folder that is not a folder, or arguments of the wrong type fail before anything is
recorded, with a message that says what to change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from runner.environment import Environment, check_env_vars
from runner.errors import ConfigError, NotFoundError
from runner.jobconfig import DockerConfiguration, check_distributed

if TYPE_CHECKING:
    from runner.environment import Environment

Argument = Union[str, int, float]
#: Default seconds between SIGTERM and SIGKILL when a run is canceled.
DEFAULT_CANCEL_GRACE_S = 10.0


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} {value!r} must be a non-empty str")
    return value


def check_arguments(arguments: Any) -> list[str]:
    """Arguments as strings: str, int and float are accepted (numbers stringified)."""
    if arguments is None:
        return []
    if isinstance(arguments, (str, bytes)) or not isinstance(arguments, (list, tuple)):
        raise ConfigError(
            f"arguments must be a list such as ['--lr', 0.01], not {type(arguments).__name__} "
            f"{arguments!r}"
        )
    out = []
    for i, a in enumerate(arguments):
        if isinstance(a, bool) or not isinstance(a, (str, int, float)):
            raise ConfigError(
                f"arguments[{i}] is {a!r} ({type(a).__name__}); arguments may be str, int or "
                "float; convert it with str() first"
            )
        text = a if isinstance(a, str) else repr(a) if isinstance(a, float) else str(a)
        if "\x00" in text:
            raise ConfigError(
                f"arguments[{i}] is {text!r}, which holds a NUL character; a process argument "
                "cannot hold one, so remove it"
            )
        out.append(text)
    return out


def _check_duration(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            f"max_run_duration_seconds={value!r}; pass a positive number of seconds or None"
        )
    return int(value) if float(value).is_integer() else value  # type: ignore[return-value]


class RunConfiguration:
    """Where and how a script runs: target, environment, limits, GPUs, variables.

    Example:
        >>> rc = RunConfiguration()
        >>> rc.target = "local"
        >>> rc.environment = Environment.from_pip_requirements("env", "requirements.txt")
        >>> rc.save(name="train")          # .runner/train.runconfig
    """

    def __init__(
        self,
        script: str | None = None,
        arguments: Sequence[Argument] | None = None,
        framework: str | None = None,
        communicator: str | None = None,
        conda_dependencies: Any = None,
        _history_enabled: bool | None = None,
        _path: str | None = None,
        _name: str | None = None,
        command: str | Sequence[str] | None = None,
    ) -> None:

        self.script = script
        self.arguments: list[str] = check_arguments(arguments)
        self.command = command
        self.target: Any = "local"  # a target name or a ComputeTarget
        self.environment: Environment = Environment.default()
        if conda_dependencies is not None:
            env = Environment("runner-conda")
            env.python.conda_dependencies = conda_dependencies
            self.environment = env
        self.max_run_duration_seconds: int | None = None
        self.gpu_count: int = 0
        #: runner's own: seconds between SIGTERM and SIGKILL when the run is canceled.
        self.cancel_grace_seconds: float = DEFAULT_CANCEL_GRACE_S
        self.priority: int = 0
        self.environment_variables: dict[str, str] = {}
        self.node_count = 1
        self.framework = framework or "Python"
        self.communicator = communicator or "None"
        self.history = _History()

    def validate(self) -> None:
        """Raise ConfigError if a field has a value runner cannot use."""

        if not isinstance(self.target, str) and not hasattr(self.target, "name"):
            raise ConfigError(
                f"run_config.target={self.target!r}; pass a target name such as 'local' or a "
                "ComputeTarget"
            )
        if not isinstance(self.environment, Environment):
            raise ConfigError(
                f"run_config.environment must be an Environment, not {type(self.environment).__name__}"
            )
        self.max_run_duration_seconds = _check_duration(self.max_run_duration_seconds)
        if (
            isinstance(self.gpu_count, bool)
            or not isinstance(self.gpu_count, int)
            or self.gpu_count < 0
        ):
            raise ConfigError(f"run_config.gpu_count={self.gpu_count!r}; pass an int >= 0")
        g = self.cancel_grace_seconds
        if isinstance(g, bool) or not isinstance(g, (int, float)) or g < 0:
            raise ConfigError(f"run_config.cancel_grace_seconds={g!r}; pass seconds >= 0")
        check_env_vars(self.environment_variables, "run_config.environment_variables")
        n = self.node_count
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"run_config.node_count={n!r}; pass an int >= 1")
        if self.communicator not in ("None", None):
            raise ConfigError(
                f"run_config.communicator={self.communicator!r} would start one process "
                "here; leave it 'None' and pass ScriptRunConfig(distributed_job_config="
                "PyTorchConfiguration(process_count=N)) or MpiConfiguration(...) instead"
            )
        self.environment._check_types()  # in-place changes to its variables, too
        self.arguments = check_arguments(self.arguments)

    @property
    def target_name(self) -> str:
        """The target's name whether ``target`` holds a name or a ComputeTarget."""
        return self.target if isinstance(self.target, str) else str(self.target.name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (also what ``save`` writes as YAML)."""
        return {
            "script": self.script,
            "arguments": list(self.arguments),
            "command": self.command,
            "target": self.target_name,
            "framework": self.framework,
            "communicator": self.communicator,
            "maxRunDurationSeconds": self.max_run_duration_seconds,
            "gpuCount": self.gpu_count,
            "cancelGraceSeconds": self.cancel_grace_seconds,
            "priority": self.priority,
            "environmentVariables": dict(self.environment_variables),
            "nodeCount": self.node_count,
            "environment": self.environment.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfiguration:
        """Inverse of ``to_dict``."""

        rc = cls(script=data.get("script"), arguments=data.get("arguments") or [])
        rc.command = data.get("command")
        rc.target = data.get("target") or "local"
        rc.framework = data.get("framework") or "Python"
        rc.communicator = data.get("communicator") or "None"
        rc.max_run_duration_seconds = data.get("maxRunDurationSeconds")
        rc.gpu_count = int(data.get("gpuCount") or 0)
        grace = data.get("cancelGraceSeconds")
        rc.cancel_grace_seconds = DEFAULT_CANCEL_GRACE_S if grace is None else float(grace)
        rc.priority = int(data.get("priority") or 0)
        rc.environment_variables = dict(data.get("environmentVariables") or {})
        rc.node_count = int(data.get("nodeCount") or 1)
        if data.get("environment"):
            rc.environment = Environment.from_dict(data["environment"])
        rc.validate()
        return rc

    def save(
        self,
        path: str | None = None,
        name: str | None = None,
        separate_environment_yaml: bool = False,
    ) -> str:
        """Write ``.runner/NAME.runconfig`` (YAML) under ``path`` (default: the current folder).

        ``path`` may also be the full name of a ``.runconfig`` file.
        """
        import yaml

        self.validate()
        target = _runconfig_path(path, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return str(target)

    @staticmethod
    def load(path: str | None = None, name: str | None = None) -> RunConfiguration:
        """Read a runconfig written by ``save`` (or by ``runner folder attach``).

        By name, ``.runner/NAME.runconfig`` is read, else v1's ``.azureml/NAME.runconfig``.
        """
        import yaml

        target = _runconfig_path(path, name)
        if not target.is_file() and name is not None and target.parent.name == _CONFIG_DIR:
            v1_file = target.parent.parent / _V1_CONFIG_DIR / target.name
            if v1_file.is_file():
                target = v1_file
            else:
                raise NotFoundError(
                    f"no run configuration at {target} (nor v1's {v1_file}); write one with "
                    "RunConfiguration().save(name=...) or `runner folder attach`"
                )
        if not target.is_file():
            raise NotFoundError(
                f"no run configuration at {target}; write one with RunConfiguration().save("
                "name=...) or `runner folder attach`"
            )
        try:
            data = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{target} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{target} must hold a mapping of run configuration fields")
        return RunConfiguration.from_dict(data)

    def __repr__(self) -> str:
        return (
            f"RunConfiguration(target={self.target_name!r}, environment={self.environment.name!r})"
        )


class _History:
    """azureml's ``run_config.history`` section; accepted for compatibility."""

    def __init__(self) -> None:
        self.output_collection = True
        self.snapshot_project = True
        self.directories_to_watch = ["logs"]


#: Where runconfig files live in a project folder: runner's, and v1's (read too).
_CONFIG_DIR = ".runner"
_V1_CONFIG_DIR = ".azureml"


def _runconfig_path(path: str | None, name: str | None) -> Path:
    base = Path(path) if path is not None else Path.cwd()
    if base.suffix == ".runconfig" or (base.is_file() and name is None):
        return base
    if name is None:
        raise ConfigError("RunConfiguration.save/load needs name= (or a path to a .runconfig file)")
    _check_name(name, "run configuration name")
    if base.name == _CONFIG_DIR:
        return base / f"{name}.runconfig"
    return base / _CONFIG_DIR / f"{name}.runconfig"


class ScriptRunConfig:
    """What to run: a script (or command) in a source folder, with a RunConfiguration.

    Example:
        >>> src = ScriptRunConfig(source_directory=".", script="train.py",
        ...                       arguments=["--lr", 0.01], compute_target="local")
        >>> src.run_config.environment = env
        >>> run = exp.submit(src)
    """

    def __init__(
        self,
        source_directory: str | os.PathLike[str],
        script: str | None = None,
        arguments: Sequence[Argument] | None = None,
        run_config: RunConfiguration | None = None,
        _telemetry_values: Any = None,
        compute_target: Any = None,
        environment: Environment | None = None,
        distributed_job_config: Any = None,
        resume_from: Any = None,
        max_run_duration_seconds: int | None = None,
        command: str | Sequence[str] | None = None,
        docker_runtime_config: Any = None,
    ) -> None:
        self.source_directory = str(source_directory)
        self.script = script
        self.arguments = check_arguments(arguments)
        self.command = command
        rc = run_config if run_config is not None else RunConfiguration()
        if not isinstance(rc, RunConfiguration):
            raise ConfigError(f"run_config must be a RunConfiguration, not {type(rc).__name__}")
        self.run_config = rc
        if compute_target is not None:
            rc.target = compute_target
        if environment is not None:
            rc.environment = environment
        if max_run_duration_seconds is not None:
            rc.max_run_duration_seconds = max_run_duration_seconds
        #: PyTorchConfiguration or MpiConfiguration: N processes on this machine
        self.distributed_job_config = distributed_job_config
        #: DockerConfiguration: applied to (a copy of) the environment's docker section
        self.docker_runtime_config = docker_runtime_config
        #: refused (see validate): never silently ignored
        self.resume_from = resume_from
        self.validate()

    def effective_environment(self) -> Environment:
        """The environment the run gets: ``run_config.environment`` with
        ``docker_runtime_config`` applied to a copy of it (the caller's is not changed)."""
        env = self.run_config.environment
        if self.docker_runtime_config is None:
            return env

        copy = Environment.from_dict(env.to_dict())
        self.docker_runtime_config.apply(copy.docker)
        return copy

    def validate(self) -> None:
        """Raise ConfigError/NotFoundError unless this config can be submitted as it is."""
        src = Path(self.source_directory).expanduser()
        if not src.is_dir():
            raise ConfigError(
                f"source_directory {self.source_directory!r} is not a folder; pass the folder "
                "that holds your script"
            )
        if self.script is None and self.command is None:
            raise ConfigError(
                "ScriptRunConfig needs script= (a file in source_directory) or command="
            )
        if self.script is not None and self.command is not None:
            raise ConfigError("ScriptRunConfig takes script= or command=, not both")
        if self.script is not None:
            if not isinstance(self.script, str) or not self.script:
                raise ConfigError(f"script {self.script!r} must be a file name (str)")
            if Path(self.script).is_absolute():
                raise ConfigError(
                    f"script {self.script!r} is absolute; pass it relative to source_directory"
                )
            script_path = src / self.script
            if not script_path.is_file():
                raise NotFoundError(
                    f"script {self.script!r} not found in source_directory {str(src.resolve())!r}; "
                    "pass script= relative to it"
                )
            try:
                script_path.resolve().relative_to(src.resolve())
            except ValueError as exc:
                raise ConfigError(
                    f"script {self.script!r} is outside source_directory {str(src)!r}"
                ) from exc
        if self.command is not None:
            if isinstance(self.command, str):
                if not self.command.strip():
                    raise ConfigError("command= is empty; pass a command line or an argv list")
            elif (
                not isinstance(self.command, (list, tuple))
                or not self.command
                or not all(isinstance(c, str) for c in self.command)
            ):
                raise ConfigError(f"command={self.command!r}; pass a str or a list of str")
            words = [self.command] if isinstance(self.command, str) else self.command
            if any("\x00" in w for w in words):
                raise ConfigError(
                    f"command={self.command!r} holds a NUL character; a command line cannot "
                    "hold one, so remove it"
                )
        self.arguments = check_arguments(self.arguments)
        self.run_config.validate()
        self._check_job_settings()

    def _check_job_settings(self) -> None:

        if self.resume_from is not None:
            raise ConfigError(
                f"resume_from={self.resume_from!r} is not supported by runner (it resumes "
                "from a cloud DataPath checkpoint); load your checkpoint in the script, e.g. "
                "from a path passed in arguments=, and drop resume_from"
            )
        drc = self.docker_runtime_config
        if drc is not None:
            if not isinstance(drc, DockerConfiguration):
                raise ConfigError(
                    f"docker_runtime_config must be a DockerConfiguration, not {type(drc).__name__}"
                )
            self.effective_environment()  # the docker section's setters check the values
        check_distributed(self.distributed_job_config)

    def __repr__(self) -> str:
        return (
            f"ScriptRunConfig(source_directory={self.source_directory!r}, script={self.script!r}, "
            f"arguments={self.arguments!r}, target={self.run_config.target_name!r})"
        )
