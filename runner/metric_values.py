"""What a metric value is, and how messages about one show it.

A plain scalar is an int, float, bool or str of exactly that type; ``_to_scalar`` finds
the plain scalar behind a subclass (numpy.float64, an IntEnum) or an object with
``item()``. ``_show`` and ``_a(_type_name(v))`` write a value and its type into the
messages of ``runner.metrics`` and ``runner.metric_shapes``. Part of the in-run client:
standard library only, importable on Python 3.9.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any, Union

# Union, not `int | float | ...`: this alias is evaluated at import time, on Python 3.9 too.
Scalar = Union[int, float, bool, str]
JSONDict = dict[str, Any]

#: The exact types a metric value may have; the caller's fast path tests ``type(v) in``.
SCALAR_TYPES: frozenset[type] = frozenset({int, float, bool, str})

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = 6
_REPR.maxtuple = 6
_REPR.maxset = 6
_REPR.maxdict = 4
_REPR.maxlevel = 3


def _show(value: object) -> str:
    """A short one-line repr for messages; never raises."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a user object whose __repr__ is broken must not hide the real error
        return f"<unprintable {_type_name(value)}>"
    if "\n" in text:
        text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def _base_scalar(value: object) -> Scalar | None:
    """``value`` as its exact base type when it subclasses one (numpy.float64, IntEnum)."""
    if isinstance(value, bool):  # bool cannot be subclassed: this is True or False
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)  # the plain str, also for str-mixin enums on 3.9/3.10
    return None


def _to_scalar(value: object) -> Scalar | None:
    """The plain scalar behind ``value``, or None when it has none."""
    base = _base_scalar(value)
    if base is not None:
        return base
    item = getattr(value, "item", None)
    if not callable(item) or isinstance(value, Mapping):
        return None
    try:
        result = item()  # numpy scalars, 0-d arrays, one-element tensors
    except Exception:  # e.g. "can only convert an array of size 1": reported by the caller
        return None
    return _base_scalar(result)
