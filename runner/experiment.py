"""Experiment: a named group of runs in a workspace.

Below runner.workspace (whose ``experiments`` are Experiments) and above runner.run and
runner.submit (an experiment starts and submits runs): it knows its workspace through
``WorkspaceFolder``, the part of ``Workspace`` below it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.lifecycle import process_token
from runner.run import RUN_TYPE_INTERACTIVE, Run
from runner.run_base import user_name as _user
from runner.run_tags import TagFilter
from runner.store import NewRun
from runner.workspace_folder import WorkspaceFolder
from runner.workspace_paths import check_experiment_name

if TYPE_CHECKING:
    from runner.workspace import Workspace

#: The compute target azureml records for interactive runs (``get_details()['target']``).
INTERACTIVE_TARGET = "sdk"


class Experiment:
    """A named collection of runs, as in azureml.core.

    Example:
        >>> exp = Experiment(ws, "mnist")
        >>> with exp.start_logging() as run:
        ...     run.log("accuracy", 0.97)
    """

    def __init__(self, workspace: Workspace, name: str, **kwargs: Any) -> None:
        if not isinstance(workspace, WorkspaceFolder):  # v1 code may pass anything here
            raise ConfigError(
                f"Experiment(workspace, name) needs a Workspace first, got {type(workspace).__name__}; "
                "use Workspace.from_config()"
            )
        self._workspace = workspace
        self._name = check_experiment_name(name)
        self._id = workspace.store.ensure_experiment(name)

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self._name

    @property
    def workspace(self) -> Workspace:
        """The workspace holding the experiment."""
        return self._workspace

    @property
    def id(self) -> str:
        """A stable identifier (the workspace-local numeric id, as a string)."""
        return str(self._id)

    def start_logging(
        self,
        *args: Any,
        outputs: str | os.PathLike[str] | bool | None = None,
        snapshot_directory: str | os.PathLike[str] | None = None,
        display_name: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start an interactive run (status Running) in this process.

        As in azureml, ``outputs`` defaults to ``./outputs``: the folder is created now
        and its files are stored with the run when it completes (or fails), so
        ``joblib.dump(model, 'outputs/model.pkl')`` then
        ``run.register_model('m', model_path='outputs/model.pkl')`` works. Pass
        ``outputs=False`` for none. ``snapshot_directory`` snapshots that folder; by
        default (None) no snapshot is taken, as in azureml. The run's target is
        ``'sdk'``. The run is also a context manager: Completed on a normal exit,
        Failed with the error on an exception.

        Example:
            >>> with exp.start_logging() as run:
            ...     run.log("accuracy", 0.97)
        """
        folder = _outputs_folder(outputs)
        store = self._workspace.store
        (run_id,) = store.create_runs(
            self._id,
            [
                NewRun(
                    type=RUN_TYPE_INTERACTIVE,
                    status="Running",
                    target=INTERACTIVE_TARGET,
                    display_name=display_name,
                    definition={"script": None, "target": INTERACTIVE_TARGET, "interactive": True},
                    owner=process_token(),
                )
            ],
            id_prefix=f"{self._name}_",
            submitted_by=_user(),
        )
        run = Run(self, run_id, outputs=folder)
        if snapshot_directory is not None:
            run.take_snapshot(snapshot_directory)
        return run

    def submit(self, config: Any, tags: dict[str, str | None] | None = None, **kwargs: Any) -> Run:
        """Submit a ScriptRunConfig; returns the Run at once while it executes."""
        # Loaded on the first submit: a training script's Run.get_context() reaches this
        # module, and must not pay for snapshots, environments and target checks.
        from runner.submit import submit

        return submit(self, config, tags=tags, **kwargs)

    def get_runs(
        self,
        type: str | None = None,
        tags: TagFilter = None,
        properties: TagFilter = None,
        include_children: bool = False,
    ) -> Iterator[Run]:
        """The experiment's runs, newest first, filtered by type, tags and properties."""
        return Run.list(
            self, type=type, tags=tags, properties=properties, include_children=include_children
        )

    @staticmethod
    def list(
        workspace: Workspace,
        experiment_name: str | None = None,
        view_type: str = "ActiveOnly",
        tags: Any = None,
    ) -> list[Experiment]:
        """The workspace's experiments, oldest first (v1's ``Experiment.list``).

        ``experiment_name`` keeps only that one. Experiments are never archived here, so
        ``view_type`` ``"ActiveOnly"`` and ``"All"`` give them all and ``"ArchivedOnly"``
        none. Experiments have no tags here: ``tags`` is refused.
        """
        if view_type not in _VIEW_TYPES:
            raise ConfigError(
                f"view_type={view_type!r}; pass one of {', '.join(map(repr, _VIEW_TYPES))}"
            )
        if tags is not None:
            raise ConfigError(
                "Experiment.list(tags=...): runner's experiments have no tags; tag runs "
                "instead and filter with exp.get_runs(tags=...)"
            )
        if view_type == "ArchivedOnly":
            return []
        return [
            exp
            for name, exp in workspace.experiments.items()
            if experiment_name is None or name == experiment_name
        ]

    def archive(self) -> None:
        """Accepted for v1 compatibility; experiments are never hidden."""

    def __repr__(self) -> str:
        return f"Experiment(Name: {self._name}, Workspace: {self._workspace.name})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Experiment)
            and other._name == self._name
            and other._workspace == self._workspace
        )

    def __hash__(self) -> int:
        return hash((self._name, self._workspace.path))


#: v1's ViewType values for Experiment.list.
_VIEW_TYPES = ("ActiveOnly", "All", "ArchivedOnly")


def _outputs_folder(outputs: str | os.PathLike[str] | bool | None) -> str | None:
    """The absolute ``outputs`` folder of an interactive run (created), or None for none."""
    if outputs is False:
        return None
    if outputs is None or outputs is True:
        outputs = "outputs"
    if not isinstance(outputs, (str, os.PathLike)):  # v1 code may pass anything here
        raise ConfigError(
            f"start_logging(outputs={outputs!r}): pass a folder path (default './outputs'), "
            "or False for no outputs folder"
        )
    folder = Path(os.fspath(outputs)).absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only folder
        raise ConfigError(
            f"start_logging: cannot create the outputs folder {str(folder)!r} "
            f"({exc.strerror or exc}); pass outputs= a writable folder, or outputs=False"
        ) from None
    return str(folder)
