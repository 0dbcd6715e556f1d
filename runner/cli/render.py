"""How the CLI writes its results: strict JSON, tables, TSV, notes, queries."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.errors import UserError

if TYPE_CHECKING:
    from jmespath.parser import ParsedResult


PROG = "runner"
OUTPUT_FORMATS = ("json", "table", "tsv")


#: Longest text of one table cell; longer values end in "...".
_CELL_MAX = 60


#: How a float that JSON (RFC 8259) has no number for appears in the CLI's JSON output.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinite floats as the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"`` (a metric can hold them; strict JSON cannot). Strings, not null:
    null would read as "no value", and ``float()`` reads these three back."""
    if isinstance(value, float):
        return value if math.isfinite(value) else NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """The one way the CLI writes JSON: strict RFC 8259 (``strict_json``, then
    ``allow_nan=False``, so a value that slipped past raises instead of printing NaN)."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def note(message: str) -> None:
    """One line on stderr that is not an error."""
    print(f"{PROG}: note: {one_line(message)}", file=sys.stderr)


def jmespath_message(exc: Exception) -> str:
    """jmespath's multi-line message (expression, caret) as one line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first.rstrip(":").removesuffix(", for expression")
    position = getattr(exc, "lex_position", None)
    if position is None:
        position = getattr(exc, "lexer_position", None)
    if isinstance(position, int) and "column" not in first:
        first += f" at column {position}"
    return first


def compile_query(text: str | None) -> ParsedResult | None:
    if text is None:
        return None
    import jmespath
    import jmespath.exceptions

    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise UserError(
            f"--query {text!r} is not a valid JMESPath expression: {jmespath_message(exc)}"
        ) from exc


def one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines()]
    return " | ".join(line for line in lines if line)


def _cell(value: Any, limit: int = _CELL_MAX) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = ", ".join(k if v is None else f"{k}={_cell(v, 0)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(_cell(v, 0) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split()) if any(c in text for c in "\t\r\n") else text
    if limit and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _header(key: str) -> str:
    return key[:1].upper() + key[1:]


def _grid(header: list[str] | None, rows: list[list[str]]) -> str:
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = []
    if header:
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths).rstrip())
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return "\n".join(lines)


def render_table(value: Any, columns: Sequence[str] | None = None) -> str:
    """Aligned columns: a list of objects is one row each, an object is key/value rows."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(columns) if columns else list(dict.fromkeys(k for v in value for k in v))
        return _grid([_header(k) for k in keys], [[_cell(v.get(k)) for k in keys] for v in value])
    if isinstance(value, list):
        return _grid(["Result"], [[_cell(v)] for v in value]) if value else ""
    if isinstance(value, dict):
        keys = [k for k in columns if k in value] if columns else list(value)
        return _grid(["Key", "Value"], [[k, _cell(value[k])] for k in keys])
    return _cell(value, 0)


def render_tsv(value: Any) -> str:
    """Tab-separated values without a header (for ``while read`` loops)."""

    def field(v: Any) -> str:
        if isinstance(v, (dict, list)):
            v = dumps_json(v, separators=(",", ":"))
        return _cell(v, 0).replace("\t", " ")

    def line(v: Any) -> str:
        if isinstance(v, dict):
            return "\t".join(field(x) for x in v.values())
        if isinstance(v, list):
            return "\t".join(field(x) for x in v)
        return field(v)

    if isinstance(value, list):
        return "\n".join(line(v) for v in value)
    return line(value)
