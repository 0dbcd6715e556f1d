"""Run: one trial of an experiment, with its status, metrics, tags, properties and files.

This module is the in-run client too (``Run.get_context()``), so it imports only the
standard library and runner's own standard-library modules, and it stays importable on
Python 3.9.

The public API mirrors azureml.core.Run: camelCase keys in details dicts, v1 names and
defaults. Everything is read from and written to the workspace's store; the only state
a Run object keeps is its identity and the per-metric checks that keep ``log`` fast.

``Run`` is put together here from its parts (see runner.run_base): this module holds
finding runs, their identity, children, and what reaches the workspace's registries;
``ScriptRun`` (re-exported by runner.script_run) is here too, as ``Run.get`` and
``Run.list`` make one for every submitted script's run.
"""

from __future__ import annotations

import builtins
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from runner.errors import ConfigError, NotFoundError, StoreError
from runner.models import register_from_run
from runner.run_base import _ACTIVE_VALUES as _ACTIVE_VALUES
from runner.run_base import _TERMINAL_VALUES as _TERMINAL_VALUES
from runner.run_base import RUN_TYPE_CHILD as RUN_TYPE_CHILD
from runner.run_base import RUN_TYPE_INTERACTIVE as RUN_TYPE_INTERACTIVE
from runner.run_base import RUN_TYPE_SCRIPT as RUN_TYPE_SCRIPT
from runner.run_base import _iso as _iso
from runner.run_files import _RunFiles
from runner.run_metrics import _RunMetrics
from runner.run_status import _RunStatus
from runner.run_tags import TagFilter as TagFilter
from runner.run_tags import _check_tag_key as _check_tag_key
from runner.run_tags import _check_tag_value as _check_tag_value
from runner.run_tags import _RunTags
from runner.run_tags import parse_filter as parse_filter
from runner.status import RunStatus
from runner.store import NewRun, RunRow, loads_or_none
from runner.workspace_paths import studio_url

if TYPE_CHECKING:
    from runner.experiment import Experiment
    from runner.models import Model
    from runner.workspace import Workspace

#: Run type -> the factory that makes Run objects of that type when runs are listed
#: or looked up (``Run.add_type_provider``); script runs become ScriptRun without one.
_TYPE_PROVIDERS: dict[str, Callable[[Experiment, RunRow], Run]] = {}


class Run(_RunStatus, _RunMetrics, _RunFiles, _RunTags):
    """A run of an experiment.

    Get one from ``Experiment.start_logging()``, ``Experiment.submit()``,
    ``Run.get_context()`` inside a training script, or ``Run.get(ws, run_id)``.

    Example:
        >>> run = Run.get_context()
        >>> run.log("loss", 0.25)
        >>> run.tag("stage", "tuning")
    """

    def __init__(
        self,
        experiment: Experiment,
        run_id: str,
        outputs: str | None = None,
        _row: RunRow | None = None,
        **kwargs: Any,
    ) -> None:
        store = experiment.workspace.store
        row = _row if _row is not None else store.get_run(run_id)
        if row is None or row.experiment_name != experiment.name:
            raise NotFoundError(
                f"no run {run_id!r} in experiment {experiment.name!r}; list runs with "
                "exp.get_runs() or `runner run list -e EXPERIMENT`"
            )
        self._experiment = experiment
        self._workspace: Workspace = experiment.workspace
        self._store = store
        self._row = row
        self._id: str = str(row.id)
        self._outputs = outputs
        # Per-metric buffers this object has checked once: name -> values list (no
        # steps), or name -> (values, steps). The store's writer drains them.
        self._fast: dict[str, list[Any]] = {}
        self._stepped: dict[str, tuple[list[Any], list[int]]] = {}
        # metric name -> kind, for every metric this object has checked once
        self._kinds: dict[str, str] = {}

    # -- lookup ------------------------------------------------------------------------

    @staticmethod
    def get(workspace: Workspace, run_id: str, _rehydrate_runs: bool = True) -> Run:
        """The run with this id in the workspace (a ScriptRun for a submitted script's run,
        or what the run type's provider makes; see ``add_type_provider``)."""
        try:
            str(run_id).encode("utf-8")
            row = workspace.store.get_run(run_id)
        except UnicodeEncodeError:  # lone surrogates: no stored id can match
            row = None
        if row is None:
            raise NotFoundError(
                f"no run {run_id!r} in workspace {workspace.name}; list runs with "
                "`runner run list -e EXPERIMENT`"
            )
        return _typed(workspace._experiment(row.experiment_name), row, _rehydrate_runs)

    @staticmethod
    def get_context(
        allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any
    ) -> Run:
        """Inside a submitted run, that run; elsewhere an offline run (or an error).

        The offline run records everything in memory and prints each call, so a training
        script can be tried with plain ``python train.py``.
        """
        # The one import that closes the v1 object model's cycle (tests/test_import_graph.py):
        # the context builds a Workspace, whose ``experiments`` build Experiments, whose
        # ``start_logging`` builds Runs. docs/ARCHITECTURE.md says how it could go.
        from runner.context import get_context

        return get_context(allow_offline=allow_offline)

    @staticmethod
    def get_submitted_run(**kwargs: Any) -> Run:
        """Deprecated in azureml.core: the submitted run this script runs in.

        Use ``Run.get_context()``, which this returns (an offline run outside a run).
        """
        warnings.warn(
            "Run.get_submitted_run() is deprecated (as in azureml.core); use Run.get_context()",
            DeprecationWarning,
            stacklevel=2,
        )
        from runner.context import get_context  # (see get_context above)

        return get_context(allow_offline=True)

    @staticmethod
    def add_type_provider(runtype: str, run_factory: Callable[[Experiment, Any], Run]) -> None:
        """Make listed and looked-up runs of type ``runtype`` with ``run_factory``.

        ``run_factory(experiment, run_dto)`` is called for every such run that
        ``Run.list``, ``exp.get_runs()``, ``run.get_children()`` and ``Run.get`` return
        (unless ``_rehydrate_runs=False``); ``run_dto.run_id`` is the run's id. Kept for
        the life of the process, as in azureml.

        Example:
            >>> class TunedRun(Run): ...
            >>> Run.add_type_provider("tuning", lambda exp, dto: TunedRun(exp, dto.run_id))
        """
        if not isinstance(runtype, str) or not runtype:
            raise ConfigError(
                f"add_type_provider: runtype {runtype!r} must be a run type (a non-empty str), "
                "e.g. 'azureml.scriptrun'"
            )
        if not callable(run_factory):
            raise ConfigError(
                f"add_type_provider({runtype!r}): run_factory {run_factory!r} is not callable; "
                "pass a function (experiment, run_dto) -> Run"
            )
        _TYPE_PROVIDERS[runtype] = run_factory

    @staticmethod
    def list(
        experiment: Experiment,
        type: str | None = None,
        tags: TagFilter = None,
        properties: TagFilter = None,
        status: str | None = None,
        include_children: bool = False,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """Runs of an experiment, newest first; tags/properties match by key or key+value."""
        rows = _find(
            experiment.workspace,
            experiment_id=experiment._id,
            top_level_only=not include_children,
            run_type=type,
            status=status,
            tags=tags,
            properties=properties,
        )
        return (_typed(experiment, r, _rehydrate_runs) for r in rows)

    @staticmethod
    def list_by_compute(
        compute: Any,
        type: str | None = None,
        tags: TagFilter = None,
        properties: TagFilter = None,
        status: str | None = None,
    ) -> Iterator[Run]:
        """Runs on a compute target (any object with ``.workspace`` and ``.name``)."""
        ws: Workspace = compute.workspace
        rows = _find(
            ws, target=compute.name, run_type=type, status=status, tags=tags, properties=properties
        )
        exps: dict[str, Experiment] = {}
        for r in rows:
            exp = exps.get(r.experiment_name)
            if exp is None:
                exp = exps[r.experiment_name] = ws._experiment(r.experiment_name)
            yield _typed(exp, r)

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The run id."""
        return self._id

    @property
    def number(self) -> int:
        """The run's number in its experiment: 1, 2, 3..."""
        return int(self._row.number)

    @property
    def experiment(self) -> Experiment:
        """The experiment holding the run."""
        return self._experiment

    @property
    def type(self) -> str:
        """The run type, e.g. 'azureml.scriptrun'."""
        return str(self._row.type)

    @property
    def name(self) -> str:
        """The display name (azureml's alias)."""
        return self.display_name

    @property
    def display_name(self) -> str:
        """A name for people; settable. Defaults to the run id."""
        return str(self._refresh().display_name or self._id)

    @display_name.setter
    def display_name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"display_name {value!r} must be a non-empty str")
        self._store.update_run(self._id, display_name=value)
        self._row.display_name = value

    @property
    def description(self) -> str | None:
        """A free-text description; settable."""
        d = self._refresh().description
        return None if d is None else str(d)

    @description.setter
    def description(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"description must be a str, not {type(value).__name__}")
        self._store.update_run(self._id, description=value)

    @property
    def parent(self) -> Run | None:
        """The parent run, or None at the top."""
        pid = self._row.parent_id
        if pid is None:
            return None
        return Run(self._experiment, pid)

    @property
    def status(self) -> str:
        """The current status (read fresh)."""
        return self.get_status()

    @property
    def tags(self) -> dict[str, str | None]:
        """The run's tags."""
        return self.get_tags()

    @property
    def properties(self) -> dict[str, str | None]:
        """The run's properties."""
        return self.get_properties()

    def __repr__(self) -> str:
        try:
            status = self._refresh().status  # the status now, not when this object was made
        except (StoreError, NotFoundError):  # a repr never raises: show the last one seen
            status = self._row.status
        return (
            f"Run(Experiment: {self._experiment.name}, Id: {self._id}, Type: {self._row.type}, "
            f"Status: {status})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Run) and other._id == self._id and other._workspace == self._workspace
        )

    def __hash__(self) -> int:
        return hash(self._id)

    # -- children ----------------------------------------------------------------------

    def child_run(
        self, name: str | None = None, run_id: str | None = None, outputs: str | None = None
    ) -> Run:
        """Start a child run (Running); as a context manager it completes on exit.

        ``outputs`` names a folder whose content is stored with the child when it completes.
        """
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ConfigError(f"run_id {run_id!r} must be a non-empty str or None")
        (cid,) = self._store.create_runs(
            self._experiment._id,
            [
                NewRun(
                    id=run_id,
                    type=RUN_TYPE_CHILD,
                    status="Running",
                    target=self._row.target,
                    display_name=name,
                    owner=self._child_owner(),
                )
            ],
            parent_id=self._id,
            submitted_by=self._row.submitted_by,
        )
        return self._child_type()(self._experiment, cid, outputs=outputs)

    def _child_type(self) -> builtins.type[Run]:
        """The class of this run's children: its own (an offline run's stay offline)."""
        return type(self)

    def _child_owner(self) -> str | None:
        """The process that owns a new child: this one, outside a submitted run (inside
        one, children live as long as it and its supervisor do)."""
        if os.environ.get("RUNNER_RUN_ID") or self._row.type == RUN_TYPE_SCRIPT:
            return None
        from runner import lifecycle  # (see run_status._observe: it is costly to import)

        return lifecycle.process_token()

    def create_children(
        self,
        count: int | None = None,
        tag_key: str | None = None,
        tag_values: Sequence[str] | None = None,
    ) -> builtins.list[Run]:
        """Create several Running children in one transaction.

        Pass ``count``, or ``tag_key`` and ``tag_values`` (one child per value, tagged).
        """
        owner = self._child_owner()
        if tag_values is not None or tag_key is not None:
            if tag_key is None or tag_values is None:
                raise ConfigError("create_children: pass tag_key and tag_values together")
            tag_key = _check_tag_key(tag_key)
            values = [_check_tag_value(tag_key, v) for v in tag_values]
            if count is not None and count != len(values):
                raise ConfigError(
                    f"create_children: count={count} but {len(values)} tag_values; pass one or "
                    "make them agree"
                )
            specs = [
                NewRun(
                    type=RUN_TYPE_CHILD,
                    status="Running",
                    target=self._row.target,
                    tags={tag_key: v},
                    owner=owner,
                )
                for v in values
            ]
        else:
            if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(
                    f"create_children: count={count!r}; pass a count >= 0, or tag_key and tag_values"
                )
            specs = [
                NewRun(type=RUN_TYPE_CHILD, status="Running", target=self._row.target, owner=owner)
                for _ in range(count)
            ]
        ids = self._store.create_runs(
            self._experiment._id, specs, parent_id=self._id, submitted_by=self._row.submitted_by
        )
        rows = {r.id: r for r in self._store.find_runs(parent_id=self._id)}
        child_type = self._child_type()
        return [child_type(self._experiment, i, _row=rows.get(i)) for i in ids]

    def get_children(
        self,
        recursive: bool = False,
        tags: TagFilter = None,
        properties: TagFilter = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        """Children (or all descendants) of the run, newest first, filtered."""
        rows = _find(
            self._workspace,
            parent_id=None if recursive else self._id,
            descendants_of=self._id if recursive else None,
            run_type=type,
            status=status,
            tags=tags,
            properties=properties,
        )
        return (_typed(self._experiment, r, _rehydrate_runs) for r in rows)

    def submit_child(
        self, config: Any, tags: dict[str, str | None] | None = None, **kwargs: Any
    ) -> Run:
        """Submit a ScriptRunConfig as a child of this run; it runs on its own target."""
        return self._experiment.submit(config, tags=tags, parent=self, **kwargs)

    # -- models, environment, secrets, misc --------------------------------------------

    def register_model(
        self,
        model_name: str,
        model_path: str | None = None,
        tags: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> Model:
        """Register the run's file or folder ``model_path`` (default ``outputs``) as a model."""
        return register_from_run(
            self,
            model_name,
            model_path or "outputs",
            tags=tags,
            properties=properties,
            framework=model_framework,
            framework_version=model_framework_version,
            description=description,
        )

    def get_environment(self) -> Any:
        """The Environment the run was defined with."""
        # (runner.environment, 1,100 lines, is loaded only by the scripts that ask)
        from runner.environment import Environment

        definition = loads_or_none(self._row.definition) or {}
        env = definition.get("environment")
        if env is None:
            return Environment.default()
        return Environment.from_dict(env)

    def get_secret(self, name: str) -> str:
        """A secret from the workspace keyvault."""
        return self._workspace.get_default_keyvault().get_secret(name)

    def get_secrets(self, secrets: builtins.list[str]) -> dict[str, str | None]:
        """Several secrets from the workspace keyvault (None for missing names)."""
        return self._workspace.get_default_keyvault().get_secrets(secrets)

    def get_portal_url(self) -> str:
        """Where to look at the run: its page in ``runner studio`` when a studio serves
        the workspace (``http://127.0.0.1:PORT/runs/<id>``), else its folder in the
        workspace as a file URL."""
        url = studio_url(self._workspace.path)
        if url is not None:
            return f"{url}/runs/{quote(self._id, safe='')}"
        return self._run_dir().as_uri()


class ScriptRun(Run):
    """A run of a script submitted with ``Experiment.submit(ScriptRunConfig(...))``.

    Defined here, beside ``Run``, because ``Run.get``/``Run.list`` make one for every
    run of its type; import it from runner.script_run (or ``runner``).

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


def _typed(experiment: Experiment, row: RunRow, rehydrate: bool = True) -> Run:
    """The Run object for a stored run: made by its type's provider when there is one."""
    if rehydrate:
        factory = _TYPE_PROVIDERS.get(str(row.type))
        if factory is not None:
            return factory(experiment, row)
        if row.type == RUN_TYPE_SCRIPT:
            return ScriptRun(experiment, row.id, _row=row)
    return Run(experiment, row.id, _row=row)


def _find(
    ws: Workspace,
    *,
    tags: TagFilter = None,
    properties: TagFilter = None,
    status: str | None = None,
    **kw: Any,
) -> Iterator[RunRow]:
    """Runs matching the filters, newest first, fetched in pages as they are consumed."""
    tag_pairs, tag_keys = parse_filter(tags, "tags")
    prop_pairs, prop_keys = parse_filter(properties, "properties")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ConfigError(
            f"status {status!r} is not a run status; use one of "
            + ", ".join(s.value for s in RunStatus)
        )
    if not os.environ.get("RUNNER_RUN_ID") and ws.store.db_path != ":memory:":
        from runner import lifecycle  # (see run_status._observe: it is costly to import)

        lifecycle.sweep(ws)  # listed statuses are true: nothing left Running by the dead
    return ws.store.iter_runs(
        tags=tag_pairs,
        tag_keys=tag_keys,
        properties=prop_pairs,
        property_keys=prop_keys,
        status=status,
        **kw,
    )
