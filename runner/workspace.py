"""Workspace: a folder that holds the run history, artifacts and configuration.

A workspace is opened by its folder path, or by a v1 workspace *name*: a name of letters,
digits, '-' and '_' that is not a folder in the current directory. ``default`` is the
default workspace (``$RUNNER_WORKSPACE``, else ``~/.runner/workspace``); any other name
is the folder ``~/.runner/workspaces/NAME``. So v1's ``Workspace.get("myws",
subscription_id=..., resource_group=...)``, ``Workspace(subscription_id, resource_group,
workspace_name)`` and ``Workspace.create(name, ..., exist_ok=True)`` work unchanged; the
Azure-only arguments are accepted and ignored (a RunnerWarning says so once per process),
and ``ws.subscription_id``, ``ws.resource_group`` and ``ws.location`` are ``"local"``.

Layout of a workspace folder::

    workspace.json     name and format version
    runner.db          the SQLite run history (see runner.store)
    blobs/             content-addressed files (uploads, outputs, logs, snapshots)
    runs/RUN_ID/       working files of submitted runs (live logs, control files)
    keyvault.json      secrets, mode 0600
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from runner import access
from runner.artifacts import BlobStore
from runner.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    RunnerWarning,
    StoreError,
    WorkspaceNotFoundError,
)
from runner.keyvault import Keyvault
from runner.store import Store

if TYPE_CHECKING:
    from runner.environment import Environment
    from runner.experiment import Experiment
    from runner.models import Model

#: Environment variable naming the default workspace folder.
WORKSPACE_ENV = "RUNNER_WORKSPACE"
_FORMAT = 1
_DB_FILE = "runner.db"
#: The URI scheme of runner's MLflow tracking store, and MLflow's plugin entry points for it
#: (the same as pyproject.toml's; tests check they agree).
MLFLOW_SCHEME = "runner"
MLFLOW_ENTRY_POINTS = {
    "mlflow.tracking_store": "runner.mlflow_store:RunnerTrackingStore",
    "mlflow.artifact_repository": "runner.mlflow_store:RunnerArtifactRepository",
}
#: workspace.json key: the database was made (a missing or empty one is then an error).
_DB_FLAG = "database"
_CONFIG_DIR = ".runner"
_CONFIG_FILE = "config.json"

PathLike = Union[str, "os.PathLike[str]"]


#: The name that means the default workspace.
DEFAULT_WORKSPACE_NAME = "default"
#: ``ws.subscription_id``, ``ws.resource_group`` and ``ws.location``: there is no cloud.
LOCAL = "local"
_WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")

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


class Workspace:
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
        name: str | None
        if workspace_name is not None or resource_group is not None or subscription_id is not None:
            if workspace_name is None:
                raise ConfigError(
                    "Workspace(subscription_id, resource_group, workspace_name) needs "
                    "workspace_name; or open a folder with Workspace(path)"
                )
            if subscription_id is not None and path is not None:
                raise ConfigError(
                    "Workspace() got subscription_id twice (first positional and keyword)"
                )
            _say_ignored(
                {
                    "subscription_id": subscription_id if path is None else path,
                    "resource_group": resource_group,
                    "auth": auth,
                    **v1_kwargs,
                }
            )
            name = workspace_name
            root = named_workspace_path(workspace_name)
        elif path is None:
            raise ConfigError(
                "Workspace() needs a workspace folder path or a workspace name; "
                "Workspace.from_config() gives the project's (or the default) workspace"
            )
        else:
            _say_ignored({"auth": auth, **v1_kwargs})
            root, name = resolve_workspace(path)
        root = root.expanduser().resolve()
        meta = root / "workspace.json"
        if not meta.exists():
            if not _create:
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
                raise ConfigError(
                    f"cannot create a workspace at {root}: it is a file; pass a folder path"
                )
            gid = access.resolve_group(_shared_group) if _shared_group is not None else None
            try:
                _initialise(root, _name or name or root.name, access.Access(gid))
            except OSError as exc:
                raise StoreError(
                    f"cannot create a workspace at {root}: {exc}",
                    hint="check the path and its permissions",
                ) from exc
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
        from runner.experiment import Experiment

        return {name: Experiment(self, name) for name in self._store.experiment_names()}

    @property
    def compute_targets(self) -> dict[str, Any]:
        """name -> compute target; ``local`` always exists."""
        from runner.compute import list_targets

        return list_targets(self)

    @property
    def environments(self) -> dict[str, Environment]:
        """name -> latest registered Environment."""
        return self._list_environments()

    @property
    def models(self) -> dict[str, Model]:
        """name -> latest registered Model."""
        from runner.models import Model

        return {m.name: m for m in Model.list(self, latest=True)}

    def run_dir(self, run_id: str) -> Path:
        """A run's folder of working files on this machine (live logs, control files)."""
        return self.path / "runs" / run_id

    def get_mlflow_tracking_uri(self) -> str:
        """The URI that points MLflow's client at this workspace: ``runner:///abs/path``.

        ``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())``, then ``mlflow.start_run()``
        and ``mlflow.log_metric(...)`` record into runner's history (inside a submitted run:
        into that run, whose environment also has ``MLFLOW_TRACKING_URI`` set). MLflow finds
        runner's store through its plugin entry point; this call itself needs no mlflow.
        """
        return mlflow_tracking_uri(self.path)

    def get_default_keyvault(self) -> Keyvault:
        """The workspace's secret store (a 0600 file inside the workspace, 0660 shared)."""
        return Keyvault(self.path / "keyvault.json", self._access.file_mode)

    @property
    def location(self) -> str:
        """``"local"``: a runner workspace is a folder on this machine (v1: an Azure region)."""
        return LOCAL

    @property
    def resource_group(self) -> str:
        """``"local"`` (v1: the Azure resource group)."""
        return LOCAL

    @property
    def subscription_id(self) -> str:
        """``"local"`` (v1: the Azure subscription id)."""
        return LOCAL

    def get_details(self) -> dict[str, Any]:
        """A small description of the workspace, with v1's keys where they mean something."""
        return {
            "name": self.name,
            "path": str(self.path),
            "id": str(self.path),
            "location": self.location,
            "resourceGroup": self.resource_group,
            "subscriptionId": self.subscription_id,
        }

    # -- environment registry (used by runner.environment.Environment) ---------------

    def _register_environment(self, env: Environment) -> Environment:
        from runner.environment import Environment

        definition = env.to_dict()
        spec_hash = env.spec_hash()
        with self._store.write() as conn:
            row = conn.execute(
                "SELECT version, definition FROM environments WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (env.name,),
            ).fetchone()
            if row is not None and _same_definition(json.loads(row[1]), definition):
                version = int(row[0])  # unchanged: registering again keeps the version
            else:
                version = (int(row[0]) if row else 0) + 1
                definition["version"] = str(version)
                conn.execute(
                    "INSERT INTO environments(name, version, definition, spec_hash, created_utc) "
                    "VALUES (?,?,?,?,?)",
                    (env.name, version, json.dumps(definition), spec_hash, time.time()),
                )
        return Environment.from_dict({**definition, "version": str(version)})

    def _get_environment(self, name: str, version: str | None = None) -> Environment:
        from runner.environment import Environment

        if version is None:
            rows = self._store.query(
                "SELECT definition, version FROM environments WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            if not str(version).isdigit():
                raise ConfigError(
                    f"environment version {version!r} is not a version number; pass e.g. '1'"
                )
            rows = self._store.query(
                "SELECT definition, version FROM environments WHERE name = ? AND version = ?",
                (name, int(version)),
            )
        if not rows:
            known = sorted(self._list_environments())
            raise NotFoundError(
                f"no environment {name!r}"
                + (f" version {version}" if version is not None else "")
                + f" in workspace {self.name}; registered: {known or 'none'}; "
                "register one with env.register(ws)"
            )
        return Environment.from_dict({**json.loads(rows[0][0]), "version": str(rows[0][1])})

    def _list_environments(self) -> dict[str, Environment]:
        from runner.environment import Environment

        rows = self._store.query(
            "SELECT e.definition, e.version FROM environments e JOIN ("
            "SELECT name, MAX(version) AS v FROM environments GROUP BY name) m "
            "ON e.name = m.name AND e.version = m.v ORDER BY e.name"
        )
        envs = [Environment.from_dict({**json.loads(d), "version": str(v)}) for d, v in rows]
        return {e.name: e for e in envs}

    def _build_environment(self, env: Environment) -> Any:
        from environments.selection import builder_for

        return builder_for(env).prepare(env, self.path / "environment-builds.log")

    def __repr__(self) -> str:
        return f"Workspace.create(name={self.name!r}, path={str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


def _same_definition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("version",)
    return {k: v for k, v in a.items() if k not in strip} == {
        k: v for k, v in b.items() if k not in strip
    }


def _check_database(root: Path, db: Path, info: dict[str, Any]) -> None:
    """Refuse a workspace whose database is gone or empty while it held data.

    One stat on the usual path. SQLite would take a missing or 0-byte file for a new
    database and the workspace would look empty, every run and model forgotten.
    """
    try:
        if db.stat().st_size > 0:
            return
        state = "empty (0 bytes)"
    except FileNotFoundError:
        state = "missing"
    except OSError as exc:
        raise StoreError(
            f"cannot read the workspace database {db}: {exc.strerror}",
            hint="check the workspace folder's owner and permissions",
        ) from exc
    if info.get(_DB_FLAG):
        why = "workspace.json records that it held the run history"
    else:  # a workspace from before the flag: what else is in the folder tells
        held = [sub for sub in ("runs", "blobs") if _has_entries(root / sub)]
        if not held:
            return  # a new workspace: the database is made now
        why = f"the workspace holds {' and '.join(held)}"
    raise StoreError(
        f"the workspace database {db} is {state}, but {why}; opening it would show an empty "
        "workspace and forget every run",
        hint=f"restore {_DB_FILE} from a backup into {root}, or move the workspace aside "
        "and create a new one; 'runner workspace check' shows what is left",
    )


def _record_database(meta: Path, info: dict[str, Any], policy: access.Access) -> None:
    """Note in workspace.json that the database exists (once per workspace).

    Written after the database file is made, so a racing opener that reads the flag
    always finds the file.
    """
    data = {**info, _DB_FLAG: True}
    # (A read-only workspace stays without it: the check then looks at runs/ and blobs/.)
    with contextlib.suppress(OSError):
        access.write_private(meta, json.dumps(data, indent=2), policy)
    info[_DB_FLAG] = True


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(True for _ in it)
    except OSError:
        return False


def _initialise(root: Path, name: str, policy: access.Access) -> None:
    """Create the workspace folder atomically enough for racing first users."""
    root.mkdir(parents=True, exist_ok=True)
    access.fix_dir(root, policy)
    for sub in ("blobs", "runs"):
        access.make_dirs(root / sub, policy)
    meta = root / "workspace.json"
    if meta.exists():
        return
    # The database file is made here, with the workspace's mode: SQLite gives its WAL and
    # shared-memory files the mode of the database file.
    os.close(access.create_file(root / "runner.db", policy))
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".workspace-")
    data: dict[str, Any] = {"name": name, "format": _FORMAT, "created_utc": time.time()}
    if policy.group is not None:
        data["shared_gid"] = policy.group
        os.fchown(fd, -1, policy.group)
    os.fchmod(fd, policy.file_mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    try:
        os.link(tmp, meta)  # fails if another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _keep_private(root: Path, policy: access.Access) -> None:
    """Take back what the workspace folder gives away beyond its policy.

    One stat per open. A workspace made before runner kept them private (0755) becomes
    unreachable to others at once; ``runner workspace access`` fixes every file inside.
    """
    try:
        st = root.stat()
        if st.st_mode & 0o7777 != policy.dir_mode and st.st_uid == os.getuid():
            access.fix_dir(root, policy)
    except OSError:
        pass  # (read-only file system): nothing we can change


def mlflow_tracking_uri(path: Path) -> str:
    """``runner:///abs/path`` for the workspace folder ``path`` (percent-quoted)."""
    from urllib.parse import quote

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
