"""Which Target runs a run: a compute target's type -> the kind of target that runs it.

Built in: ``local`` (this machine: ``targets.local``, which runs a docker environment
in a container), ``remote`` (an SSH host: ``targets.ssh``) and ``slurm`` (a Slurm cluster
through its login node: ``targets.slurm``). More kinds come as
plugins, like submitit's executors: a package declares an entry point in the group
``runner.targets`` whose name is the compute type and whose object is a ``TargetKind``;
``RUNNER_TARGETS=type=module:attr,...`` does the same without installing anything
(a plugin being written, and the contract tests' ``FakeTarget``).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from runner.compute import ComputeTarget
from runner.errors import TargetUnavailableError
from targets.base import Place, TargetKind

if TYPE_CHECKING:
    from runner.definition import RunDefinition
    from runner.workspace import Workspace
    from targets.base import Target
    from targets.keepers import KeeperFactory

#: The entry-point group of target plugins.
ENTRY_POINT_GROUP = "runner.targets"
#: ``type=module:attr`` pairs, comma-separated: target kinds not installed as plugins.
ENV_VAR = "RUNNER_TARGETS"
#: The kinds runner brings (compute type -> ``module:attr`` of its TargetKind).
BUILTIN = {
    "local": "targets.local:KIND",
    "remote": "targets.ssh:KIND",
    "slurm": "targets.slurm:KIND",
}


def _load(ref: str) -> TargetKind:
    module, _, attr = ref.partition(":")
    kind = getattr(importlib.import_module(module), attr)
    if not isinstance(kind, TargetKind):
        raise TargetUnavailableError(f"{ref} is a {type(kind).__name__}, not a TargetKind")
    return kind


def _refs(plugins: bool = True) -> dict[str, str]:
    """compute type -> ``module:attr``: RUNNER_TARGETS first, then the built-ins, then
    (``plugins``) the installed entry points."""
    refs = dict(_installed()) if plugins else {}
    refs.update(BUILTIN)
    for pair in filter(None, os.environ.get(ENV_VAR, "").split(",")):
        name, _, ref = pair.partition("=")
        refs[name.strip()] = ref.strip()
    return refs


@functools.cache
def _installed() -> tuple[tuple[str, str], ...]:
    """The entry points of group ``runner.targets`` (read once per process: scanning the
    installed packages' metadata takes milliseconds, and a submit to a built-in target
    never needs it)."""
    from importlib.metadata import entry_points  # ~10 ms: only when a plugin is wanted

    return tuple((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def kind_of(compute_type: str, name: str | None = None) -> TargetKind:
    """The kind of target that runs jobs on compute targets of ``compute_type``."""
    ref = _refs(plugins=False).get(compute_type) or _refs().get(compute_type)
    if ref is None:
        what = f"compute target {name!r} ({compute_type})" if name else repr(compute_type)
        raise TargetUnavailableError(
            f"{what} cannot run jobs in this version of runner (it runs jobs on compute "
            f"targets of type {', '.join(sorted(_refs()))})"
        )
    return _load(ref)


def kinds() -> dict[str, TargetKind]:
    """Every kind this installation knows (a plugin that fails to load is left out)."""
    found = {}
    for name, ref in _refs().items():
        try:
            found[name] = _load(ref)
        except Exception:  # noqa: S112 - one broken plugin must not stop the daemon
            continue
    return found


def target_for(
    ws: Workspace,
    definition: RunDefinition,
    keepers: KeeperFactory | None = None,
    client_dir: Path | None = None,
) -> Target:
    """The Target of one run (TargetNotFoundError when its compute target is gone)."""
    compute = ComputeTarget(ws, definition.target)
    place = Place(ws, compute.name, compute.config, keepers, client_dir)
    return kind_of(compute.type, compute.name).make(place, definition)
