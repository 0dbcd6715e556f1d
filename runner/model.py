"""v1's ``azureml.core.model`` path: ``from runner.model import Model`` (see runner.models)."""

from __future__ import annotations

from runner.models import Model

__all__ = ["Model"]
