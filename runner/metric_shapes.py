"""Checks of the JSON shapes of v1's structured metrics: confusion matrix, accuracy
table, predictions and residuals (``Run.log_confusion_matrix()`` and its siblings).

Each check takes a dict or a JSON string, returns a plain JSON-safe copy (numpy arrays
and scalars made plain), and raises a :class:`ConfigError` that names the field at fault
and shows what it should hold. Part of the in-run client: standard library only,
importable on Python 3.9.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, cast

from runner.errors import ConfigError
from runner.metric_values import (
    SCALAR_TYPES,
    JSONDict,
    _a,
    _base_scalar,
    _show,
    _to_scalar,
    _type_name,
)

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
