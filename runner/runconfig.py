"""v1's ``azureml.core.runconfig`` path: ``from runner.runconfig import RunConfiguration``.

``DEFAULT_CPU_IMAGE`` and ``DEFAULT_GPU_IMAGE`` are the base images runner's docker target
uses for ``env.docker.base_image`` (public Docker Hub images with Python; v1's live in
Microsoft's registry). ``CondaDependencies`` is here too, as v1 code imports it from here.
"""

from __future__ import annotations

from runner.conda_dependencies import CondaDependencies
from runner.config import RunConfiguration
from runner.environment import DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE

__all__ = ["DEFAULT_CPU_IMAGE", "DEFAULT_GPU_IMAGE", "CondaDependencies", "RunConfiguration"]
