"""Workspace: a folder that holds the run history, artifacts and configuration.

A workspace is opened by its folder path, or by a v1 workspace *name*: a name of letters,
digits, '-' and '_' that is not a folder in the current directory. ``default`` is the
default workspace (``$RUNNER_WORKSPACE``, else ``~/.runner/workspace``); any other name
is the folder ``~/.runner/workspaces/NAME``. So v1's ``Workspace.get("myws",
subscription_id=..., resource_group=...)``, ``Workspace(subscription_id, resource_group,
workspace_name)`` and ``Workspace.create(name, ..., exist_ok=True)`` work unchanged; the
Azure-only arguments are accepted and ignored (a RunnerWarning says so once per process),
and ``ws.subscription_id``, ``ws.resource_group`` and ``ws.location`` are ``"local"``.

The folder itself (store, blobs, keyvault, environment registry, its layout on disk) is
runner.workspace_folder's ``WorkspaceFolder``, which ``Workspace`` extends; where
workspaces and config files are is runner.workspace_paths'. Their public names are
importable from here too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from runner import access
from runner.artifacts import BlobStore
from runner.compute import list_targets
from runner.errors import (
    ConfigError,
    ConflictError,
    RunnerWarning,
    StoreError,
    WorkspaceNotFoundError,
)
from runner.experiment import Experiment
from runner.models import Model
from runner.store import Store
from runner.workspace_folder import (
    _DB_FILE,
    _DB_FLAG,
    WorkspaceFolder,
    _check_database,
    _initialise,
    _keep_private,
    _record_database,
)
from runner.workspace_folder import LOCAL as LOCAL
from runner.workspace_paths import _CONFIG_DIR as _CONFIG_DIR
from runner.workspace_paths import _CONFIG_FILE as _CONFIG_FILE
from runner.workspace_paths import DEFAULT_WORKSPACE_NAME as DEFAULT_WORKSPACE_NAME
from runner.workspace_paths import MLFLOW_ENTRY_POINTS as MLFLOW_ENTRY_POINTS
from runner.workspace_paths import MLFLOW_SCHEME as MLFLOW_SCHEME
from runner.workspace_paths import WORKSPACE_ENV as WORKSPACE_ENV
from runner.workspace_paths import PathLike as PathLike
from runner.workspace_paths import _config_workspace_path as _config_workspace_path
from runner.workspace_paths import _find_config as _find_config
from runner.workspace_paths import _read_config as _read_config
from runner.workspace_paths import check_experiment_name as check_experiment_name
from runner.workspace_paths import configured_workspace_path as configured_workspace_path
from runner.workspace_paths import declare_mlflow_plugin as declare_mlflow_plugin
from runner.workspace_paths import default_workspace_path as default_workspace_path
from runner.workspace_paths import is_workspace_name as is_workspace_name
from runner.workspace_paths import mlflow_tracking_uri as mlflow_tracking_uri
from runner.workspace_paths import named_workspace_path as named_workspace_path
from runner.workspace_paths import named_workspaces_root as named_workspaces_root
from runner.workspace_paths import resolve_workspace as resolve_workspace

if TYPE_CHECKING:
    from runner.environment import Environment

#: Arguments of v1's Workspace(), get() and create() that only mean something in Azure,
#: with the v1 default that is no news when passed (create_resource_group=True, ...).
_CLOUD_ARGUMENTS: dict[str, object] = {
    "auth": None,
    "subscription_id": None,
    "resource_group": None,
    "location": None,
    "cloud": "AzureCloud",
    "id": None,
    "create_resource_group": True,
    "sku": "basic",
    "tags": None,
    "friendly_name": None,
    "storage_account": None,
    "key_vault": None,
    "app_insights": None,
    "container_registry": None,
    "adb_workspace": None,
    "primary_user_assigned_identity": None,
    "cmk_keyvault": None,
    "resource_cmk_uri": None,
    "hbi_workspace": False,
    "default_cpu_compute_target": None,
    "default_gpu_compute_target": None,
    "private_endpoint_config": None,
    "private_endpoint_auto_approval": True,
    "show_output": True,
    "user_assigned_identity_for_cmk_encryption": None,
    "system_datastores_auth_mode": "accessKey",
    "v1_legacy_mode": None,
    "_location": None,
    "_disable_service_check": False,
    "_workspace_id": None,
    "_cloud": "AzureCloud",
}
#: The warning about ignored Azure-only arguments is given once per process.
_cloud_arguments_said = False


def _say_ignored(given: dict[str, Any]) -> None:
    """Warn once per process that Azure-only arguments were given and are ignored."""
    global _cloud_arguments_said
    names = [k for k, v in given.items() if v is not None and v != _CLOUD_ARGUMENTS.get(k)]
    if not names or _cloud_arguments_said:
        return
    _cloud_arguments_said = True
    warnings.warn(
        f"ignoring the Azure-only workspace arguments {', '.join(names)}: a runner workspace "
        "is a folder on this machine (said once per process)",
        RunnerWarning,
        stacklevel=3,
    )


def _check_v1_arguments(where: str, given: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} got unexpected argument(s) {', '.join(unknown)}; it takes the arguments "
            "of azureml's, of which runner uses the name (or path) and exist_ok"
        )


_INIT_V1 = frozenset(
    {"_location", "_disable_service_check", "_workspace_id", "sku", "tags", "_cloud"}
)
_CREATE_V1 = frozenset(_CLOUD_ARGUMENTS) - {"cloud", "id"} - _INIT_V1 | {"sku", "tags"}


class Workspace(WorkspaceFolder):
    """A runner workspace: run history, artifacts, registries and secrets in one folder.

    ``Workspace(path)`` opens an existing workspace; ``Workspace.create(path)`` makes one;
    ``Workspace.from_config()`` finds the project's workspace, or the default one, which
    is created on first use so that nothing has to be set up first.

    Example:
        >>> ws = Workspace.from_config()
        >>> exp = Experiment(ws, "mnist")
    """

    def __init__(
        self,
        path: PathLike | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        auth: Any = None,
        *,
        subscription_id: str | None = None,
        _create: bool = False,
        _name: str | None = None,
        _shared_group: str | int | None = None,
        **v1_kwargs: Any,
    ):
        """Open the workspace at a folder path, or the one of a v1 name.

        Args:
            path: the workspace folder, or a v1 workspace name. In v1's spelling
                ``Workspace(subscription_id, resource_group, workspace_name)`` it is the
                subscription id, ignored like resource_group and auth.
            workspace_name: v1's name of the workspace (then ``path`` is not a path).

        Raises:
            WorkspaceNotFoundError: no workspace there (``Workspace.create`` makes one).
        """
        _check_v1_arguments("Workspace()", v1_kwargs, _INIT_V1)
        name, ignored = _v1_name(path, resource_group, workspace_name, subscription_id)
        _say_ignored({**ignored, "auth": auth, **v1_kwargs})
        if name is not None:
            root = named_workspace_path(name)
        else:
            root, name = resolve_workspace(cast("PathLike", path))  # (_v1_name: not None)
        root = root.expanduser().resolve()
        meta = root / "workspace.json"
        if not meta.exists():
            _create_if_asked(root, name, _create, _name, _shared_group)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{meta} is not a readable workspace file: {exc}") from exc
        self.path = root
        self.name: str = str(info.get("name") or root.name)
        gid = info.get("shared_gid")
        #: who may use the workspace, and the modes of its files (runner.access)
        self._access = access.Access(gid) if isinstance(gid, int) else access.PRIVATE
        _keep_private(root, self._access)
        db = root / _DB_FILE
        _check_database(root, db, info)
        self._store = Store.open(db)
        self._blobs = BlobStore(root / "blobs", self._access.blob_mode)
        if not info.get(_DB_FLAG):
            _record_database(meta, info, self._access)

    # -- finding and creating ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: PathLike,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        create_resource_group: bool = True,
        *,
        exist_ok: bool = False,
        shared_group: str | int | None = None,
        workspace_name: str | None = None,
        **v1_kwargs: Any,
    ) -> Workspace:
        """Create a workspace and return it: at ``name`` if it is a folder path, else the
        workspace of that v1 name (``~/.runner/workspaces/NAME``; ``default``: the default one).

        Azure-only arguments (auth, subscription_id, resource_group, location, sku, ...)
        are accepted and ignored, said once per process in a RunnerWarning, so v1 code
        keeps working.

        The workspace is private to its owner (folders 0700, files 0600). Pass
        ``shared_group="team"`` (a group name or gid) to share it with that group's
        members and nobody else (runner.access).

        Example:
            >>> ws = Workspace.create("myws", subscription_id="...", resource_group="rg",
            ...                       location="eastus", exist_ok=True)

        Raises:
            ConflictError: the workspace exists and exist_ok is False.
        """
        _check_v1_arguments("Workspace.create()", v1_kwargs, _CREATE_V1)
        _say_ignored(
            {
                "auth": auth,
                "subscription_id": subscription_id,
                "resource_group": resource_group,
                "location": location,
                "create_resource_group": create_resource_group,
                **v1_kwargs,
            }
        )
        folder, v1_name = resolve_workspace(name)
        root = folder.resolve()
        if (root / "workspace.json").exists() and not exist_ok:
            opener = f"Workspace.get({v1_name!r})" if v1_name else f"Workspace({str(root)!r})"
            raise ConflictError(
                f"a workspace already exists at {root}; open it with {opener} or pass exist_ok=True"
            )
        return cls(
            root,
            _create=True,
            _name=workspace_name or v1_name or root.name,
            _shared_group=shared_group,
        )

    @classmethod
    def get(
        cls,
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        cloud: str = "AzureCloud",
        id: str | None = None,
    ) -> Workspace:
        """Open the workspace of a v1 name (or a folder path), as v1's ``Workspace.get``.

        ``default`` is the default workspace, made on first use; any other workspace must
        exist. The Azure-only arguments are accepted and ignored (said once per process).

        Example:
            >>> ws = Workspace.get("myws", subscription_id="...", resource_group="rg")
            >>> print(ws.name, ws.location, ws.resource_group, ws.subscription_id)
            myws local local local

        Raises:
            WorkspaceNotFoundError: no such workspace; the message says how to create it.
        """
        _say_ignored(
            {
                "auth": auth,
                "subscription_id": subscription_id,
                "resource_group": resource_group,
                "location": location,
                "cloud": cloud,
                "id": id,
            }
        )
        return cls(name, _create=name == DEFAULT_WORKSPACE_NAME)

    @classmethod
    def from_config(
        cls, path: PathLike | None = None, auth: Any = None, _file_name: str | None = None
    ) -> Workspace:
        """Find ``.runner/config.json`` (or ``config.json``) in ``path`` or a folder above.

        With no config found this is the default workspace (``$RUNNER_WORKSPACE``, else
        ``~/.runner/workspace``), created if needed. A v1 config.json (subscription_id,
        resource_group, workspace_name) opens the workspace of that name, created if needed.
        """
        start = Path(path).expanduser().resolve() if path is not None else Path.cwd()
        if start.is_file():
            found = _read_config(start)
            if found is None:
                raise ConfigError(
                    f"{start} is not a runner config file; it needs a 'workspace_path' key"
                )
            return cls._from_config_data(start, found)
        found_config = _find_config(start, _file_name)
        if found_config is not None:
            return cls._from_config_data(*found_config)
        return cls(default_workspace_path(), _create=True, _name=DEFAULT_WORKSPACE_NAME)

    @classmethod
    def _from_config_data(cls, config_file: Path, data: dict[str, Any]) -> Workspace:
        raw = data.get("workspace_path")
        if raw:
            root = (config_file.parent / str(raw)).expanduser()
            return cls(root, _create=True, _name=data.get("workspace_name"))
        return cls(_config_workspace_path(data), _create=True, _name=data.get("workspace_name"))

    def write_config(self, path: PathLike | None = None, file_name: str | None = None) -> Path:
        """Write ``.runner/config.json`` in ``path`` (default: the current folder)."""
        folder = Path(path) if path is not None else Path.cwd()
        target = folder / _CONFIG_DIR / (file_name or _CONFIG_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            json.dumps({"workspace_path": str(self.path), "workspace_name": self.name}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        return target

    # -- registries ------------------------------------------------------------------

    @property
    def experiments(self) -> dict[str, Experiment]:
        """name -> Experiment, for every experiment in the workspace."""
        return {name: Experiment(self, name) for name in self._store.experiment_names()}

    @property
    def compute_targets(self) -> dict[str, Any]:
        """name -> compute target; ``local`` always exists."""
        return list_targets(self)

    @property
    def environments(self) -> dict[str, Environment]:
        """name -> latest registered Environment."""
        return self._list_environments()

    @property
    def models(self) -> dict[str, Model]:
        """name -> latest registered Model."""
        return {m.name: m for m in Model.list(self, latest=True)}

    def _experiment(self, name: str) -> Experiment:
        """The experiment ``name`` of this workspace (``Run.get`` makes a run's with it)."""
        return Experiment(self, name)


def _v1_name(
    path: PathLike | None,
    resource_group: str | None,
    workspace_name: str | None,
    subscription_id: str | None,
) -> tuple[str | None, dict[str, Any]]:
    """``Workspace(...)``'s workspace name in v1's spelling ``(subscription_id,
    resource_group, workspace_name)`` and the Azure-only arguments given with it; (None,
    {}) for a folder path or name in ``path``."""
    if workspace_name is None and resource_group is None and subscription_id is None:
        if path is None:
            raise ConfigError(
                "Workspace() needs a workspace folder path or a workspace name; "
                "Workspace.from_config() gives the project's (or the default) workspace"
            )
        return None, {}
    if workspace_name is None:
        raise ConfigError(
            "Workspace(subscription_id, resource_group, workspace_name) needs "
            "workspace_name; or open a folder with Workspace(path)"
        )
    if subscription_id is not None and path is not None:
        raise ConfigError("Workspace() got subscription_id twice (first positional and keyword)")
    ignored = {
        "subscription_id": subscription_id if path is None else path,
        "resource_group": resource_group,
    }
    return workspace_name, ignored


def _create_if_asked(
    root: Path, name: str | None, create: bool, given_name: str | None, group: str | int | None
) -> None:
    """Make the missing workspace at ``root`` if ``create``, else say how to."""
    if not create:
        if name is not None:
            raise WorkspaceNotFoundError(
                f"no workspace named {name!r} (looked in {root}); create it with "
                f"Workspace.create({name!r}) or `runner folder attach -w {name}`, or open a "
                "folder with Workspace(path)"
            )
        raise WorkspaceNotFoundError(
            f"no runner workspace at {root}; create one with Workspace.create({str(root)!r})"
            " or use Workspace.from_config() for the default workspace"
        )
    if root.exists() and not root.is_dir():
        raise ConfigError(f"cannot create a workspace at {root}: it is a file; pass a folder path")
    gid = access.resolve_group(group) if group is not None else None
    try:
        _initialise(root, given_name or name or root.name, access.Access(gid))
    except OSError as exc:
        raise StoreError(
            f"cannot create a workspace at {root}: {exc}",
            hint="check the path and its permissions",
        ) from exc
