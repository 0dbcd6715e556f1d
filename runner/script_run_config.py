"""v1's ``azureml.core.script_run_config`` path: ``from runner.script_run_config import
ScriptRunConfig`` (see runner.config)."""

from __future__ import annotations

from runner.config import ScriptRunConfig

__all__ = ["ScriptRunConfig"]
