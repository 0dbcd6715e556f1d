"""v1's ``azureml.core.container_registry`` path: ``from runner.container_registry import
ContainerRegistry`` (for ``env.docker.base_image_registry``)."""

from __future__ import annotations

from runner.environment import ContainerRegistry

__all__ = ["ContainerRegistry"]
