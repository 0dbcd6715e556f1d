"""Checks of the values an Environment is made of, and the readers of the files it is made
from (pip requirements with their ``-r`` includes, Dockerfiles).

Imported by the in-run client (through :mod:`runner.environment`): standard library only,
and it must import on Python 3.9.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.errors import ConfigError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_DOCKERFILE_START = re.compile(r"^\s*FROM\s", re.IGNORECASE)
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule: '#' at the start or after whitespace


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"environment name {name!r} is not valid; use up to 255 letters, digits, '.', '_' "
            "and '-', starting with a letter, digit or '_', such as 'my-env'"
        )
    return name


def _check_version(version: object) -> str | None:
    if version is None:
        return None
    if isinstance(version, int) and not isinstance(version, bool):
        return str(version)
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f"environment version {version!r} is not valid; pass a string like '1'")
    return version


def _check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not True or False")
    return value


def check_env_vars(value: object, what: str = "environment_variables") -> dict[str, str]:
    """``value`` if it is a dict of variable names (no '=', no NUL, not empty) to str values
    without NUL; else ConfigError."""
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {value!r} is not a dict; pass {{'NAME': 'value'}}")
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise ConfigError(
                f"{what}: {key!r} is not a variable name (names are not empty and hold no '=' "
                "or NUL); use a name such as 'MY_VAR'"
            )
        if isinstance(item, str) and "\x00" in item:
            raise ConfigError(
                f"{what}[{key!r}] = {item!r} holds a NUL character, which no environment "
                "variable can; remove it"
            )
        if not isinstance(item, str):
            raise ConfigError(
                f"{what}[{key!r}] = {item!r} is not a string; environment variables are "
                f"strings, so pass str({item!r})"
            )
    return value


def _check_str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} {value!r} is not a list of strings; pass ['--flag', 'value']")
    if any("\x00" in v for v in value):
        raise ConfigError(f"{what} {value!r} holds a NUL character; remove it")
    return list(value)


def _read_text(path: Path, what: str) -> str:
    """A text file's content, line endings kept as they are."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"{what} {str(path)!r} not found; pass the path to an existing file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8
        raise ConfigError(f"{what} {str(path)!r} cannot be read as UTF-8 text ({exc})") from exc


def _dockerfile_text(value: object, what: str) -> str:
    """A Dockerfile's text, from its text or the path to it.

    An existing file is read; otherwise a string with a line break, or one that starts with
    ``FROM``, is the text itself; anything else is a path that does not exist.
    """
    if isinstance(value, os.PathLike):
        return _read_text(Path(value), what)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} {value!r} is neither a Dockerfile's text nor a path to one")
    if "\n" not in value and os.path.isfile(value):
        return _read_text(Path(value), what)
    if "\n" in value or _DOCKERFILE_START.match(value):
        return value
    raise ConfigError(
        f"{what} {value!r} not found: there is no such file, and it is not Dockerfile text "
        "(which has line breaks or starts with FROM); pass the path to a Dockerfile or its text"
    )


def _split_option(line: str) -> tuple[str, str]:
    """``"-i URL"``, ``"--index-url=URL"`` -> ``("--index-url", "URL")``."""
    match = re.match(r"^(--[A-Za-z0-9][A-Za-z0-9-]*|-[A-Za-z])(?:\s*=\s*|\s+)?(.*)$", line)
    if not match:
        return line, ""
    short = {"-r": "--requirement", "-c": "--constraint", "-i": "--index-url"}
    return short.get(match.group(1), match.group(1)), match.group(2).strip()


def _read_requirements(path: Path, chain: tuple[Path, ...]) -> list[str]:
    """The lines of a pip requirements file, with ``-r`` includes read in place."""
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"pip requirements files include each other in a loop: {loop}")
    what = "pip requirements file"
    if chain:
        what += f" (included by {str(chain[-1])!r})"
    text = _read_text(path, what)
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\") and not _COMMENT.search(raw):
            pending += raw[:-1]
            continue
        logical.append(pending + raw)
        pending = ""
    if pending:
        logical.append(pending)
    lines: list[str] = []
    for raw in logical:
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        if not line.startswith("-"):
            lines.append(line)
            continue
        option, value = _split_option(line)
        if option == "--requirement":
            if not value or "://" in value:
                raise ConfigError(
                    f"{str(path)!r}: {line!r} must name a local requirements file; "
                    "runner works offline, so copy remote files next to this one"
                )
            lines.extend(_read_requirements(path.parent / value, (*chain, resolved)))
        elif option == "--constraint":
            raise ConfigError(
                f"{str(path)!r}: constraints files ({line!r}) are not supported; "
                "pin the versions in the requirements file itself"
            )
        else:
            lines.append(f"{option} {value}" if value else option)
    return lines
