"""``Experiment.submit``: validate, snapshot, record the run, hand it to the daemon.

Standard library only: ``run.submit_child`` calls this from inside a running script.
Everything the user can get wrong is checked here, before anything is recorded.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import access
from runner.config import ScriptRunConfig
from runner.definition import RunDefinition
from runner.environment import Environment, resolve_interpreter
from runner.errors import ConfigError, RunnerError, TargetUnavailableError
from runner.jobconfig import MPIRUN_MISSING, distributed_definition, one_node_only
from runner.run import RUN_TYPE_SCRIPT
from runner.run_base import user_name
from runner.run_tags import _check_tag_key, _check_tag_value
from runner.script_run import ScriptRun
from runner.snapshot import cache_file, git_properties, take_snapshot
from runner.store import NewRun

if TYPE_CHECKING:
    from runner.experiment import Experiment
    from runner.run import Run
    from runner.workspace import Workspace


def submit(
    experiment: Experiment,
    config: Any,
    tags: dict[str, str | None] | None = None,
    parent: Run | None = None,
    **kwargs: Any,
) -> Run:
    """Submit a ScriptRunConfig; returns the ScriptRun (status Starting) at once."""
    if not isinstance(config, ScriptRunConfig):
        raise ConfigError(
            f"submit() takes a ScriptRunConfig, not {type(config).__name__}; wrap your script "
            "as ScriptRunConfig(source_directory, script, arguments=...)"
        )
    config.validate()
    ws = experiment.workspace
    env = config.effective_environment()  # with docker_runtime_config applied
    env_json = env.to_dict()  # once: the target check and the definition both need it
    # In a run on a host (its store keeps a journal) the run is handed to the workspace
    # that submitted that run: its daemon checks the target and launches it.
    handed_over = ws.store.journal is not None
    target = config.run_config.target_name
    if handed_over:
        target = _host_target(ws, target, parent)
        env.validate()
    distributed = _check_distributed(ws, config, target, env)
    rc = config.run_config
    # What the target may refuse now: a cluster checks the request with its scheduler.
    asked = RunDefinition(
        target=target,
        environment=env_json,
        gpu_count=rc.gpu_count,
        max_run_duration_seconds=rc.max_run_duration_seconds,
        distributed=distributed,
    )
    shares_host = False if handed_over else _check_target(ws, asked, env)
    python: str | None = None
    # A docker environment's interpreter is in its image, not on this machine; a remote
    # one is on its host.
    if env.python.user_managed_dependencies and not env.docker.enabled and shares_host:
        python = resolve_interpreter(env, sys.executable)
    tag_pairs = {_check_tag_key(k): _check_tag_value(k, v) for k, v in (tags or {}).items()}
    source = Path(config.source_directory).expanduser().resolve()
    cache = cache_file(ws.path, source)
    access.make_dirs(cache.parent, ws._access)
    snap = take_snapshot(source, ws.blobs, cache_path=cache)
    props: dict[str, str | None] = {"ContentSnapshotId": snap.id, "azureml.runsource": "experiment"}
    props.update(git_properties(source))
    definition = _definition(config, env, env_json, source, snap.id, distributed, python)
    if target != definition.target:
        definition = dataclasses.replace(definition, target=target)
    # One transaction: a run the daemon can see is whole (definition, properties,
    # snapshot), and a submitter killed half-way leaves nothing behind.
    (run_id,) = ws.store.create_runs(
        experiment._id,
        [
            NewRun(
                type=RUN_TYPE_SCRIPT,
                status="Starting",
                target=definition.target,
                definition=definition.to_json(),
                tags=tag_pairs,
                properties=props,
                snapshot_id=snap.id,
            )
        ],
        parent_id=parent.id if parent is not None else None,
        id_prefix=f"{experiment.name}_",
        submitted_by=user_name(),
        handed_over=[snap.id, *(e.digest for e in snap.entries)] if handed_over else None,
    )
    if not handed_over:
        _hand_to_daemon(ws, run_id)
    return ScriptRun(experiment, run_id)


def _host_target(ws: Workspace, name: str, parent: Run | None) -> str:
    """Where a run submitted from a run on a host goes: the target it names, and for
    ``local`` (or none given) the host's own target, the one the submitting run runs on
    (as azureml sends a child without a target to its parent's compute)."""
    if name != "local":
        return name
    row = (
        parent._row if parent is not None else ws.store.get_run(os.environ.get("RUNNER_RUN_ID", ""))
    )
    return row.target if row is not None else name


def _definition(
    config: ScriptRunConfig,
    env: Environment,
    env_json: dict[str, Any],
    source: Path,
    snapshot_id: str,
    distributed: dict[str, Any] | None,
    python: str | None,
) -> RunDefinition:
    """What the daemon is handed (the run's definition, recorded with it)."""
    rc = config.run_config
    command = config.command
    return RunDefinition(
        script=config.script,
        command=command if command is None or isinstance(command, str) else tuple(command),
        arguments=tuple(str(a) for a in config.arguments or rc.arguments),
        target=rc.target_name,
        source_directory=str(source),
        snapshot_id=snapshot_id,
        environment=env_json,
        python=python,
        environment_variables={**env.environment_variables, **rc.environment_variables},
        max_run_duration_seconds=rc.max_run_duration_seconds,
        gpu_count=rc.gpu_count,
        cancel_grace_seconds=rc.cancel_grace_seconds,
        priority=rc.priority,
        run_configuration=rc.to_dict(),
        distributed=distributed,
    )


def _hand_to_daemon(ws: Workspace, run_id: str) -> None:
    """Wake the workspace daemon (starting it if needed). When that fails the run is
    recorded Failed and the caller is told: it must not start later behind their back (a
    daemon started afterwards would pick up a run left Starting)."""
    # (daemon_client and lifecycle load on first use: every training script imports
    # this module through runner.run, and they would double its import time)
    from runner import daemon_client

    try:
        daemon_client.notify(ws.path, {"op": "wake"})
    except (RunnerError, OSError) as exc:
        from runner.lifecycle import service_error

        message = f"the run could not be handed to the daemon: {exc}"
        error = service_error(message, "could_not_start")
        failed = ws.store.set_status(
            run_id, "Failed", allowed_from={"Starting"}, details=message, error=error, end=True
        )
        if failed is not None:
            raise
        # a daemon took the run after all: it is on its way


def _check_distributed(ws: Any, config: Any, target: str, env: Any) -> dict[str, Any] | None:
    """The job's processes (None: one), refusing what runner cannot start: several nodes
    but on a Slurm target, other machines, containers, and MPI here without mpirun
    (ConfigError, before anything is recorded)."""
    found = distributed_definition(config.distributed_job_config)
    nodes = config.run_config.node_count
    if found is None and nodes == 1:
        return None
    cluster = target != "local" and _compute_type(ws, target) == "slurm"
    if found is None:  # node_count alone: one process on each node
        if not cluster:
            raise ConfigError(
                f"run_config.node_count={nodes!r}: runner runs on one machine, except on a "
                "Slurm target; set node_count = 1 and pass ScriptRunConfig("
                "distributed_job_config=PyTorchConfiguration(process_count=N)) for N processes"
            )
        return {"kind": "pytorch", "processCount": nodes, "nodeCount": nodes}
    what = type(config.distributed_job_config).__name__
    if cluster:
        return found
    if target != "local":
        raise ConfigError(
            f"{what} runs on the local target only, or on a Slurm target, in this version "
            f"of runner (target {target!r} is neither); submit it with compute_target='local'"
        )
    if found["nodeCount"] > 1:
        raise one_node_only(found["nodeCount"], what)
    if env.docker.enabled:
        raise ConfigError(
            f"{what} cannot run in a docker environment in this version of runner; set "
            "environment.docker.enabled = False (or DockerConfiguration(use_docker=False))"
        )
    if found["kind"] == "mpi" and shutil.which("mpirun") is None:
        raise ConfigError(MPIRUN_MISSING)
    return found


def _compute_type(ws: Any, name: str) -> str | None:
    """The type of the workspace's compute target ``name`` (None: no such target)."""
    rows = ws.store.query("SELECT kind FROM compute_targets WHERE name = ?", (name,))
    return str(rows[0][0]) if rows else None


def _check_target(ws: Any, asked: RunDefinition, env: Any) -> bool:
    """Everything about the run's target that can fail, checked before the run is
    recorded: the compute target exists and can run jobs, the environment can be
    prepared there, and the target answers (for a host: its key, the login, python3).
    Returns whether the run will execute on this machine (``Target.shares_host``)."""
    name = asked.target
    try:
        registry = importlib.import_module("runner.service.registry")
    except ImportError as exc:  # inside a run: only runner's in-run client is importable
        if name == "local":
            return True
        raise TargetUnavailableError(
            f"runs on target {name!r} can be submitted only where runner is installed"
        ) from exc
    target = registry.target_for(ws, asked)
    target.check_environment(env)  # a ConfigError now, not a Failed run later
    target.check()
    return bool(target.shares_host)
