"""Checks for metric names and values, and for the JSON shapes of structured metrics.

``Run.log*`` calls these before anything is stored, so a bad value fails in the user's
script at the line that logged it, with a message that names the metric, shows the
value and says what to log instead. Every failure is a :class:`ConfigError`.

The in-run client imports this module: standard library only, and it must import on
Python 3.9 (matplotlib is only touched through the object the user passes).

Example:
    >>> coerce_scalar("loss", True)
    True
    >>> check_table("t", {"epoch": [1, 2], "loss": [0.5, 0.25]})
    {'epoch': [1, 2], 'loss': [0.5, 0.25]}
"""

from __future__ import annotations

import io
import json
import math
import os
import reprlib
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union, cast

from runner.errors import ConfigError

# Union, not `int | float | ...`: this alias is evaluated at import time, on Python 3.9 too.
Scalar = Union[int, float, bool, str]
JSONDict = dict[str, Any]

#: The exact types a metric value may have; the caller's fast path tests ``type(v) in``.
SCALAR_TYPES: frozenset[type] = frozenset({int, float, bool, str})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_DEPTH = 64  # structured metrics are a few levels deep; deeper is a cycle or a mistake

#: Structured metric kind -> the Run method that logs it.
_SCHEMA_METHODS = {
    "confusion_matrix": "log_confusion_matrix()",
    "accuracy_table": "log_accuracy_table()",
    "predictions": "log_predictions()",
    "residuals": "log_residuals()",
}
#: The schema_version of the examples in the reference docs, for hints.
_SCHEMA_VERSIONS = {
    "confusion_matrix": "1.0.0",
    "accuracy_table": "1.0.1",
    "predictions": "1.0.0",
    "residuals": "1.0.0",
}
#: What each data field holds, for hints.
_FIELD_HINTS = {
    "class_labels": 'a list of class names as strings, e.g. ["0", "1"]',
    "matrix": "a square list of lists of counts, one row and one column per class label",
    "probability_tables": "a list per class of [TP, FP, TN, FN] per probability threshold",
    "percentile_tables": "a list per class of [TP, FP, TN, FN] per percentile threshold",
    "probability_thresholds": "a list of numbers, e.g. [0.0, 0.25, 0.5, 0.75, 1.0]",
    "percentile_thresholds": "a list of numbers, e.g. [0.0, 0.01, 0.24, 0.98, 1.0]",
    "bin_averages": "a list of numbers, one per bin",
    "bin_errors": "a list of numbers, one per bin",
    "bin_counts": "a list of numbers, one per bin",
    "bin_edges": "a list of numbers, one more than there are bins",
}

# Rules for the scalar checks, by where the value came from.
_RULES = {
    "log": "log() takes int, float, bool or str",
    "list": "log_list() takes a list of int, float, bool or str",
    "row": "log_row() values must be int, float, bool or str",
    "table": "log_table() columns hold int, float, bool or str",
}

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = 6
_REPR.maxtuple = 6
_REPR.maxset = 6
_REPR.maxdict = 4
_REPR.maxlevel = 3


# -- messages -------------------------------------------------------------------------


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


def _is_sequence_like(value: object) -> bool:
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)):
        return False
    if callable(getattr(value, "tolist", None)):
        return getattr(value, "ndim", 1) != 0  # numpy scalars have tolist() too
    return isinstance(value, Iterable)


def _scalar_hint(value: object, place: str) -> str:
    if value is None:
        if place == "log":
            return "pass a value, or skip the call when there is none"
        return "fill in missing values, e.g. with float('nan')"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "decode it to str, or use upload_file() for binary data"
    if isinstance(value, Mapping):
        if place == "row":
            return "pass one keyword per column instead of a dict"
        if place == "log":
            return "use log_row() for one row of named values, or log_table() for columns"
        return "use log_table() for named columns"
    if isinstance(value, complex):
        return "log abs(value), or value.real and value.imag as two metrics"
    if _is_sequence_like(value):
        if place == "log":
            kind = "lists" if isinstance(value, list) else "sequences"
            return f"use log_list() for {kind}"
        if place == "row":
            return "log_row() logs one row; use log_table() for whole columns"
        if place == "table":
            return "each column must be a flat list; flatten it first"
        return "log_list() takes a flat list; flatten it, or use log_table() for several columns"
    return "convert it first, e.g. with float(value) or str(value)"


def _scalar_error(name: str, value: object, where: str, place: str) -> ConfigError:
    if value is None:
        what = f"{where} is None"
    else:
        what = f"{where} {_show(value)} is {_a(_type_name(value))}"
    return ConfigError(f"metric {name!r}: {what}; {_RULES[place]}", hint=_scalar_hint(value, place))


# -- scalars --------------------------------------------------------------------------


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


def check_metric_name(name: object) -> str:
    """Return ``name`` as a plain str, or raise ConfigError.

    A metric name is a non-empty string that is not only whitespace and holds no
    control characters.

    Example:
        >>> check_metric_name("loss")
        'loss'
    """
    if not isinstance(name, str):
        raise ConfigError(
            f"metric name {_show(name)} is {_a(_type_name(name))}; "
            "pass a non-empty str such as 'loss'"
        )
    if not name.strip():
        raise ConfigError(f"metric name {name!r} is empty; pass a name such as 'loss'")
    if not name.isprintable():  # fast test; the scan below only runs on the rare failure
        bad = next((ch for ch in name if ch < " " or ch == "\x7f"), None)
        if bad is not None:
            raise ConfigError(
                f"metric name {_show(name)} contains the control character {bad!r}; "
                "use printable characters only"
            )
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"metric name {_show(name)} is not valid UTF-8 text; pass UTF-8 text"
            ) from None
    return str.__str__(name)


def coerce_scalar(name: str, value: object) -> Scalar:
    """Return ``value`` as a plain int, float, bool or str, or raise ConfigError.

    Subclasses become their base type (numpy.float64 -> float, an IntEnum -> int);
    objects with ``item()`` (numpy scalars, 0-d arrays, one-element tensors) give
    what ``item()`` returns, when that is a scalar.

    Example:
        >>> coerce_scalar("loss", 0.5)
        0.5
    """
    if type(value) in SCALAR_TYPES:
        return cast(Scalar, value)
    scalar = _to_scalar(value)
    if scalar is None:
        raise _scalar_error(name, value, "value", "log")
    return scalar


# -- lists, rows, tables --------------------------------------------------------------


def _as_list(name: str, value: object, where: str, place: str) -> tuple[list[object], bool]:
    """``value`` as a list (and whether it is a fresh one), or ConfigError."""
    if isinstance(value, list):
        return value, False
    if isinstance(value, tuple):
        return list(value), True
    rule = (
        "log_list() takes a list, tuple, 1-D array or other ordered iterable"
        if place == "list"
        else "log_table() takes a dict of column name -> list of values"
    )
    what = f"metric {name!r}: {where} {_show(value)} is {_a(_type_name(value))}; {rule}"
    if isinstance(value, str):
        raise ConfigError(what, hint="use log() for one string, or pass [value] for a list of one")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise ConfigError(what, hint="decode it to str, or use upload_file() for binary data")
    if isinstance(value, Mapping):
        hint = (
            "use log_table() for a dict of columns"
            if place == "list"
            else "each column is a list; nested dicts are not supported"
        )
        raise ConfigError(what, hint=hint)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            result = tolist()
        except Exception as exc:  # a third-party object: say which one failed
            raise ConfigError(f"{what}; its tolist() failed: {exc}") from exc
        if isinstance(result, list):
            return result, True
        raise ConfigError(what, hint="it holds a single value; use log() for one value")
    if isinstance(value, (set, frozenset)):
        raise ConfigError(what, hint="a set has no order; pass sorted(value)")
    if isinstance(value, Sequence):  # range, collections.UserList, ...
        return list(value), True
    if isinstance(value, Iterable):
        if place == "list":  # generators, map(), iterators: v1 takes any iterable (read once)
            return list(value), True
        raise ConfigError(what, hint="pass list(value)")
    if place == "list":
        raise ConfigError(what, hint="use log() for one value, or pass [value]")
    raise ConfigError(what, hint="use log_row() for one row of single values")


def _scalars(name: str, items: list[object], fresh: bool, where: str, place: str) -> list[Scalar]:
    """``items`` with every element a plain scalar; linear, and cheap when already plain."""
    if set(map(type, items)) <= SCALAR_TYPES:  # C-speed pass over the usual case
        return cast("list[Scalar]", items if fresh else list(items))
    out: list[Scalar] = []
    for index, item in enumerate(items):
        if type(item) in SCALAR_TYPES:
            out.append(cast(Scalar, item))
            continue
        scalar = _to_scalar(item)
        if scalar is None:
            raise _scalar_error(name, item, f"{where} {index}", place)
        out.append(scalar)
    return out


def check_list(name: str, value: object) -> list[Scalar]:
    """Return the values of ``log_list()`` as a new list of plain scalars, or raise ConfigError.

    Takes a list, tuple, other sequence, any other iterable such as a generator or
    ``map`` (consumed once, as azureml does), or anything with ``tolist()`` (1-D numpy
    arrays, tensors, pandas Series). An empty list is allowed; a string, a dict and a
    set (no order) are refused.

    Example:
        >>> check_list("acc", (0.5, 0.75))
        [0.5, 0.75]
    """
    items, fresh = _as_list(name, value, "value", "list")
    return _scalars(name, items, fresh, "element", "list")


def check_row(name: str, row: Mapping[str, object]) -> dict[str, Scalar]:
    """Return the columns of one ``log_row()`` call as plain scalars, or raise ConfigError.

    Example:
        >>> check_row("curve", {"epoch": 1, "loss": 0.5})
        {'epoch': 1, 'loss': 0.5}
    """
    if not row:
        raise ConfigError(
            f"metric {name!r}: log_row() got no columns",
            hint="pass them as keywords, e.g. log_row('curve', epoch=1, loss=0.5)",
        )
    out: dict[str, Scalar] = {}
    for column, value in row.items():
        key = _column_name(name, column, "log_row()")
        if type(value) in SCALAR_TYPES:
            out[key] = cast(Scalar, value)
            continue
        scalar = _to_scalar(value)
        if scalar is None:
            raise _scalar_error(name, value, f"column {key!r}", "row")
        out[key] = scalar
    return out


def _column_name(name: str, column: object, method: str) -> str:
    if not isinstance(column, str):
        raise ConfigError(
            f"metric {name!r}: column name {_show(column)} is {_a(_type_name(column))}; "
            f"{method} column names are strings",
            hint="convert the keys with str()",
        )
    if not column.strip():
        raise ConfigError(
            f"metric {name!r}: column name {column!r} is empty; {method} needs named columns"
        )
    return str.__str__(column)


def check_table(name: str, value: object) -> dict[str, list[Scalar]]:
    """Return a ``log_table()`` value as new column lists of plain scalars, or raise ConfigError.

    The value is a dict of column name -> list (or tuple, or 1-D array); it has at
    least one column and every column has the same length.

    Example:
        >>> check_table("t", {"x": [1, 2], "y": ["a", "b"]})
        {'x': [1, 2], 'y': ['a', 'b']}
    """
    if not isinstance(value, Mapping):
        hint = (
            "for a DataFrame pass df.to_dict('list')"
            if callable(getattr(value, "to_dict", None))
            else "pass e.g. {'epoch': [1, 2], 'loss': [0.5, 0.25]}"
        )
        raise ConfigError(
            f"metric {name!r}: value {_show(value)} is {_a(_type_name(value))}; "
            "log_table() takes a dict of column name -> list of values",
            hint=hint,
        )
    if not value:
        raise ConfigError(
            f"metric {name!r}: log_table() got an empty dict",
            hint="pass at least one column, e.g. {'loss': [0.5, 0.25]}",
        )
    out: dict[str, list[Scalar]] = {}
    for column, cells in value.items():
        key = _column_name(name, column, "log_table()")
        items, fresh = _as_list(name, cells, f"column {key!r}", "table")
        out[key] = _scalars(name, items, fresh, f"column {key!r} row", "table")
    lengths = {key: len(cells) for key, cells in out.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{key!r} has {n}" for key, n in list(lengths.items())[:8])
        more = ", ..." if len(lengths) > 8 else ""
        raise ConfigError(
            f"metric {name!r}: log_table() columns differ in length: {shown}{more}",
            hint="give every column the same number of rows",
        )
    return out


# -- structured metrics: confusion matrix, accuracy table, predictions, residuals ------


def _at(path: str) -> str:
    return path or "value"


def _plain(name: str, value: object, path: str, depth: int) -> Any:
    """A JSON-safe deep copy of ``value`` (numpy arrays and scalars made plain)."""
    if type(value) in SCALAR_TYPES or value is None:
        return value
    if depth > _MAX_DEPTH:
        raise ConfigError(
            f"metric {name!r}: {_at(path)} is nested more than {_MAX_DEPTH} levels deep",
            hint="check the value for a dict or list that contains itself",
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"metric {name!r}: {_at(path)} has the key {_show(key)}, "
                    f"{_a(_type_name(key))}; JSON object keys are strings",
                    hint="convert the keys with str()",
                )
            out[key] = _plain(name, item, f"{path}.{key}" if path else key, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(name, item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    base = _base_scalar(value)
    if base is not None:
        return base
    tolist = getattr(value, "tolist", None)  # before item(): a 1-element array stays a list
    if callable(tolist):
        try:
            result = tolist()
        except Exception as exc:  # a third-party object: say which one failed
            raise ConfigError(
                f"metric {name!r}: {_at(path)} {_show(value)}: its tolist() failed: {exc}"
            ) from exc
        return _plain(name, result, path, depth + 1)
    scalar = _to_scalar(value)
    if scalar is not None:
        return scalar
    raise ConfigError(
        f"metric {name!r}: {_at(path)} {_show(value)} is {_a(_type_name(value))}; "
        "structured metrics hold only numbers, strings, lists and dicts (JSON)",
        hint="convert it, e.g. with float(), str() or .tolist()",
    )


def _load(name: str, value: object, schema_type: str) -> JSONDict:
    """Parse and copy a structured metric; check schema_type, schema_version and data."""
    method = _SCHEMA_METHODS[schema_type]
    version = _SCHEMA_VERSIONS[schema_type]
    skeleton = f'{{"schema_type": "{schema_type}", "schema_version": "{version}", "data": {{...}}}}'
    parsed: object
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(
                f"metric {name!r}: value {_show(value)} is not valid JSON: {exc}",
                hint=f"pass a dict, or a JSON string of one such as {skeleton}",
            ) from exc
    elif isinstance(value, Mapping):
        parsed = value
    else:
        raise ConfigError(
            f"metric {name!r}: value {_show(value)} is {_a(_type_name(value))}; "
            f"{method} takes a dict or a JSON string",
            hint=f"pass e.g. {skeleton}",
        )
    doc = _plain(name, parsed, "", 0)
    if not isinstance(doc, dict):
        raise ConfigError(
            f"metric {name!r}: value {_show(doc)} is {_a(_type_name(doc))}; "
            f"{method} takes an object with schema_type, schema_version and data",
            hint=f"pass e.g. {skeleton}",
        )
    missing = [key for key in ("schema_type", "schema_version", "data") if key not in doc]
    if missing:
        raise ConfigError(
            f"metric {name!r}: value has no {', '.join(repr(k) for k in missing)}; "
            f"{method} takes an object with schema_type, schema_version and data",
            hint=f"start from {skeleton}",
        )
    found = doc["schema_type"]
    if found != schema_type:
        hint = (
            f"use {_SCHEMA_METHODS[found]} for {found!r}, or set it to {schema_type!r}"
            if isinstance(found, str) and found in _SCHEMA_METHODS
            else f"set it to {schema_type!r}"
        )
        raise ConfigError(
            f"metric {name!r}: schema_type is {_show(found)}; {method} needs {schema_type!r}",
            hint=hint,
        )
    if not isinstance(doc["schema_version"], str) or not doc["schema_version"].strip():
        raise ConfigError(
            f"metric {name!r}: schema_version {_show(doc['schema_version'])} is not a "
            "version string",
            hint=f'set it to a string such as "{version}"',
        )
    if not isinstance(doc["data"], dict):
        raise ConfigError(
            f"metric {name!r}: data {_show(doc['data'])} is {_a(_type_name(doc['data']))}; "
            "it must be an object",
            hint=f"see the example in the {method} docs",
        )
    return doc


def _field(name: str, data: JSONDict, key: str, schema_type: str) -> Any:
    if key not in data:
        raise ConfigError(
            f"metric {name!r}: data has no {key!r}; {_SCHEMA_METHODS[schema_type]} needs it",
            hint=f"add data.{key}: {_FIELD_HINTS[key]}",
        )
    return data[key]


def _list(name: str, value: object, path: str, length: int | None, why: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(
            f"metric {name!r}: {path} {_show(value)} is {_a(_type_name(value))}; "
            f"expected a list ({why})"
        )
    if length is not None and len(value) != length:
        raise ConfigError(
            f"metric {name!r}: {path} = {_show(value)} has {len(value)} entries; "
            f"expected {length} ({why})"
        )
    return value


def _labels(name: str, data: JSONDict, schema_type: str) -> list[str]:
    path = "data.class_labels"
    labels = _list(
        name,
        _field(name, data, "class_labels", schema_type),
        path,
        None,
        _FIELD_HINTS["class_labels"],
    )
    if not labels:
        raise ConfigError(
            f"metric {name!r}: {path} is empty",
            hint=f"list the classes: {_FIELD_HINTS['class_labels']}",
        )
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ConfigError(
                f"metric {name!r}: {path}[{i}] {_show(label)} is {_a(_type_name(label))}; "
                "class labels are strings",
                hint="write them as strings, e.g. [str(c) for c in classes]",
            )
        if label in seen:
            raise ConfigError(
                f"metric {name!r}: {path} repeats {label!r}", hint="give each class one label"
            )
        seen.add(label)
    return labels


def _count(name: str, value: object, path: str) -> int:
    """A count: a non-negative int (an integral float is accepted and made an int)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise ConfigError(
            f"metric {name!r}: {path} = {_show(value)} is {_a(_type_name(value))}; "
            "counts are whole numbers",
            hint="pass integer counts, e.g. from sklearn or numpy with .tolist()",
        )
    if value < 0:
        raise ConfigError(
            f"metric {name!r}: {path} = {value} is negative; counts are whole numbers >= 0"
        )
    return value


def _counts(name: str, value: object, path: str, length: int, why: str) -> list[int]:
    cells = _list(name, value, path, length, why)
    return [_count(name, cell, f"{path}[{i}]") for i, cell in enumerate(cells)]


def _numbers(
    name: str,
    data: JSONDict,
    key: str,
    schema_type: str,
    *,
    allow_nan: bool = False,
    non_negative: bool = False,
) -> list[int | float]:
    """data[key] as a list of real numbers; NaN only where a value can be undefined."""
    path = f"data.{key}"
    values = _list(name, _field(name, data, key, schema_type), path, None, _FIELD_HINTS[key])
    for i, number in enumerate(values):
        if type(number) not in (int, float):
            raise ConfigError(
                f"metric {name!r}: {path}[{i}] = {_show(number)} is {_a(_type_name(number))}; "
                f"{key} holds numbers"
            )
        if isinstance(number, float) and not math.isfinite(number):
            if allow_nan and math.isnan(number):  # an empty bin has no average
                continue
            allowed = "NaN is allowed only for an empty bin" if allow_nan else "use finite numbers"
            raise ConfigError(f"metric {name!r}: {path}[{i}] = {number!r} is not finite; {allowed}")
        if non_negative and number < 0:
            raise ConfigError(
                f"metric {name!r}: {path}[{i}] = {number!r} is negative; {key} are >= 0"
            )
    return cast("list[int | float]", values)


def _check_edges(name: str, edges: list[int | float], bins: int, counts_key: str) -> None:
    if bins < 1:
        raise ConfigError(
            f"metric {name!r}: data.{counts_key} is empty", hint="pass at least one bin"
        )
    if len(edges) != bins + 1:
        raise ConfigError(
            f"metric {name!r}: data.bin_edges has {len(edges)} values for {bins} bins; "
            f"it needs one more than data.{counts_key} ({bins + 1})",
            hint="bin i spans bin_edges[i] to bin_edges[i + 1], as numpy.histogram returns them",
        )
    for i in range(bins):
        if edges[i + 1] < edges[i]:
            raise ConfigError(
                f"metric {name!r}: data.bin_edges[{i + 1}] = {edges[i + 1]!r} is below "
                f"data.bin_edges[{i}] = {edges[i]!r}; bin edges must be in increasing order"
            )


def check_confusion_matrix(name: str, value: object) -> JSONDict:
    """Check a ``log_confusion_matrix()`` value (dict or JSON string); return a plain copy.

    Example:
        >>> cm = {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
        ...       "data": {"class_labels": ["0", "1"], "matrix": [[3, 1], [0, 2]]}}
        >>> check_confusion_matrix("cm", cm) == cm
        True
    """
    doc = _load(name, value, "confusion_matrix")
    data: JSONDict = doc["data"]
    labels = _labels(name, data, "confusion_matrix")
    size = len(labels)
    rows = _list(
        name,
        _field(name, data, "matrix", "confusion_matrix"),
        "data.matrix",
        size,
        "one row per class label",
    )
    data["matrix"] = [
        _counts(name, row, f"data.matrix[{i}]", size, "one column per class label")
        for i, row in enumerate(rows)
    ]
    return doc


def check_accuracy_table(name: str, value: object) -> JSONDict:
    """Check a ``log_accuracy_table()`` value (dict or JSON string); return a plain copy.

    ``probability_tables`` and ``percentile_tables`` have the shape [C, M, 4] (C class
    labels, M thresholds of their kind, [TP, FP, TN, FN]); every cell counts the same
    N samples, and a class has the same positives (TP + FN) at every threshold.
    """
    doc = _load(name, value, "accuracy_table")
    data: JSONDict = doc["data"]
    labels = _labels(name, data, "accuracy_table")
    reference: tuple[int, str] | None = None  # (N, where it was first seen)
    positives: dict[int, tuple[int, str]] = {}  # class index -> (TP + FN, where)
    for kind in ("probability", "percentile"):
        thresholds = _numbers(name, data, f"{kind}_thresholds", "accuracy_table")
        if not thresholds:
            raise ConfigError(
                f"metric {name!r}: data.{kind}_thresholds is empty",
                hint=f"pass {_FIELD_HINTS[f'{kind}_thresholds']}",
            )
        path = f"data.{kind}_tables"
        tables = _list(
            name,
            _field(name, data, f"{kind}_tables", "accuracy_table"),
            path,
            len(labels),
            "one table per class label",
        )
        checked: list[list[list[int]]] = []
        for c, table in enumerate(tables):
            rows = _list(
                name,
                table,
                f"{path}[{c}]",
                len(thresholds),
                f"one row per value of data.{kind}_thresholds",
            )
            checked_rows: list[list[int]] = []
            for m, row in enumerate(rows):
                where = f"{path}[{c}][{m}]"
                cell = _counts(name, row, where, 4, "TP, FP, TN, FN")
                what = (
                    f"metric {name!r}: {where} (class {labels[c]!r}, {kind} threshold "
                    f"{thresholds[m]!r}) = {cell}"
                )
                total = sum(cell)
                if reference is None:
                    reference = (total, where)
                elif total != reference[0]:
                    raise ConfigError(
                        f"{what}: TP+FP+TN+FN = {total}, but {reference[0]} at {reference[1]}",
                        hint="every class and threshold must count the same N samples",
                    )
                positive = cell[0] + cell[3]
                seen = positives.setdefault(c, (positive, where))
                if positive != seen[0]:
                    raise ConfigError(
                        f"{what}: TP+FN = {positive}, but {seen[0]} at {seen[1]}",
                        hint="a class has the same number of positives at every threshold",
                    )
                checked_rows.append(cell)
            checked.append(checked_rows)
        data[f"{kind}_tables"] = checked
    return doc


def check_predictions(name: str, value: object) -> JSONDict:
    """Check a ``log_predictions()`` value (dict or JSON string); return a plain copy.

    ``bin_averages``, ``bin_errors`` and ``bin_counts`` have one number per bin and
    ``bin_edges`` one more; an empty bin may have NaN as its average and error.
    """
    doc = _load(name, value, "predictions")
    data: JSONDict = doc["data"]
    averages = _numbers(name, data, "bin_averages", "predictions", allow_nan=True)
    errors = _numbers(name, data, "bin_errors", "predictions", allow_nan=True, non_negative=True)
    counts = _numbers(name, data, "bin_counts", "predictions", non_negative=True)
    edges = _numbers(name, data, "bin_edges", "predictions")
    if not len(averages) == len(errors) == len(counts):
        raise ConfigError(
            f"metric {name!r}: data.bin_averages has {len(averages)} values, "
            f"data.bin_errors {len(errors)} and data.bin_counts {len(counts)}",
            hint="give each of them one value per bin",
        )
    _check_edges(name, edges, len(counts), "bin_counts")
    return doc


def check_residuals(name: str, value: object) -> JSONDict:
    """Check a ``log_residuals()`` value (dict or JSON string); return a plain copy.

    A histogram: ``bin_counts`` has one number per bin, ``bin_edges`` one more.
    """
    doc = _load(name, value, "residuals")
    data: JSONDict = doc["data"]
    edges = _numbers(name, data, "bin_edges", "residuals")
    counts = _numbers(name, data, "bin_counts", "residuals", non_negative=True)
    _check_edges(name, edges, len(counts), "bin_counts")
    return doc


# -- images ---------------------------------------------------------------------------


def looks_like_plot(value: object) -> bool:
    """Whether ``value`` is something ``render_plot_png`` renders rather than an image file.

    Duck-typed (a ``savefig`` method, or a module with ``gcf``, as ``matplotlib.pyplot``):
    matplotlib is never imported here.

    Example:
        >>> looks_like_plot("roc.png")
        False
    """
    if isinstance(value, (str, bytes, os.PathLike)) or callable(getattr(value, "read", None)):
        return False
    if isinstance(value, types.ModuleType):
        return callable(getattr(value, "gcf", None))
    return callable(getattr(value, "savefig", None))


def render_plot_png(name: str, plot: object) -> bytes:
    """Render a matplotlib Figure (or ``matplotlib.pyplot``: its current figure) to PNG.

    Anything with ``savefig(buffer, format='png')`` works; matplotlib itself is never
    imported here.

    Example:
        >>> import matplotlib.pyplot as plt  # doctest: +SKIP
        >>> png = render_plot_png("curve", plt)  # doctest: +SKIP
    """
    if plot is None:
        raise ConfigError(
            f"metric {name!r}: log_image() got neither a path nor a plot",
            hint="pass path= for an image file or plot= for a matplotlib figure",
        )
    target: object = plot
    if isinstance(plot, types.ModuleType):
        gcf = getattr(plot, "gcf", None)
        if not callable(gcf):
            raise ConfigError(
                f"metric {name!r}: plot is the module {plot.__name__!r}, not matplotlib.pyplot",
                hint="pass a matplotlib Figure, or matplotlib.pyplot for its current figure",
            )
        target = gcf()
    savefig = getattr(target, "savefig", None)
    if not callable(savefig):
        hint = (
            "pass its figure: plot=ax.figure"
            if callable(getattr(target, "get_figure", None))
            else "pass a matplotlib Figure, or matplotlib.pyplot for its current figure"
        )
        raise ConfigError(
            f"metric {name!r}: plot {_show(target)} is {_a(_type_name(target))}; "
            "log_image() renders objects with savefig()",
            hint=hint,
        )
    buffer = io.BytesIO()
    try:
        savefig(buffer, format="png")
    except Exception as exc:  # matplotlib's (or the object's) own failure, wrapped here
        raise ConfigError(
            f"metric {name!r}: the plot could not be rendered to PNG: {type(exc).__name__}: {exc}",
            hint="check that it draws, e.g. with fig.savefig('check.png')",
        ) from exc
    png = buffer.getvalue()
    if not png.startswith(_PNG_SIGNATURE):
        raise ConfigError(
            f"metric {name!r}: savefig(format='png') on {_a(_type_name(target))} "
            f"wrote {len(png)} bytes that are not a PNG",
            hint="pass a matplotlib Figure, or save the image yourself and pass path=",
        )
    return png


def check_image_path(name: str, path: object) -> None:
    """Check the ``path`` of ``log_image()``: an existing file, or a binary stream.

    Example:
        >>> check_image_path("img", "no/such.png")
        Traceback (most recent call last):
        ...
        runner.errors.ConfigError: metric 'img': image file not found: 'no/such.png' ...
    """
    if isinstance(path, (str, os.PathLike)):
        fspath = os.fspath(path)
        if not fspath:
            raise ConfigError(
                f"metric {name!r}: image path is empty", hint="pass the path of an image file"
            )
        shown = repr(fspath)  # in full: a shortened path would hide what is wrong with it
        where = "" if os.path.isabs(fspath) else f" (relative to {os.getcwd()!r})"
        if os.path.isdir(fspath):
            raise ConfigError(
                f"metric {name!r}: image path {shown} is a folder{where}",
                hint="pass one image file; upload_folder() stores a whole folder",
            )
        if not os.path.isfile(fspath):
            reason = "is not a regular file" if os.path.exists(fspath) else "file not found"
            raise ConfigError(
                f"metric {name!r}: image {reason}: {shown}{where}",
                hint="pass the path of an existing image file, or plot= for a matplotlib figure",
            )
        return
    if callable(getattr(path, "read", None)):
        if isinstance(path, io.TextIOBase):
            raise ConfigError(
                f"metric {name!r}: image stream {_show(path)} is a text stream",
                hint="open the image in binary mode: open(path, 'rb')",
            )
        if getattr(path, "closed", False) is True:
            raise ConfigError(
                f"metric {name!r}: image stream {_show(path)} is closed",
                hint="pass it while it is open, or pass the file's path",
            )
        return
    raise ConfigError(
        f"metric {name!r}: image path {_show(path)} is {_a(_type_name(path))}; "
        "log_image() takes a file path or a binary stream",
        hint="pass path= (a str or Path, or a stream opened with 'rb'), or plot= for a figure",
    )
