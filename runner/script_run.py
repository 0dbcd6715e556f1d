"""ScriptRun: the run of a submitted script, as ``azureml.core.script_run.ScriptRun``.

``Experiment.submit`` returns one, and ``Run.list``/``exp.get_runs()``/``Run.get`` give
one for every run of type ``ScriptRun.RUN_TYPE`` (``'azureml.scriptrun'``), so v1 code
such as ``Run.list(exp, type=ScriptRun.RUN_TYPE)`` and ``isinstance(run, ScriptRun)``
works. It adds nothing to ``Run``: waiting, streaming, cancel and clean are Run's.

Standard library only, like ``runner.run``.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, ClassVar

from runner.run import RUN_TYPE_SCRIPT, Run

if TYPE_CHECKING:
    from runner.experiment import Experiment


class ScriptRun(Run):
    """A run of a script submitted with ``Experiment.submit(ScriptRunConfig(...))``.

    Example:
        >>> from runner.script_run import ScriptRun
        >>> scripts_only = Run.list(exp, type=ScriptRun.RUN_TYPE)  # doctest: +SKIP
    """

    #: The ``run.type`` of submitted scripts' runs.
    RUN_TYPE: ClassVar[str] = RUN_TYPE_SCRIPT

    def __init__(
        self,
        experiment: Experiment,
        run_id: str,
        directory: str | None = None,
        _run_config: Any = None,
        **kwargs: Any,
    ) -> None:
        # ``directory`` and ``_run_config`` are v1's; the run's definition is in the store.
        super().__init__(experiment, run_id, **kwargs)

    def _child_type(self) -> builtins.type[Run]:
        return Run  # children of a script run are plain runs (type azureml.childrun)
