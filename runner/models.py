"""The model registry: named, versioned sets of files from runs or local paths."""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.artifacts import check_artifact_name
from runner.errors import ConfigError, ConflictError, ModelNotFoundError, NotFoundError
from runner.run_tags import parse_filter

if TYPE_CHECKING:
    from runner.run import Run
    from runner.workspace import Workspace

_COLS = (
    "name, version, run_id, experiment_name, model_path, tags, properties, framework, "
    "framework_version, description, created_utc"
)


def _check_model_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name or ":" in name:
        raise ConfigError(
            f"model name {name!r} is not valid; use a non-empty name without '/' or ':'"
        )
    return name


def _str_dict(d: dict[str, Any] | None, what: str) -> dict[str, str | None]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"model {what} must be a dict of str -> str, not {type(d).__name__}")
    return {str(k): None if v is None else str(v) for k, v in d.items()}


class Model:
    """A registered model version.

    Example:
        >>> model = run.register_model("mnist", "outputs/model.pkl")
        >>> Model(ws, "mnist").version
        1
        >>> model.download("/tmp/m")
    """

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: Any = None,
        properties: Any = None,
        version: int | None = None,
        run_id: str | None = None,
        _row: tuple[Any, ...] | None = None,
    ) -> None:
        self.workspace = workspace
        if _row is None:
            if id is not None:
                name, _, v = id.partition(":")
                version = int(v) if v else version
            if name is None:
                raise ConfigError("Model(ws, name) needs a name or an id 'name:version'")
            found = _select(
                workspace, name=name, version=version, run_id=run_id, latest=version is None
            )
            if not found:
                raise ModelNotFoundError(
                    f"no model {name!r}"
                    + (f" version {version}" if version else "")
                    + f" in workspace {workspace.name}; register one with run.register_model()"
                    " or Model.register()"
                )
            _row = found[0]
        (
            self.name,
            self.version,
            self.run_id,
            self.experiment_name,
            self.model_path,
            tags_json,
            props_json,
            self.model_framework,
            self.model_framework_version,
            self.description,
            self.created_utc,
        ) = _row
        self.tags: dict[str, str | None] = json.loads(tags_json)
        self.properties: dict[str, str | None] = json.loads(props_json)

    @property
    def id(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def url(self) -> str:
        """An identifier of this model version: ``runner://WORKSPACE/models/NAME/versions/N``.

        Not a place to read files from (v1's is an ``aml://`` URL too): use
        :meth:`download` or :meth:`get_model_path` for the files.
        """
        return f"runner://{self.workspace.name}/models/{self.name}/versions/{self.version}"

    def __repr__(self) -> str:
        return f"Model(workspace={self.workspace.name!r}, name={self.name!r}, id={self.id!r}, version={self.version})"

    def get_file_names(self) -> builtins.list[str]:
        """The model's files, relative to the model root."""
        rows = self.workspace.store.query(
            "SELECT path FROM model_files WHERE name = ? AND version = ? ORDER BY path",
            (self.name, self.version),
        )
        return [r[0] for r in rows]

    def download(self, target_dir: str | os.PathLike[str] = ".", exist_ok: bool = False) -> str:
        """Write the model's files under ``target_dir``; returns the model's path there."""
        rows = self.workspace.store.query(
            "SELECT path, digest FROM model_files WHERE name = ? AND version = ?",
            (self.name, self.version),
        )
        target = Path(target_dir)
        for rel, digest in rows:
            dest = target / rel
            if dest.exists() and not exist_ok:
                raise ConflictError(f"{dest} exists; pass exist_ok=True to overwrite it")
            self.workspace.blobs.copy_to(
                digest, dest, f"file {rel!r} of model {self.name}:{self.version}"
            )
        base = (self.model_path or "").rstrip("/").split("/")[-1]
        return str(target / base) if base else str(target)

    def add_tags(self, tags: dict[str, Any]) -> None:
        """Add or change tags of this model version."""
        self.tags.update(_str_dict(tags, "tags"))
        with self.workspace.store.write() as conn:
            conn.execute(
                "UPDATE models SET tags = ? WHERE name = ? AND version = ?",
                (json.dumps(self.tags), self.name, self.version),
            )

    def add_properties(self, properties: dict[str, Any]) -> None:
        """Add properties; an existing key cannot change its value."""
        new = _str_dict(properties, "properties")
        for k, v in new.items():
            if k in self.properties and self.properties[k] != v:
                raise ConflictError(f"model property {k!r} is already {self.properties[k]!r}")
        self.properties.update(new)
        with self.workspace.store.write() as conn:
            conn.execute(
                "UPDATE models SET properties = ? WHERE name = ? AND version = ?",
                (json.dumps(self.properties), self.name, self.version),
            )

    @staticmethod
    def get_model_path(
        model_name: str, version: int | None = None, _workspace: Workspace | None = None
    ) -> str:
        """The local path of a registered model's file or folder, as v1 finds it.

        With ``_workspace``, the model (the latest version unless ``version`` is given) is
        downloaded into v1's cache folder ``./azureml-models/NAME/VERSION/`` (kept if there
        already) and the path of its file or folder there is returned. Without it, the
        cache is looked in (``version``, else its highest version), then ``./NAME``.

        Example:
            >>> path = Model.get_model_path("mnist", _workspace=ws)
            >>> model = joblib.load(path)

        Raises:
            ModelNotFoundError: (v1: ModelNotFoundException) no such model or version, or
                without ``_workspace`` nothing found locally.
        """
        name = _check_model_name(model_name)
        cache = Path(_MODEL_CACHE) / name
        if _workspace is not None:
            model = Model(_workspace, name, version=version)
            return model.download(cache / str(model.version), exist_ok=True)
        versions = [version] if version is not None else _cached_versions(cache)
        for v in versions:
            found = _single_entry(cache / str(v))
            if found is not None:
                return found
        if version is None and Path(name).exists():
            return name
        where = f"{cache / str(version)}" if version is not None else f"{cache} or ./{name}"
        raise ModelNotFoundError(
            f"model {name!r}"
            + (f" version {version}" if version is not None else "")
            + f" is not in {where}; pass _workspace=ws to fetch it from the workspace's registry"
        )

    @staticmethod
    def list(
        workspace: Workspace,
        name: str | None = None,
        tags: Any = None,
        properties: Any = None,
        run_id: str | None = None,
        latest: bool = False,
        **kwargs: Any,
    ) -> builtins.list[Model]:
        """Registered models, newest version first, filtered by name, tags and properties."""
        tag_pairs, tag_keys = parse_filter(tags, "tags")
        prop_pairs, prop_keys = parse_filter(properties, "properties")
        models = [
            Model(workspace, _row=r)
            for r in _select(workspace, name=name, run_id=run_id, latest=latest)
        ]

        def keep(m: Model) -> bool:
            for have, pairs, keys in (
                (m.tags, tag_pairs, tag_keys),
                (m.properties, prop_pairs, prop_keys),
            ):
                if any(k not in have for k in keys):
                    return False
                if any(k not in have or have[k] != v for k, v in pairs.items()):
                    return False
            return True

        return [m for m in models if keep(m)]

    @staticmethod
    def register(
        workspace: Workspace,
        model_path: str | os.PathLike[str],
        model_name: str,
        tags: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        description: str | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        **kwargs: Any,
    ) -> Model:
        """Register a local file or folder as a new version of ``model_name``."""
        src = Path(os.fspath(model_path))
        if not src.exists():
            raise NotFoundError(f"Model.register: {src} does not exist")
        files: list[tuple[str, str, int]] = []
        if src.is_file():
            digest, size = workspace.blobs.put_file(src)
            files.append((src.name, digest, size))
        else:
            for p in sorted(src.rglob("*")):
                if p.is_file():
                    digest, size = workspace.blobs.put_file(p)
                    files.append((f"{src.name}/{p.relative_to(src).as_posix()}", digest, size))
        return _insert(
            workspace,
            model_name,
            files,
            run=None,
            model_path=src.name,
            tags=tags,
            properties=properties,
            framework=model_framework,
            framework_version=model_framework_version,
            description=description,
        )


#: v1's local model cache, relative to the current folder.
_MODEL_CACHE = "azureml-models"


def _cached_versions(cache: Path) -> builtins.list[int]:
    """The version folders of a model in the cache, highest first."""
    try:
        names = [p.name for p in cache.iterdir() if p.is_dir() and p.name.isdigit()]
    except OSError:
        return []
    return sorted((int(n) for n in names), reverse=True)


def _single_entry(folder: Path) -> str | None:
    """The path of the one file or folder in ``folder`` (v1 returns that), the folder when
    it holds several, or None when it is missing or empty."""
    try:
        entries = builtins.list(folder.iterdir())
    except OSError:
        return None
    if not entries:
        return None
    return str(entries[0]) if len(entries) == 1 else str(folder)


def register_from_run(
    run: Run,
    model_name: str,
    model_path: str,
    **meta: Any,
) -> Model:
    """Register the run's stored file or folder ``model_path`` as a model version."""
    path = check_artifact_name(model_path, "model_path")
    files = run.experiment.workspace.store.list_files(run.id, prefix=path)
    if not files:
        raise NotFoundError(
            f"run {run.id} has no file or folder {path!r} to register; its files: "
            f"{run.get_file_names()[:10]}"
        )
    base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    rel = [(n[len(base) :], d, s) for n, d, s in files]
    return _insert(run._workspace, model_name, rel, run=run, model_path=path, **meta)


def _insert(
    ws: Workspace,
    model_name: str,
    files: list[tuple[str, str, int]],
    *,
    run: Run | None,
    model_path: str,
    tags: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    framework: str | None = None,
    framework_version: str | None = None,
    description: str | None = None,
) -> Model:
    name = _check_model_name(model_name)
    row = {
        "name": name,
        "run_id": run.id if run else None,
        "experiment_name": run.experiment.name if run else None,
        "model_path": model_path,
        "tags": json.dumps(_str_dict(tags, "tags")),
        "properties": json.dumps(_str_dict(properties, "properties")),
        "framework": framework,
        "framework_version": framework_version,
        "description": description,
        "created_utc": time.time(),
    }
    with ws.store.write() as conn:
        version = insert_model(conn, row, files)
        # On a host, the workspace that submitted the run registers it too, numbering
        # it among its own versions (runner.journal).
        ws.store.journal_change(
            {"e": "model", "id": row["run_id"], "model": row, "files": [list(f) for f in files]},
            blobs=[d for _, d, _ in files],
        )
    return Model(ws, name, version=version)


def insert_model(
    conn: sqlite3.Connection, row: dict[str, Any], files: Sequence[Sequence[Any]]
) -> int:
    """Record a new version of the model ``row["name"]`` (in the caller's transaction),
    numbered after the highest one recorded; returns its version.

    ``row`` holds the columns of ``models`` but ``version``; ``files`` are (path relative
    to the model root, digest, size).
    """
    name = row["name"]
    version = int(
        conn.execute(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?", (name,)
        ).fetchone()[0]
    )
    conn.execute(
        f"INSERT INTO models({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            name,
            version,
            row.get("run_id"),
            row.get("experiment_name"),
            row.get("model_path"),
            row.get("tags") or "{}",
            row.get("properties") or "{}",
            row.get("framework"),
            row.get("framework_version"),
            row.get("description"),
            row.get("created_utc"),
        ),
    )
    conn.executemany(
        "INSERT INTO model_files(name, version, path, digest, size) VALUES (?,?,?,?,?)",
        [(name, version, f, d, s) for f, d, s in files],
    )
    return version


def _select(
    ws: Workspace,
    *,
    name: str | None = None,
    version: int | None = None,
    run_id: str | None = None,
    latest: bool = False,
) -> list[tuple[Any, ...]]:
    where: list[str] = []
    params: list[object] = []
    if name is not None:
        where.append("name = ?")
        params.append(name)
    if version is not None:
        where.append("version = ?")
        params.append(version)
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    sql = f"SELECT {_COLS} FROM models"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY name, version DESC"
    rows = ws.store.query(sql, params)
    if latest:
        seen, kept = set(), []
        for r in rows:
            if r[0] not in seen:
                seen.add(r[0])
                kept.append(r)
        rows = kept
    return [tuple(r) for r in rows]
