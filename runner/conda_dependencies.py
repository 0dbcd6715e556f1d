"""CondaDependencies: the packages of an environment, as a conda environment file describes them.

Mirrors ``azureml.core.conda_dependencies.CondaDependencies``: the same constructor, ``create``,
``add_*``/``remove_*`` methods, properties, ``save``/``save_to_file`` and ``serialize_to_string``.
It is pure data: nothing here installs anything (``environments/`` does that).

Differences from azureml, on purpose:

- ``create()`` adds no package of its own (azureml adds ``azureml-defaults``): runner's in-run
  client is made available to every run by the runner itself. ``pin_sdk_version`` is accepted
  and has nothing to pin.
- The default channel is ``conda-forge`` (:data:`DEFAULT_CHANNEL`); add your own, for example
  a ``file://`` channel on an offline machine, with :meth:`CondaDependencies.add_channel`.
- The default Python is :data:`PYTHON_DEFAULT_VERSION`. Python must be pinned to one version
  (``python=3.11``): a range such as ``python>=3.9`` is refused, because an environment must
  build the same way every time. A build string on the python entry (``python=3.11.7=h1234_0``,
  as ``conda env export`` writes) is dropped.
- Comments in a loaded file are not kept when it is saved again; ``prefix:`` is dropped
  (it names a folder on the machine that exported the file).
- The package properties return tuples (copies), so that changing them fails loudly
  instead of silently doing nothing.

Reading YAML uses PyYAML, imported only when a file is read; writing it is done here by hand,
so that ``import runner`` stays standard-library only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.errors import ConfigError, NotFoundError, UserError

__all__ = [
    "CONDA_FILE_NAME",
    "DEFAULT_CHANNEL",
    "PYTHON_DEFAULT_VERSION",
    "CondaDependencies",
]

#: Python version of a new CondaDependencies (the same as the default docker image's).
PYTHON_DEFAULT_VERSION = "3.11"
#: The channel a new CondaDependencies starts with.
DEFAULT_CHANNEL = "conda-forge"
#: File name ``save_to_file`` uses when it is given none (inside ``.runner/``).
CONDA_FILE_NAME = "auto_conda_dependencies.yml"
_RUN_CONFIG_DIR = ".runner"
_DEFAULT_ENV_NAME = "project_environment"
_VALID_KEYS = ("name", "channels", "dependencies", "prefix", "variables")

JSONDict = dict[str, Any]

_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:[ab]\d+)?$")
# "python", "python=3.11", "python==3.11.7", "python 3.11", "python=3.11.*", "python=3.11.7=h1_0"
_PYTHON_NAME = re.compile(r"^python(?=$|[\s=<>!~\[])")
_PYTHON_PIN = re.compile(
    r"^python\s*(?:==?|\s)\s*(?P<v>\d+\.\d+(?:\.\d+)?(?:[ab]\d+)?)(?:\.\*)?(?:=\S+)?$"
)
_CONDA_NAME = re.compile(r"^(?:[^:\s]+::)?(?P<n>[A-Za-z0-9_][A-Za-z0-9._-]*)(?=$|[\s=<>!~\[])")
_PIP_NAME = re.compile(r"^(?P<n>[A-Za-z0-9][A-Za-z0-9._-]*)(?=$|[\s\[=<>!~;@(])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A YAML plain scalar that every YAML 1.1/1.2 reader reads back as this exact string.
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-+=<>!~*,/@:]*$")
# Words that some YAML readers turn into booleans or null.
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})
_SHORT_OPTIONS = {"-i": "--index-url", "-f": "--find-links", "-e": "--editable"}


def _check_text(value: object, what: str, example: str) -> str:
    """Return ``value`` stripped, or raise ConfigError if it is not one line of text."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{what} {value!r} is not a non-empty string; pass one such as {example!r}"
        )
    text = value.strip()
    if _CONTROL.search(text):
        raise ConfigError(f"{what} {value!r} contains a line break or control character")
    return text


def _check_package(spec: object, kind: str) -> str:
    example = "numpy=1.26" if kind == "conda" else "requests==2.31.0"
    text = _check_text(spec, f"{kind} package", example)
    if text.startswith("-"):
        hint = (
            "use set_pip_option() for pip options"
            if kind == "pip"
            else "conda packages are match specs such as 'numpy>=1.26'"
        )
        raise ConfigError(f"{kind} package {spec!r} looks like an option, not a package; {hint}")
    return text


def _check_python_version(version: object) -> str:
    if isinstance(version, float):
        raise ConfigError(
            f"python_version {version!r} is a number; pass it as a string such as '3.10' "
            "(as a float, 3.10 is 3.1)"
        )
    if not isinstance(version, str) or not _VERSION.match(version.strip()):
        raise ConfigError(
            f"python_version {version!r} is not a version; pass 'X.Y' or 'X.Y.Z' such as '3.11'"
        )
    return version.strip()


def _pip_key(spec: str) -> str:
    """The package a pip requirement names (PEP 503 normalised), or the spec itself for URLs."""
    if spec.endswith(".whl"):
        return re.sub(r"[-_.]+", "-", spec.rsplit("/", 1)[-1].split("-", 1)[0]).lower()
    match = _PIP_NAME.match(spec)
    if not match:
        return spec
    return re.sub(r"[-_.]+", "-", match.group("n")).lower()


def _conda_key(spec: str) -> str:
    match = _CONDA_NAME.match(spec)
    return match.group("n").lower() if match else spec


def _is_python(spec: str) -> bool:
    return bool(_PYTHON_NAME.match(spec))


def _python_version_of(spec: str, source: str) -> str | None:
    """The version a ``python...`` conda spec pins; None for a bare ``python``."""
    if spec == "python":
        return None
    match = _PYTHON_PIN.match(spec)
    if not match:
        raise ConfigError(
            f"{source}: python must be pinned to one version, got {spec!r}; "
            "write it as 'python=3.11' (or 'python=3.11.7')"
        )
    return match.group("v")


def _option_key(option: str) -> str:
    return option.split(None, 1)[0].split("=", 1)[0]


def _normalise_option(option: object) -> str:
    text = _check_text(option, "pip option", "--index-url https://pypi.example/simple")
    if not text.startswith("-"):
        raise ConfigError(
            f"pip option {option!r} does not start with '-'; use add_pip_package() for packages"
        )
    parts = re.split(r"\s*=\s*|\s+", text, maxsplit=1)
    name = _SHORT_OPTIONS.get(parts[0], parts[0])
    value = parts[1].strip() if len(parts) > 1 else ""
    return f"{name} {value}" if value else name


def _merge_option(options: list[str], option: str) -> None:
    """Add ``option`` to ``options``: ``--index-url`` replaces the one there, in place."""
    if _option_key(option) == "--index-url":
        for i, existing in enumerate(options):
            if _option_key(existing) == "--index-url":
                options[i] = option
                return
    if option not in options:
        options.append(option)


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when that is unambiguous, else JSON-style double quotes."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and not text.endswith(":"):
        return text
    # A JSON string is a valid YAML double-quoted scalar (same escapes). Characters YAML
    # would read as line breaks or refuse (NEL, U+2028, BOM, ...) are escaped as well.
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in quoted
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it.

    Readers never see half a file. Line endings are written as they are in ``text``.
    """
    # open(..., "x") rather than mkstemp: the file gets the usual umask mode, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _load_yaml(path: Path) -> object:
    """Parse a YAML file with PyYAML, imported here so that ``import runner`` does not need it."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML is a runner dependency
        raise UserError(
            f"reading {str(path)!r} needs PyYAML, which this Python lacks; "
            "pip install PyYAML, or build the CondaDependencies in code"
        ) from exc
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"conda environment file {str(path)!r} not found; pass the path to an existing "
            "YAML file such as 'environment.yml'"
        ) from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"conda environment file {str(path)!r} is not a UTF-8 text file ({exc})"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"conda environment file {str(path)!r} is not valid YAML: {exc}".replace("\n", " ")
        ) from exc


class CondaDependencies:
    """The conda and pip packages, channels and Python version of an environment.

    Args:
        conda_dependencies_file_path: a conda environment YAML file to start from. Without
            it the object holds ``python=PYTHON_DEFAULT_VERSION`` and the ``conda-forge``
            channel, and no packages.

    Raises:
        NotFoundError: the file does not exist.
        ConfigError: the file is not a conda environment specification.

    Example:
        >>> from runner.conda_dependencies import CondaDependencies
        >>> cd = CondaDependencies.create(conda_packages=["numpy"], pip_packages=["requests"])
        >>> cd.add_channel("file:///srv/conda-mirror")
        >>> cd.conda_packages, cd.pip_packages, cd.python_version
        (('numpy',), ('requests',), '3.11')
        >>> cd.save("environment.yml")  # doctest: +SKIP
    """

    def __init__(self, conda_dependencies_file_path: str | os.PathLike[str] | None = None) -> None:
        self._name = _DEFAULT_ENV_NAME
        self._channels: list[str] = []
        self._python_version: str | None = None
        self._conda: list[str] = []
        self._pip: list[str] = []
        self._pip_options: list[str] = []
        self._variables: dict[str, str] = {}
        if conda_dependencies_file_path is None:
            self._channels = [DEFAULT_CHANNEL]
            self._python_version = PYTHON_DEFAULT_VERSION
            return
        if not isinstance(conda_dependencies_file_path, (str, os.PathLike)):
            raise ConfigError(
                f"conda_dependencies_file_path {conda_dependencies_file_path!r} is not a path; "
                "pass the path to a conda YAML file such as 'environment.yml'"
            )
        path = Path(conda_dependencies_file_path)
        self._load(_load_yaml(path), f"conda environment file {str(path)!r}")

    # --- construction -------------------------------------------------------------------

    @staticmethod
    def create(
        pip_packages: Iterable[str] | None = None,
        conda_packages: Iterable[str] | None = None,
        python_version: str | None = None,
        pin_sdk_version: bool = True,
        pip_indexurl: str | None = None,
    ) -> CondaDependencies:
        """Return a CondaDependencies with these packages and nothing else.

        Args:
            pip_packages: pip requirement specs, such as ``"requests==2.31.0"``.
            conda_packages: conda match specs, such as ``"numpy=1.26"``.
            python_version: ``"X.Y"`` or ``"X.Y.Z"``; default :data:`PYTHON_DEFAULT_VERSION`.
            pin_sdk_version: accepted for compatibility; runner adds no SDK package to pin.
            pip_indexurl: recorded as the pip option ``--index-url URL``.

        Example:
            >>> cd = CondaDependencies.create(conda_packages=["numpy", "scikit-learn"])
            >>> cd.conda_packages
            ('numpy', 'scikit-learn')
        """
        del pin_sdk_version  # nothing to pin: runner adds no package of its own
        cd = CondaDependencies()
        cd.set_python_version(PYTHON_DEFAULT_VERSION if python_version is None else python_version)
        if pip_indexurl is not None:
            url = _check_text(pip_indexurl, "pip_indexurl", "https://pypi.example/simple")
            cd.set_pip_option(f"--index-url {url}")
        for spec in _check_list(pip_packages, "pip_packages"):
            cd.add_pip_package(spec)
        for spec in _check_list(conda_packages, "conda_packages"):
            cd.add_conda_package(spec)
        return cd

    @classmethod
    def from_dict(cls, data: object) -> CondaDependencies:
        """Build from the structure :meth:`as_dict` returns (a parsed conda YAML file)."""
        cd = cls()
        cd._load(data, "condaDependencies")
        return cd

    def _load(self, data: object, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source} is not a conda environment specification (a mapping with "
                f"'dependencies:' and 'channels:'), got {type(data).__name__}"
            )
        unknown = sorted(str(k) for k in data if k not in _VALID_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"a conda environment file has only {', '.join(_VALID_KEYS)}"
            )
        name = data.get("name")
        self._name = _DEFAULT_ENV_NAME if name is None else str(name)
        self._channels = []
        for channel in _check_list(data.get("channels"), f"{source}: channels"):
            self.add_channel(channel)
        self._python_version = None
        self._conda, self._pip, self._pip_options = [], [], []
        for item in _check_list(data.get("dependencies"), f"{source}: dependencies", any_item=True):
            if isinstance(item, dict):
                if set(item) != {"pip"}:
                    raise ConfigError(
                        f"{source}: dependency {item!r} is not a package; the only mapping "
                        "allowed in dependencies is 'pip:' with a list of pip requirements"
                    )
                more = _check_list(item["pip"], f"{source}: pip", any_item=True)
                self.set_pip_requirements([*self._pip_options, *self._pip, *more])
                continue
            if not isinstance(item, str):
                raise ConfigError(f"{source}: dependency {item!r} is not a package spec string")
            spec = _check_package(item, "conda")
            if _is_python(spec):
                self._python_version = _python_version_of(spec, source)
            elif spec not in self._conda:
                self._conda.append(spec)
        variables = data.get("variables") or {}
        if not isinstance(variables, dict):
            raise ConfigError(f"{source}: variables must be a mapping of NAME: value")
        self._variables = {}
        for key, value in variables.items():
            if not isinstance(key, str) or not key or isinstance(value, (dict, list)):
                raise ConfigError(f"{source}: variable {key!r}: {value!r} is not NAME: value")
            self._variables[key] = "" if value is None else str(value)

    # --- properties -----------------------------------------------------------------------

    @property
    def conda_channels(self) -> tuple[str, ...]:
        """The conda channels, highest priority first (a copy; use add_channel to change)."""
        return tuple(self._channels)

    @property
    def conda_packages(self) -> tuple[str, ...]:
        """The conda packages other than python (a copy; use add/remove_conda_package)."""
        return tuple(self._conda)

    @property
    def pip_packages(self) -> tuple[str, ...]:
        """The pip requirements (a copy; use add/remove_pip_package)."""
        return tuple(self._pip)

    @property
    def pip_options(self) -> tuple[str, ...]:
        """The pip options, such as ``--index-url URL`` (a copy; use set/remove_pip_option)."""
        return tuple(self._pip_options)

    @property
    def python_version(self) -> str | None:
        """The pinned Python version, or None when the file did not pin one."""
        return self._python_version

    def get_python_version(self) -> str | None:
        """Return :attr:`python_version` (the azureml method)."""
        return self._python_version

    # --- changes --------------------------------------------------------------------------

    def set_python_version(self, version: str) -> None:
        """Pin Python to ``version`` (``"X.Y"`` or ``"X.Y.Z"``)."""
        self._python_version = _check_python_version(version)

    def add_channel(self, channel: str) -> None:
        """Add a conda channel after the existing ones (a name, URL or ``file://`` path)."""
        text = _check_text(channel, "conda channel", "conda-forge")
        if any(c.isspace() for c in text):
            raise ConfigError(f"conda channel {channel!r} contains whitespace; pass one channel")
        if text not in self._channels:
            self._channels.append(text)

    def remove_channel(self, channel: str) -> None:
        """Remove a conda channel; no-op if it is not there."""
        if channel in self._channels:
            self._channels.remove(channel)

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda package spec; ``python=X.Y`` sets the Python version instead."""
        spec = _check_package(conda_package, "conda")
        if _is_python(spec):
            version = _python_version_of(spec, "add_conda_package")
            if version is not None:
                self._python_version = version
        elif spec not in self._conda:
            self._conda.append(spec)

    def remove_conda_package(self, conda_package: str) -> None:
        """Remove conda packages by exact spec or by name; no-op if there is none."""
        spec = _check_package(conda_package, "conda")
        if _is_python(spec):
            raise ConfigError(
                "python must not be removed from conda dependencies; "
                "use set_python_version() to change it"
            )
        key = _conda_key(spec)
        self._conda = [c for c in self._conda if c != spec and _conda_key(c) != key]

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement, replacing any earlier one for the same package."""
        spec = _check_package(pip_package, "pip")
        self.remove_pip_package(spec)
        self._pip.append(spec)

    def remove_pip_package(self, pip_package: str) -> None:
        """Remove the pip requirements for this package; no-op if there is none."""
        spec = _check_package(pip_package, "pip")
        key = _pip_key(spec)
        self._pip = [p for p in self._pip if p != spec and _pip_key(p) != key]

    def set_pip_option(self, pip_option: str) -> None:
        """Add a pip option such as ``--extra-index-url URL``.

        ``--index-url`` (also written ``-i``) has one value: setting it again replaces it.
        Other options are added unless the same one is already there.
        """
        _merge_option(self._pip_options, _normalise_option(pip_option))

    def set_pip_index_url(self, index_url: str) -> None:
        """Set the pip index: ``index_url`` is ``"--index-url URL"`` or just the URL."""
        text = _check_text(index_url, "index_url", "https://pypi.example/simple")
        self.set_pip_option(text if text.startswith("-") else f"--index-url {text}")

    def remove_pip_option(self, pip_option: str) -> None:
        """Remove every pip option with this name (``--extra-index-url``, say)."""
        key = _option_key(_normalise_option(pip_option))
        self._pip_options = [o for o in self._pip_options if _option_key(o) != key]

    def set_pip_requirements(self, pip_requirements: Iterable[str]) -> None:
        """Replace the whole pip section with these lines (options start with ``-``).

        Lines are kept as written, in order; blank lines and ``#`` comment lines are skipped.
        """
        options: list[str] = []
        packages: list[str] = []
        for line in _check_list(pip_requirements, "pip_requirements", any_item=True):
            if isinstance(line, str) and (not line.strip() or line.strip().startswith("#")):
                continue
            text = _check_text(line, "pip requirement", "requests==2.31.0")
            if text.startswith("-"):
                _merge_option(options, _normalise_option(text))
            else:
                packages.append(text)
        self._pip_options, self._pip = options, packages

    # --- output ---------------------------------------------------------------------------

    def as_dict(self) -> JSONDict:
        """The conda environment specification as plain JSON-safe data."""
        dependencies: list[Any] = []
        if self._python_version is not None:
            dependencies.append(f"python={self._python_version}")
        dependencies.extend(self._conda)
        if self._pip or self._pip_options:
            dependencies.append({"pip": [*self._pip_options, *self._pip]})
        data: JSONDict = {
            "name": self._name,
            "channels": list(self._channels),
            "dependencies": dependencies,
        }
        if self._variables:
            data["variables"] = dict(self._variables)
        return data

    def serialize_to_string(self) -> str:
        """The conda environment YAML file's text."""
        lines = [
            "# Conda environment specification, written by runner.",
            "# Format: https://docs.conda.io/projects/conda/en/latest/user-guide/"
            "tasks/manage-environments.html#create-env-file-manually",
            f"name: {_yaml_scalar(self._name)}",
        ]
        lines.append("channels:" if self._channels else "channels: []")
        lines.extend(f"  - {_yaml_scalar(c)}" for c in self._channels)
        data = self.as_dict()
        lines.append("dependencies:" if data["dependencies"] else "dependencies: []")
        for item in data["dependencies"]:
            if isinstance(item, dict):
                lines.append("  - pip:")
                lines.extend(f"      - {_yaml_scalar(p)}" for p in item["pip"])
            else:
                lines.append(f"  - {_yaml_scalar(item)}")
        if self._variables:
            lines.append("variables:")
            lines.extend(
                f"  {_yaml_scalar(k)}: {_yaml_scalar(v)}" for k, v in self._variables.items()
            )
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the conda environment YAML file to ``path``; return the path.

        Raises:
            ConfigError: no path, a path that is a folder, or a folder that does not exist.
        """
        if path is None:
            raise ConfigError(
                "CondaDependencies.save() needs a file path; pass one such as 'environment.yml'"
            )
        target = Path(path)
        if target.is_dir():
            raise ConfigError(
                f"cannot save the conda specification to {str(target)!r}: it is a folder; "
                "pass a file path such as 'environment.yml'"
            )
        parent = target.parent
        if not parent.is_dir():
            raise ConfigError(
                f"cannot save the conda specification to {str(target)!r}: folder "
                f"{str(parent)!r} does not exist; create it first"
            )
        write_text_atomic(target, self.serialize_to_string())
        return str(path)

    def save_to_file(
        self, base_directory: str | os.PathLike[str], conda_file_path: str | None = None
    ) -> str:
        """Write the YAML file under ``base_directory``; return its path relative to it.

        Without ``conda_file_path`` the file is ``.runner/auto_conda_dependencies.yml``.
        """
        base = Path(base_directory)
        if not base.is_dir():
            raise ConfigError(
                f"base_directory {str(base_directory)!r} is not an existing folder; create it first"
            )
        relative = conda_file_path or f"{_RUN_CONFIG_DIR}/{CONDA_FILE_NAME}"
        relative = relative.replace("\\", "/")
        target = base / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        self.save(target)
        return relative

    # --- comparison -----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CondaDependencies):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"CondaDependencies(python_version={self._python_version!r}, "
            f"channels={self._channels!r}, conda_packages={self._conda!r}, "
            f"pip_packages={self._pip!r}, pip_options={self._pip_options!r})"
        )


def _check_list(value: object, what: str, *, any_item: bool = False) -> list[Any]:
    """``value`` as a list (None is empty); items must be strings unless ``any_item``."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(
            f"{what} {value!r} is not a list; pass a list of strings such as ['numpy']"
        )
    items = list(value)
    if not any_item:
        for item in items:
            if not isinstance(item, str):
                raise ConfigError(f"{what}: {item!r} is not a string")
    return items
