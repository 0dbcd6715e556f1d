"""Checks for metric names and values, and for the JSON shapes of structured metrics.

``Run.log*`` calls these before anything is stored, so a bad value fails in the user's
script at the line that logged it, with a message that names the metric, shows the
value and says what to log instead. Every failure is a :class:`ConfigError`.

The in-run client imports this module: standard library only, and it must import on
Python 3.9 (matplotlib is only touched through the object the user passes).

The parts: names, scalars, lists, rows, tables and images here; the structured kinds'
shapes in ``runner.metric_shapes`` (re-exported here); what both share (plain scalars,
how a value is shown in a message) in ``runner.metric_values``.

Example:
    >>> coerce_scalar("loss", True)
    True
    >>> check_table("t", {"epoch": [1, 2], "loss": [0.5, 0.25]})
    {'epoch': [1, 2], 'loss': [0.5, 0.25]}
"""

from __future__ import annotations

import io
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from runner.errors import ConfigError
from runner.metric_shapes import (
    check_accuracy_table,
    check_confusion_matrix,
    check_predictions,
    check_residuals,
)
from runner.metric_values import (
    SCALAR_TYPES,
    JSONDict,
    Scalar,
    _a,
    _show,
    _to_scalar,
    _type_name,
)

__all__ = [
    "SCALAR_TYPES",
    "JSONDict",
    "Scalar",
    "check_accuracy_table",
    "check_confusion_matrix",
    "check_image_path",
    "check_list",
    "check_metric_name",
    "check_predictions",
    "check_residuals",
    "check_row",
    "check_table",
    "coerce_scalar",
    "looks_like_plot",
    "render_plot_png",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Rules for the scalar checks, by where the value came from.
_RULES = {
    "log": "log() takes int, float, bool or str",
    "list": "log_list() takes a list of int, float, bool or str",
    "row": "log_row() values must be int, float, bool or str",
    "table": "log_table() columns hold int, float, bool or str",
}


# -- scalars --------------------------------------------------------------------------


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
