"""ScriptRun: the run of a submitted script, as ``azureml.core.script_run.ScriptRun``.

``Experiment.submit`` returns one, and ``Run.list``/``exp.get_runs()``/``Run.get`` give
one for every run of type ``ScriptRun.RUN_TYPE`` (``'azureml.scriptrun'``), so v1 code
such as ``Run.list(exp, type=ScriptRun.RUN_TYPE)`` and ``isinstance(run, ScriptRun)``
works. It adds nothing to ``Run``: waiting, streaming, cancel and clean are Run's.

The class is defined in runner.run, beside ``Run``, which makes one for every submitted
script's run it finds; this is its v1 import path. Standard library only.
"""

from __future__ import annotations

from runner.run import RUN_TYPE_SCRIPT, Run, ScriptRun

__all__ = ["RUN_TYPE_SCRIPT", "Run", "ScriptRun"]
