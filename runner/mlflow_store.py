"""MLflow's tracking store and artifact repository on runner's run history (host side).

MLflow finds these through its plugin entry points (``mlflow.tracking_store`` and
``mlflow.artifact_repository``, scheme ``runner``, in pyproject.toml), so after
``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())`` MLflow's own client reads and
writes runner's history:

- an MLflow experiment is a runner experiment (same name; its id is runner's id, and
  MLflow's default experiment ``"0"`` is the runner experiment ``Default``);
- an MLflow run is a runner run (same id). Inside a submitted run, ``mlflow.start_run()``
  gives that run, as in Azure ML; elsewhere it starts an interactive run (like
  ``exp.start_logging()``), which ``mlflow.end_run()`` completes;
- metrics are runner metrics logged with ``step=`` (buffered as ``Run.log`` is), params are
  run properties (immutable in both), tags are tags, artifacts are the run's files.

This module imports mlflow and is never imported by ``import runner`` nor by the in-run
client; only MLflow loads it, through the entry points.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

try:
    from mlflow.entities import (
        Experiment as MlflowExperiment,
    )
    from mlflow.entities import (
        FileInfo,
        LifecycleStage,
        Metric,
        Param,
        RunData,
        RunInfo,
        RunStatus,
        RunTag,
        ViewType,
    )
    from mlflow.entities import (
        Run as MlflowRun,
    )
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.store.tracking.abstract_store import AbstractStore
    from mlflow.utils.search_utils import SearchUtils
except ImportError as exc:  # pragma: no cover - only MLflow imports this module
    from runner.errors import ConfigError

    raise ConfigError(
        "runner's MLflow bridge needs mlflow: pip install mlflow-skinny (or mlflow)"
    ) from exc

from runner.context import get_context
from runner.errors import RunnerError
from runner.experiment import Experiment
from runner.run import Run
from runner.workspace import MLFLOW_SCHEME, Workspace, mlflow_tracking_uri

SCHEME = MLFLOW_SCHEME
#: MLflow's default experiment id, and the runner experiment it stands for.
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
#: Separates the workspace path from the run id in an artifact URI.
_RUN_MARK = "/@run/"

_STATUS = {
    "Completed": RunStatus.FINISHED,
    "Failed": RunStatus.FAILED,
    "Canceled": RunStatus.KILLED,
    "CancelRequested": RunStatus.RUNNING,
    "Running": RunStatus.RUNNING,
    "Finalizing": RunStatus.RUNNING,
    "NotStarted": RunStatus.SCHEDULED,
    "Queued": RunStatus.SCHEDULED,
    "Preparing": RunStatus.SCHEDULED,
    "Starting": RunStatus.SCHEDULED,
}


def tracking_uri(path: str | os.PathLike[str]) -> str:
    """``runner:///abs/path``: the tracking URI of the workspace at ``path``."""
    return mlflow_tracking_uri(Path(path))


def workspace_path(uri: str) -> Path:
    """The workspace folder a ``runner:`` URI names (empty: the current run's workspace)."""
    parsed = urlparse(uri)
    path = unquote(parsed.netloc + parsed.path)
    if not path:
        path = os.environ.get("RUNNER_WORKSPACE", "")
    if not path:
        raise MlflowException(
            f"tracking URI {uri!r} names no workspace; use ws.get_mlflow_tracking_uri()",
            INVALID_PARAMETER_VALUE,
        )
    return Path(path)


def _unsupported(what: str) -> MlflowException:
    return MlflowException(
        f"{what} is not supported by runner's MLflow tracking store (runner keeps Azure ML v1 "
        "run history: experiments, runs, metrics, params, tags and artifacts)",
        INVALID_PARAMETER_VALUE,
    )


def _ms(ts: Any) -> int | None:
    return None if ts is None else int(float(ts) * 1000)


#: Properties runner sets itself; the rest are MLflow params.
def _is_param(key: str) -> bool:
    return not (key.startswith(("azureml.", "mlflow.", "runner.")) or key == "ContentSnapshotId")


class RunnerTrackingStore(AbstractStore):  # type: ignore[misc,unused-ignore]
    """MLflow's tracking store over a runner workspace (see the module docstring)."""

    def __init__(self, store_uri: str | None = None, artifact_uri: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._path = workspace_path(store_uri or f"{SCHEME}://")
        try:
            self._ws = Workspace(self._path)
        except RunnerError as exc:
            raise MlflowException(str(exc), RESOURCE_DOES_NOT_EXIST) from exc
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    # -- runs --------------------------------------------------------------------------

    def _current_run_id(self) -> str | None:
        """The submitted run this process runs in, when it belongs to this workspace."""
        run_id = os.environ.get("RUNNER_RUN_ID")
        ws = os.environ.get("RUNNER_WORKSPACE")
        if run_id and ws and Path(ws).resolve() == self._ws.path:
            return run_id
        return None

    def _run(self, run_id: str) -> Run:
        """One Run object per id, so metrics go through its in-memory buffers."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                if run_id == self._current_run_id():
                    run = get_context()  # shares the script's buffers and exit flush
                else:
                    try:
                        run = Run.get(self._ws, run_id, _rehydrate_runs=False)
                    except RunnerError as exc:
                        raise MlflowException(str(exc), RESOURCE_DOES_NOT_EXIST) from exc
                self._runs[run_id] = run
            return run

    def _experiment(self, experiment_id: str) -> Experiment:
        if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
            return Experiment(self._ws, DEFAULT_EXPERIMENT_NAME)
        for exp in self._ws.experiments.values():
            if exp.id == str(experiment_id):
                return exp
        raise MlflowException(
            f"no experiment with id {experiment_id!r} in runner workspace {self._ws.path}",
            RESOURCE_DOES_NOT_EXIST,
        )

    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: str | None
    ) -> MlflowRun:
        """Inside a submitted run: that run. Else a new interactive run of the experiment
        (a child run when MLflow says ``mlflow.parentRunId``)."""
        tag_map = {t.key: t.value for t in tags or []}
        parent_id = tag_map.pop("mlflow.parentRunId", None)
        current = self._current_run_id()
        if parent_id is not None:
            run = self._run(parent_id).child_run(name=run_name)
        elif current is not None:
            run = self._run(current)
        else:
            exp = self._experiment(experiment_id)
            run = exp.start_logging(outputs=False, display_name=run_name)
        self._runs[run.id] = run
        if tag_map:
            run.set_tags({k: v for k, v in tag_map.items()})
        if run_name and run.id != current:
            run.display_name = run_name
        return self.get_run(run.id)

    def update_run_info(
        self, run_id: str, run_status: Any, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        """End a run MLflow started: complete or fail it. A submitted run is left to its
        launcher, which ends it when the script exits (as in Azure ML)."""
        run = self._run(run_id)
        status = RunStatus.to_string(run_status) if isinstance(run_status, int) else run_status
        if run_name:
            run.display_name = run_name
        if run_id != self._current_run_id() and run.status == "Running":
            if status == "FINISHED":
                run.complete()
            elif status == "FAILED":
                run.fail(error_details="MLflow ended the run as FAILED")
            elif status == "KILLED":
                run.cancel()
        else:
            run.flush()
        return self.get_run(run_id).info

    def get_run(self, run_id: str) -> MlflowRun:
        """The runner run as an MLflow Run (metrics: the last value of each)."""
        run = self._run(run_id)
        run.flush()
        return self._to_mlflow(run, self._ws.store.get_run(run_id))

    def _to_mlflow(self, run: Run, row: Any) -> MlflowRun:
        metrics = []
        for name, series in self._ws.store.read_metrics(row.id).items():
            if series.kind != "scalar" or not series.values:
                continue
            value = series.values[-1]
            if isinstance(value, (bool, int, float)):
                step = series.steps[-1] if series.steps else 0
                metrics.append(Metric(name, float(value), _ms(row.start_utc) or 0, step))
        props = self._ws.store.get_properties(row.id)
        params = [Param(k, v or "") for k, v in props.items() if _is_param(k)]
        tags = [RunTag(k, v or "") for k, v in self._ws.store.get_tags(row.id).items()]
        tags.append(RunTag("mlflow.runName", row.display_name or row.id))
        if row.parent_id:
            tags.append(RunTag("mlflow.parentRunId", row.parent_id))
        info = RunInfo(
            run_id=row.id,
            experiment_id=str(row.experiment_id),
            user_id=row.submitted_by or "",
            status=RunStatus.to_string(_STATUS.get(row.status, RunStatus.RUNNING)),
            start_time=_ms(row.start_utc or row.created_utc) or 0,
            end_time=_ms(row.end_utc),
            lifecycle_stage=LifecycleStage.ACTIVE,
            artifact_uri=f"{tracking_uri(self._ws.path)}{_RUN_MARK}{row.id}",
            run_name=row.display_name or row.id,
        )
        return MlflowRun(info, RunData(metrics=metrics, params=params, tags=tags))

    def _search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        run_view_type: int,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> tuple[list[MlflowRun], str | None]:
        """All runs of the experiments, filtered, ordered and paged by MLflow's own rules."""
        self._ws.store.flush()
        runs = []
        if run_view_type != ViewType.DELETED_ONLY:
            for exp_id in experiment_ids:
                exp = self._experiment(exp_id)
                for run in exp.get_runs(include_children=True):
                    runs.append(self._to_mlflow(run, run._row))
        search: Any = SearchUtils  # untyped in mlflow
        filtered = search.filter(runs, filter_string)
        ordered = search.sort(filtered, order_by)
        page, token = search.paginate(ordered, page_token, max_results)
        return page, token

    def get_metric_history(
        self,
        run_id: str,
        metric_key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Any:
        """Every value of a metric with its step (timestamps: the run's start; runner
        keeps no per-value time)."""
        if page_token is not None:
            raise _unsupported("get_metric_history(page_token=...)")
        run = self._run(run_id)
        run.flush()
        series = self._ws.store.read_metrics(run_id, metric_key).get(metric_key)
        if series is None:
            return PagedList([], None)
        when = _ms(run._row.start_utc) or 0
        steps = series.steps or [0] * len(series.values)
        out = [Metric(metric_key, float(v), when, s) for v, s in zip(series.values, steps)]
        return PagedList(out if max_results is None else out[:max_results], None)

    # -- writing -----------------------------------------------------------------------

    def log_batch(self, run_id: str, metrics: Any, params: Any, tags: Any) -> None:
        """Metrics into the run's buffers (no round trip), then params and tags."""
        run = self._run(run_id)
        try:
            for m in metrics:
                run.log(m.key, m.value, step=m.step)
            if params:
                run.add_properties({p.key: str(p.value) for p in params})
            if tags:
                run.set_tags({t.key: str(t.value) for t in tags})
        except RunnerError as exc:
            raise MlflowException(str(exc), INVALID_PARAMETER_VALUE) from exc

    def log_metric(self, run_id: str, metric: Metric) -> None:
        """One metric value (buffered as ``Run.log`` is)."""
        run = self._runs.get(run_id) or self._run(run_id)
        try:
            run.log(metric.key, metric.value, step=metric.step)
        except RunnerError as exc:
            raise MlflowException(str(exc), INVALID_PARAMETER_VALUE) from exc

    def log_param(self, run_id: str, param: Param) -> None:
        """A param becomes a run property."""
        self.log_batch(run_id, [], [param], [])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        """A tag becomes a run tag."""
        self.log_batch(run_id, [], [], [tag])

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a run tag."""
        self._run(run_id).remove_tags([key])

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        """Dataset inputs are not kept; a call without any is accepted."""
        if datasets or models:
            raise _unsupported("log_inputs (datasets and model inputs)")

    def search_logged_models(self, *args: Any, **kwargs: Any) -> Any:
        """None: runner keeps no MLflow logged models (register models with runner's Model)."""
        return PagedList([], None)

    def link_traces_to_run(self, trace_ids: Any, run_id: str) -> None:
        raise _unsupported("MLflow traces")

    def create_logged_model(self, *args: Any, **kwargs: Any) -> Any:
        raise _unsupported(
            "MLflow logged models (mlflow.<flavor>.log_model); store the model files with "
            "mlflow.log_artifacts and register them with runner's run.register_model"
        )

    def delete_run(self, run_id: str) -> None:
        raise _unsupported("delete_run")

    def restore_run(self, run_id: str) -> None:
        raise _unsupported("restore_run")

    # -- experiments -------------------------------------------------------------------

    def _to_experiment(self, exp: Experiment) -> MlflowExperiment:
        return MlflowExperiment(
            experiment_id=exp.id,
            name=exp.name,
            artifact_location=tracking_uri(self._ws.path),
            lifecycle_stage=LifecycleStage.ACTIVE,
        )

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        """The workspace's experiments (filter_string: only ``name = '...'``)."""
        exps = [self._to_experiment(e) for e in self._ws.experiments.values()]
        if view_type == ViewType.DELETED_ONLY:
            exps = []
        if filter_string:
            wanted = _name_filter(filter_string)
            exps = [e for e in exps if e.name == wanted]
        if order_by or page_token:
            raise _unsupported("search_experiments(order_by=..., page_token=...)")
        return PagedList(exps[:max_results], None)

    def create_experiment(self, name: str, artifact_location: Any = None, tags: Any = None) -> str:
        """A runner experiment (artifact_location and experiment tags are refused)."""
        if artifact_location or tags:
            raise _unsupported("create_experiment(artifact_location=..., tags=...)")
        return Experiment(self._ws, name).id

    def get_experiment(self, experiment_id: str) -> MlflowExperiment:
        """The experiment with runner's id (``"0"``: runner's ``Default``)."""
        return self._to_experiment(self._experiment(experiment_id))

    def get_experiment_by_name(self, experiment_name: str) -> MlflowExperiment | None:
        """The experiment of that name, or None."""
        exp = self._ws.experiments.get(experiment_name)
        return None if exp is None else self._to_experiment(exp)

    def delete_experiment(self, experiment_id: str) -> None:
        raise _unsupported("delete_experiment")

    def restore_experiment(self, experiment_id: str) -> None:
        raise _unsupported("restore_experiment")

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        raise _unsupported("rename_experiment")

    def set_experiment_tag(self, experiment_id: str, tag: Any) -> None:
        raise _unsupported("set_experiment_tag")


def _name_filter(filter_string: str) -> str:
    """The name of ``name = 'x'`` (what get_experiment_by_name sends); else refused."""
    text = filter_string.strip()
    for quote_char in ("'", '"'):
        head = "name = " + quote_char
        if text.startswith(head) and text.endswith(quote_char):
            return text[len(head) : -1]
    raise _unsupported(f"search_experiments(filter_string={filter_string!r})")


class RunnerArtifactRepository(ArtifactRepository):  # type: ignore[misc,unused-ignore]
    """A run's files as MLflow artifacts: ``runner:///ws/path/@run/RUN_ID[/sub/path]``."""

    def __init__(self, artifact_uri: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(artifact_uri, *args, **kwargs)
        if _RUN_MARK not in artifact_uri:
            raise MlflowException(
                f"{artifact_uri!r} names no run; runner artifact URIs end in {_RUN_MARK}RUN_ID",
                INVALID_PARAMETER_VALUE,
            )
        ws_part, rest = artifact_uri.split(_RUN_MARK, 1)
        run_id, _, prefix = rest.partition("/")
        self._store = RunnerTrackingStore(ws_part)
        self._run_id = run_id
        self._prefix = prefix.strip("/")

    def _name(self, artifact_path: str | None, base: str) -> str:
        parts = [p for p in (self._prefix, (artifact_path or "").strip("/"), base) if p]
        return "/".join(parts)

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Store a file with the run (name: artifact_path/basename)."""
        name = self._name(artifact_path, os.path.basename(local_file))
        self._store._run(self._run_id).upload_file(name, local_file)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Store every file under a folder with the run."""
        run = self._store._run(self._run_id)
        name = self._name(artifact_path, "")
        if name:
            run.upload_folder(name, local_dir)
        else:
            for root, _dirs, files in os.walk(local_dir):
                for f in files:
                    full = os.path.join(root, f)
                    run.upload_file(os.path.relpath(full, local_dir).replace(os.sep, "/"), full)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """Files and folders directly under ``path``."""
        base = self._name(path, "")
        sizes = {
            name: size for name, size in _file_sizes(self._store, self._run_id) if name != base
        }
        lead = f"{base}/" if base else ""
        seen: dict[str, FileInfo] = {}
        for name, size in sizes.items():
            if not name.startswith(lead):
                continue
            head, sep, _ = name[len(lead) :].partition("/")
            rel = (f"{path.strip('/')}/{head}" if path and path.strip("/") else head).strip("/")
            seen[rel] = FileInfo(rel, True, None) if sep else FileInfo(rel, False, size)
        return sorted(seen.values(), key=lambda f: f.path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        self._store._run(self._run_id).download_file(self._name(remote_file_path, ""), local_path)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        raise _unsupported("delete_artifacts")


def _file_sizes(store: RunnerTrackingStore, run_id: str) -> list[tuple[str, int | None]]:
    run = store._run(run_id)
    return [(name, None) for name in run.get_file_names()]
