"""runner: the Azure ML SDK v1 run model on your own hardware, offline.

Change ``from azureml.core import ...`` to ``from runner import ...`` and keep going::

    from runner import Workspace, Experiment, ScriptRunConfig

    ws = Workspace.from_config()
    run = Experiment(ws, "mnist").submit(ScriptRunConfig(".", "train.py"))
    run.wait_for_completion(show_output=True)

Everything reachable from here is standard-library only, so training scripts can
``from runner import Run`` in any environment. Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
#: v1's ``azureml.core.VERSION``: the same string as ``__version__``.
VERSION = __version__

if TYPE_CHECKING:
    from runner.compute import ComputeTarget, RemoteCompute, SlurmCompute
    from runner.conda_dependencies import CondaDependencies
    from runner.config import RunConfiguration, ScriptRunConfig
    from runner.environment import ContainerRegistry, Environment
    from runner.errors import (
        ConfigError,
        ConflictError,
        EnvironmentBuildError,
        NotFoundError,
        RunFailedError,
        RunnerError,
        StoreError,
        TargetUnavailableError,
        UserError,
    )
    from runner.experiment import Experiment
    from runner.jobconfig import (
        DockerConfiguration,
        MpiConfiguration,
        PyTorchConfiguration,
        TensorflowConfiguration,
    )
    from runner.keyvault import Keyvault
    from runner.models import Model
    from runner.run import Run
    from runner.script_run import ScriptRun
    from runner.status import RunStatus
    from runner.workspace import Workspace

_WHERE = {
    "Workspace": "runner.workspace",
    "Experiment": "runner.experiment",
    "Run": "runner.run",
    "ScriptRun": "runner.script_run",
    "ContainerRegistry": "runner.environment",
    "ScriptRunConfig": "runner.config",
    "RunConfiguration": "runner.config",
    "Environment": "runner.environment",
    "CondaDependencies": "runner.conda_dependencies",
    "Model": "runner.models",
    "ComputeTarget": "runner.compute",
    "RemoteCompute": "runner.compute",
    "SlurmCompute": "runner.compute",
    "Keyvault": "runner.keyvault",
    "RunStatus": "runner.status",
    "RunnerError": "runner.errors",
    "UserError": "runner.errors",
    "ConfigError": "runner.errors",
    "NotFoundError": "runner.errors",
    "ConflictError": "runner.errors",
    "EnvironmentBuildError": "runner.errors",
    "TargetUnavailableError": "runner.errors",
    "RunFailedError": "runner.errors",
    "StoreError": "runner.errors",
    "PyTorchConfiguration": "runner.jobconfig",
    "MpiConfiguration": "runner.jobconfig",
    "TensorflowConfiguration": "runner.jobconfig",
    "DockerConfiguration": "runner.jobconfig",
}

__all__ = [
    "VERSION",
    "ComputeTarget",
    "CondaDependencies",
    "ConfigError",
    "ConflictError",
    "ContainerRegistry",
    "DockerConfiguration",
    "Environment",
    "EnvironmentBuildError",
    "Experiment",
    "Keyvault",
    "Model",
    "MpiConfiguration",
    "NotFoundError",
    "PyTorchConfiguration",
    "RemoteCompute",
    "Run",
    "RunConfiguration",
    "RunFailedError",
    "RunStatus",
    "RunnerError",
    "ScriptRun",
    "ScriptRunConfig",
    "SlurmCompute",
    "StoreError",
    "TargetUnavailableError",
    "TensorflowConfiguration",
    "UserError",
    "Workspace",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
