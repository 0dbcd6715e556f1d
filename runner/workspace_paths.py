"""Where workspaces are: the default one, named ones, the project's config file, and the
names of workspaces and experiments; the MLflow tracking URI of a workspace folder.

Nothing here opens a workspace (runner.workspace does). Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

from runner.errors import ConfigError

#: Environment variable naming the default workspace folder.
WORKSPACE_ENV = "RUNNER_WORKSPACE"
#: The URI scheme of runner's MLflow tracking store, and MLflow's plugin entry points for it
#: (the same as pyproject.toml's; tests check they agree).
MLFLOW_SCHEME = "runner"
MLFLOW_ENTRY_POINTS = {
    "mlflow.tracking_store": "runner.mlflow_store:RunnerTrackingStore",
    "mlflow.artifact_repository": "runner.mlflow_store:RunnerArtifactRepository",
}
#: Where a project's config file is: ``.runner/config.json`` (or ``config.json``).
_CONFIG_DIR = ".runner"
_CONFIG_FILE = "config.json"

PathLike = Union[str, "os.PathLike[str]"]


#: The name that means the default workspace.
DEFAULT_WORKSPACE_NAME = "default"
_WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")


def default_workspace_path() -> Path:
    """``$RUNNER_WORKSPACE``, else ``~/.runner/workspace``."""
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".runner" / "workspace"


def named_workspaces_root() -> Path:
    """The folder of named workspaces: ``~/.runner/workspaces``."""
    return Path.home() / ".runner" / "workspaces"


def is_workspace_name(value: object) -> bool:
    """Whether ``value`` is a v1 workspace name rather than a folder path.

    A name is a str of letters, digits, '-' and '_' (starting with a letter or digit)
    that is not a folder in the current directory: an existing folder stays a path, so
    ``Workspace("ws")`` still opens ``./ws`` where it exists.
    """
    return (
        isinstance(value, str) and bool(_WORKSPACE_NAME.match(value)) and not Path(value).is_dir()
    )


def named_workspace_path(name: str) -> Path:
    """The folder of the workspace called ``name`` (``default``: the default workspace)."""
    if not isinstance(name, str) or not _WORKSPACE_NAME.match(name):
        raise ConfigError(
            f"workspace name {name!r} is not valid; use letters, digits, '-' and '_', "
            "starting with a letter or digit (or pass a folder path)"
        )
    if name == DEFAULT_WORKSPACE_NAME:
        return default_workspace_path()
    return named_workspaces_root() / name


def resolve_workspace(name_or_path: PathLike) -> tuple[Path, str | None]:
    """(folder, name) of a workspace given by folder path or by v1 name (name None for a path)."""
    if is_workspace_name(name_or_path):
        name = str(name_or_path)
        return named_workspace_path(name), name
    return Path(name_or_path).expanduser(), None


def mlflow_tracking_uri(path: Path) -> str:
    """``runner:///abs/path`` for the workspace folder ``path`` (percent-quoted)."""
    return f"{MLFLOW_SCHEME}://{quote(path.resolve().as_posix())}"


def declare_mlflow_plugin(folder: Path) -> None:
    """Write a ``.dist-info`` into ``folder`` declaring runner's MLflow entry points, so
    MLflow finds runner's store in any interpreter with ``folder`` on its path (a run's
    PYTHONPATH holds runner's client copy, which is not pip-installed)."""
    info = folder / "runner_mlflow_plugin-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runner-mlflow-plugin\nVersion: 0\n", encoding="utf-8"
    )
    text = "".join(
        f"[{group}]\n{MLFLOW_SCHEME} = {target}\n\n"
        for group, target in MLFLOW_ENTRY_POINTS.items()
    )
    (info / "entry_points.txt").write_text(text, encoding="utf-8")


def configured_workspace_path(start: Path | None = None) -> Path:
    """The folder ``Workspace.from_config()`` would open from ``start``, without opening it."""
    found = _find_config((start or Path.cwd()).resolve())
    if found is not None and found[1].get("workspace_path"):
        return (found[0].parent / str(found[1]["workspace_path"])).expanduser().resolve()
    return _config_workspace_path(found[1] if found is not None else {})


def _config_workspace_path(data: dict[str, Any]) -> Path:
    """The folder of a config without workspace_path: v1's workspace_name names a workspace."""
    name = data.get("workspace_name")
    if isinstance(name, str) and _WORKSPACE_NAME.match(name):
        return named_workspace_path(name)
    return default_workspace_path()


def _find_config(start: Path, file_name: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest workspace config file at or above ``start``, and its data."""
    names = [file_name] if file_name else [f"{_CONFIG_DIR}/{_CONFIG_FILE}", _CONFIG_FILE]
    for folder in (start, *start.parents):
        for rel in names:
            candidate = folder / rel
            data = _read_config(candidate) if candidate.is_file() else None
            if data is not None:
                return candidate, data
    return None


def _read_config(path: Path) -> dict[str, Any] | None:
    """The config's data if it is a runner (or azureml) workspace config, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "workspace_path" in data or "workspace_name" in data:
        return data
    return None


_EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def check_experiment_name(name: object) -> str:
    """An experiment name: letters, digits, '_', '-', '.', starting with a letter or digit."""
    if not isinstance(name, str) or not _EXPERIMENT_NAME.match(name):
        raise ConfigError(
            f"experiment name {name!r} is not valid; use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (at most 255 characters)"
        )
    return name


def studio_file(ws_path: Path) -> Path:
    """Where a running ``runner studio`` records its address: in the workspace's daemon
    folder, written at start and removed at exit (runner.studio.server)."""
    return ws_path / "daemon" / "studio.json"


def studio_url(ws_path: Path) -> str | None:
    """The address (``http://127.0.0.1:PORT``) of the studio serving this workspace, or
    None when none runs (no file, or its process is gone)."""
    try:
        data = json.loads(studio_file(ws_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid, url = (data.get("pid"), data.get("url")) if isinstance(data, dict) else (None, None)
    if not isinstance(pid, int) or not isinstance(url, str):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process took the pid: not our studio
        return None
    return url
