"""v1's exception names (``azureml.exceptions``, ``azureml.core.exceptions``) as aliases of
runner's one error tree (:mod:`runner.errors`).

``from azureml.exceptions import ComputeTargetException`` becomes
``from runner.exceptions import ComputeTargetException``, and ``except`` lines catch what
runner raises where azureml raised that name:

- ``AzureMLException``: :class:`~runner.errors.RunnerError`, every error runner raises.
- ``UserErrorException``: :class:`~runner.errors.UserError`, input the user can fix.
- ``ComputeTargetException``: :class:`~runner.errors.ComputeTargetError`, a compute target
  that is missing (``ComputeTarget(ws, name)``, ``ws.compute_targets[name]``) or cannot be
  used (Docker down, SSH refused).
- ``ActivityFailedException``: :class:`~runner.errors.RunFailedError`, what
  ``run.wait_for_completion()`` raises for a run that ended Failed or Canceled.
- ``WorkspaceException``: :class:`~runner.errors.WorkspaceError`, a missing workspace or an
  unusable one (unreadable, locked, full).
- ``WebserviceException``: :class:`~runner.errors.ModelError`. runner has no web services;
  v1 raised this name for a model the registry does not have, and so does runner.
- ``ModelNotFoundException``: :class:`~runner.errors.ModelNotFoundError`, a model name or
  version that is not registered (``Model(ws, name)``, ``Model.get_model_path``).

Standard library only: training scripts import it.
"""

from __future__ import annotations

from runner.errors import (
    ComputeTargetError,
    ModelError,
    ModelNotFoundError,
    RunFailedError,
    RunnerError,
    UserError,
    WorkspaceError,
)

AzureMLException = RunnerError
UserErrorException = UserError
ComputeTargetException = ComputeTargetError
ActivityFailedException = RunFailedError
WorkspaceException = WorkspaceError
WebserviceException = ModelError
ModelNotFoundException = ModelNotFoundError

__all__ = [
    "ActivityFailedException",
    "AzureMLException",
    "ComputeTargetException",
    "ModelNotFoundException",
    "UserErrorException",
    "WebserviceException",
    "WorkspaceException",
]
