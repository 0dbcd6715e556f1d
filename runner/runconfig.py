"""v1's ``azureml.core.runconfig`` path: ``from runner.runconfig import RunConfiguration``.

``DEFAULT_CPU_IMAGE`` and ``DEFAULT_GPU_IMAGE`` are the base images runner's docker target
uses for ``env.docker.base_image`` (public Docker Hub images with Python; v1's live in
Microsoft's registry). ``CondaDependencies`` and the job configurations
(``PyTorchConfiguration``, ``MpiConfiguration``, ``DockerConfiguration``) are here too, as
v1 code imports them from here.
"""

from __future__ import annotations

from runner.conda_dependencies import CondaDependencies
from runner.config import RunConfiguration
from runner.environment import DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE
from runner.jobconfig import (
    DockerConfiguration,
    MpiConfiguration,
    PyTorchConfiguration,
    TensorflowConfiguration,
)

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "CondaDependencies",
    "DockerConfiguration",
    "MpiConfiguration",
    "PyTorchConfiguration",
    "RunConfiguration",
    "TensorflowConfiguration",
]
