"""v1's ``azureml.core.compute_target`` path: ``from runner.compute_target import
ComputeTargetException`` (the most common v1 import of it) and ``ComputeTarget``."""

from __future__ import annotations

from runner.compute import ComputeTarget
from runner.exceptions import ComputeTargetException

__all__ = ["ComputeTarget", "ComputeTargetException"]
