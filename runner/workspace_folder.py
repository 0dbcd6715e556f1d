"""An open workspace folder: its store, blobs, keyvault and environment registry, and how
the folder is made and checked on disk.

``WorkspaceFolder`` is the part of ``Workspace`` that the modules below runner.workspace
may know (``Experiment`` checks it is given one); ``Workspace`` adds opening, creating,
and the registries of experiments, models and compute targets. Standard library only.

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
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import access
from runner.errors import ConfigError, NotFoundError, StoreError
from runner.keyvault import Keyvault
from runner.workspace_paths import mlflow_tracking_uri

if TYPE_CHECKING:
    from runner.artifacts import BlobStore
    from runner.environment import Environment
    from runner.store import Store

_FORMAT = 1
_DB_FILE = "runner.db"
#: workspace.json key: the database was made (a missing or empty one is then an error).
_DB_FLAG = "database"
#: ``ws.subscription_id``, ``ws.resource_group`` and ``ws.location``: there is no cloud.
LOCAL = "local"


class WorkspaceFolder:
    """An open workspace folder (the base of ``Workspace``, which opens it)."""

    #: the workspace folder (absolute) and the workspace's name
    path: Path
    name: str
    #: who may use the workspace, and the modes of its files (runner.access)
    _access: access.Access
    _store: Store
    _blobs: BlobStore

    @property
    def store(self) -> Store:
        """The run history (experiments, runs, metrics, tags, files): one SQLite database
        per workspace. For runner's own modules and target plugins; scripts use Run."""
        return self._store

    @property
    def blobs(self) -> BlobStore:
        """The content-addressed store of the workspace's files (snapshots, outputs)."""
        return self._blobs

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
    # runner.environment is imported in each method: it would add a fifth to what opening
    # a workspace costs a training script (Run.get_context() opens one).

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
        return isinstance(other, WorkspaceFolder) and other.path == self.path

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
