"""Workspace: a folder that holds the run history, artifacts and configuration.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from runner import access
from runner.artifacts import BlobStore
from runner.errors import ConfigError, ConflictError, NotFoundError, StoreError
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
#: workspace.json key: the database was made (a missing or empty one is then an error).
_DB_FLAG = "database"
_CONFIG_DIR = ".runner"
_CONFIG_FILE = "config.json"

PathLike = Union[str, "os.PathLike[str]"]


def default_workspace_path() -> Path:
    """``$RUNNER_WORKSPACE``, else ``~/.runner/workspace``."""
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".runner" / "workspace"


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
        path: PathLike,
        *,
        _create: bool = False,
        _name: str | None = None,
        _shared_group: str | int | None = None,
    ):
        root = Path(path).expanduser().resolve()
        meta = root / "workspace.json"
        if not meta.exists():
            if not _create:
                raise NotFoundError(
                    f"no runner workspace at {root}; create one with Workspace.create({str(root)!r})"
                    " or use Workspace.from_config() for the default workspace"
                )
            if root.exists() and not root.is_dir():
                raise ConfigError(
                    f"cannot create a workspace at {root}: it is a file; pass a folder path"
                )
            gid = access.resolve_group(_shared_group) if _shared_group is not None else None
            try:
                _initialise(root, _name or root.name, access.Access(gid))
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
    def create(cls, name: PathLike, exist_ok: bool = False, **kwargs: Any) -> Workspace:
        """Create a workspace folder at ``name`` (a path) and return it.

        Azure-only arguments (subscription_id, resource_group, location, ...) are
        accepted and ignored, so v1 code keeps working.

        The workspace is private to its owner (folders 0700, files 0600). Pass
        ``shared_group="team"`` (a group name or gid) to share it with that group's
        members and nobody else (runner.access).
        """
        root = Path(name).expanduser().resolve()
        if (root / "workspace.json").exists() and not exist_ok:
            raise ConflictError(
                f"a workspace already exists at {root}; open it with Workspace({str(root)!r}) "
                "or pass exist_ok=True"
            )
        return cls(
            root,
            _create=True,
            _name=kwargs.get("workspace_name") or root.name,
            _shared_group=kwargs.get("shared_group"),
        )

    @classmethod
    def from_config(
        cls, path: PathLike | None = None, auth: Any = None, _file_name: str | None = None
    ) -> Workspace:
        """Find ``.runner/config.json`` (or ``config.json``) in ``path`` or a folder above.

        With no config found this is the default workspace (``$RUNNER_WORKSPACE``, else
        ``~/.runner/workspace``), created if needed.
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
        return cls(default_workspace_path(), _create=True, _name="default")

    @classmethod
    def _from_config_data(cls, config_file: Path, data: dict[str, Any]) -> Workspace:
        raw = data.get("workspace_path")
        if raw:
            root = (config_file.parent / str(raw)).expanduser()
            return cls(root, _create=True, _name=data.get("workspace_name"))
        return cls(default_workspace_path(), _create=True, _name="default")

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

    def get_default_keyvault(self) -> Keyvault:
        """The workspace's secret store (a 0600 file inside the workspace, 0660 shared)."""
        return Keyvault(self.path / "keyvault.json", self._access.file_mode)

    def get_details(self) -> dict[str, Any]:
        """A small description of the workspace."""
        return {"name": self.name, "path": str(self.path), "id": str(self.path)}

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


def configured_workspace_path(start: Path | None = None) -> Path:
    """The folder ``Workspace.from_config()`` would open from ``start``, without opening it."""
    found = _find_config((start or Path.cwd()).resolve())
    if found is not None and found[1].get("workspace_path"):
        return (found[0].parent / str(found[1]["workspace_path"])).expanduser().resolve()
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
