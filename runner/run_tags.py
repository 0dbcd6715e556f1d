"""Tags and properties of runs: the checks of keys and values, tag filters, and the
``Run`` part that sets and reads them.

The checks are shared by ``submit`` (tags given at submission), ``Model.list`` (its
filters) and ``Run``. Standard library only.
"""

from __future__ import annotations

import builtins
from typing import Any, Optional, Union

from runner.errors import ConfigError
from runner.run_base import _RunBase

#: A tags or properties filter: a key, a list of keys, or a dict of key -> value (None:
#: the key with any value).
TagFilter = Union[str, list[str], dict[str, Optional[str]], None]


def _check_tag_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"tag key {key!r} must be a non-empty str; e.g. run.tag('best', 'yes')")
    _check_text(key, "tag key")
    return key


def _check_tag_value(key: str, value: object, what: str = "tag") -> str | None:
    if value is None:
        return value
    if isinstance(value, str):
        return _check_text(value, f"{what} {key!r}: value")
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise ConfigError(
        f"{what} {key!r}: value {value!r} is a {type(value).__name__}; values are str "
        "(numbers are stringified), or None for a value-less tag"
    )


def _check_text(text: str, what: str) -> str:
    """``text`` unless it holds NUL or is not UTF-8 (lone surrogates): ConfigError."""
    if "\x00" in text:
        raise ConfigError(f"{what} {text!r} holds a NUL character; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {text!r} is not valid UTF-8 text; pass UTF-8 text") from None
    return text


def parse_filter(value: TagFilter, what: str) -> tuple[dict[str, str | None], list[str]]:
    """A tags/properties filter as (key -> value conditions, key-only conditions)."""
    if value is None:
        return {}, []
    if isinstance(value, str):
        return {}, [value]
    if isinstance(value, dict):
        pairs: dict[str, str | None] = {}
        for k, v in value.items():
            pairs[_check_tag_key(k)] = _check_tag_value(k, v, what)
        return pairs, []
    if isinstance(value, (list, tuple)):
        return {}, [_check_tag_key(k) for k in value]
    raise ConfigError(
        f"{what} filter {value!r} must be a key (str), a list of keys, or a dict of key -> value"
    )


class _RunTags(_RunBase):
    """The tags and properties of a run (part of ``Run``)."""

    def tag(self, key: str, value: str | None = None) -> None:
        """Set a tag; without a value it is a value-less tag (value None)."""
        key = _check_tag_key(key)
        self._store.set_tags(self._id, {key: _check_tag_value(key, value)})

    def set_tags(self, tags: dict[str, str | None] | str | builtins.list[str]) -> None:
        """Add or change tags: a dict, or a str / list of value-less tags."""
        if isinstance(tags, str):
            pairs: dict[str, str | None] = {_check_tag_key(tags): None}
        elif isinstance(tags, (list, tuple)):
            pairs = {_check_tag_key(k): None for k in tags}
        elif isinstance(tags, dict):
            pairs = {_check_tag_key(k): _check_tag_value(k, v) for k, v in tags.items()}
        else:
            raise ConfigError(f"set_tags takes a dict, a str or a list of str, not {tags!r}")
        self._store.set_tags(self._id, pairs)

    def remove_tags(self, tags: builtins.list[str] | str) -> dict[str, str | None]:
        """Delete tags by key; returns the tags left."""
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._store.remove_tags(self._id, [_check_tag_key(k) for k in keys])
        return self.get_tags()

    def get_tags(self) -> dict[str, str | None]:
        """The run's tags."""
        return self._store.get_tags(self._id)

    def add_properties(self, properties: dict[str, Any]) -> None:
        """Add immutable properties; a different value for an existing key raises."""
        if not isinstance(properties, dict):
            raise ConfigError(f"add_properties takes a dict, not {type(properties).__name__}")
        pairs = {
            _check_tag_key(k): _check_tag_value(k, v, "property") for k, v in properties.items()
        }
        self._store.add_properties(self._id, pairs)

    def get_properties(self) -> dict[str, str | None]:
        """The run's properties."""
        return self._store.get_properties(self._id)
