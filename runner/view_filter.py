"""The run filter language of the studio (and ``runner.views``), compiled to
parameterised SQL: the text never reaches ``eval`` nor the SQL text, only bound values.

    status IN (Running, Queued) AND tags.lr >= 0.01
    (metrics.loss < 0.2 OR properties.best = yes) AND created >= 2026-01-01
    name ~ "resnet*" AND NOT target = local AND duration > 5m
    tags.baseline                          # the run has the tag (any value)

Fields: ``status``, ``target``, ``type``, ``name`` (display name, else the id), ``id``,
``parent`` (the parent run's id), ``experiment``, ``created``, ``started``, ``ended`` (ISO dates/times in UTC, or seconds
since the epoch), ``duration`` (seconds, or ``90s``/``5m``/``2h``/``1d``),
``tags.KEY``, ``properties.KEY`` (``props.KEY``) and ``metrics.NAME`` (the metric's last
logged value). Operators: ``= != < <= > >=``, ``~`` / ``!~`` (a glob: ``*``, ``?``,
``[ab]``), ``IN (a, b, ...)``; ``AND``, ``OR``, ``NOT`` and parentheses. Keys and values
with spaces or operators are quoted with ``"`` or ``'``. Standard library only.
"""

from __future__ import annotations

import json
import re
from array import array
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.store import Store

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|!~|=|<|>|~|\(|\)|,)
      | (?P<word>[^\s()=<>!~,"']+)
    )""",
    re.VERBOSE,
)
_PLAIN = {
    "status": "r.status",
    "target": "r.target",
    "type": "r.type",
    "id": "r.id",
    "parent": "r.parent_id",
    "name": "COALESCE(r.display_name, r.id)",
    "experiment": "e.name",
}
_TIMES = {"created": "r.created_utc", "started": "r.start_utc", "ended": "r.end_utc"}
_DURATION = "(COALESCE(r.end_utc, r.heartbeat_utc) - r.start_utc)"
#: The key-value fields (``tags.KEY``, ...) and their tables; the runs table sorts by them too.
KV_TABLES = {"tags": "tags", "properties": "properties", "props": "properties"}
_COMPARE = {"=", "!=", "<", "<=", ">", ">="}
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class FilterError(ValueError):
    """A filter that does not parse; the message says where and what is expected."""


class _Token:
    __slots__ = ("kind", "pos", "text")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind = kind  # "str", "op", "word" or "end"
        self.text = text
        self.pos = pos


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            out.append(_Token("end", "", pos))
            return out
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"filter: unexpected {text[pos]!r} at column {pos + 1}")
        kind = m.lastgroup or "word"
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append(_Token(kind, value, m.start(kind)))
        pos = m.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.params: list[Any] = []

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "word" and tok.text.upper() == word:
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise self.error(tok, f"{op!r}")

    def error(self, tok: _Token, wanted: str) -> FilterError:
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return FilterError(f"filter: expected {wanted} at column {tok.pos + 1}, found {found}")

    def parse(self) -> str:
        sql = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "AND, OR or the end")
        return sql

    def or_(self) -> str:
        parts = [self.and_()]
        while self.keyword("OR"):
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_(self) -> str:
        parts = [self.unary()]
        while self.keyword("AND"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def unary(self) -> str:
        if self.keyword("NOT"):
            return f"NOT ({self.unary()})"
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.or_()
            self.expect(")")
            return inner
        return self.condition()

    def value(self) -> _Token:
        tok = self.take()
        if tok.kind not in ("word", "str"):
            raise self.error(tok, "a value")
        return tok

    def condition(self) -> str:
        tok = self.take()
        if tok.kind not in ("word", "str"):
            raise self.error(tok, "a field (status, tags.KEY, metrics.NAME, ...)")
        field = tok.text
        nxt = self.peek()
        if self.keyword("IN"):
            self.expect("(")
            values = [self.value()]
            while self.peek().text == "," and self.peek().kind == "op":
                self.take()
                values.append(self.value())
            self.expect(")")
            return self.field_sql(tok, field, "IN", values)
        if nxt.kind == "op" and (nxt.text in _COMPARE or nxt.text in ("~", "!~")):
            self.take()
            return self.field_sql(tok, field, nxt.text, [self.value()])
        return self.field_sql(tok, field, "EXISTS", [])

    def field_sql(self, tok: _Token, field: str, op: str, values: list[_Token]) -> str:
        head, dot, rest = field.partition(".")
        if dot and head in KV_TABLES:
            return self.key_value(KV_TABLES[head], rest, op, values)
        if dot and head == "metrics":
            expr = (
                "(SELECT metric_last(m.enc, m.data) FROM metrics m WHERE m.run_id = r.id "
                "AND m.name = ? ORDER BY m.id DESC LIMIT 1)"
            )
            self.params.append(rest)
            if op == "EXISTS":
                return f"{expr} IS NOT NULL"
            return self.compare(expr, op, [_number(v) for v in values])
        if field in _PLAIN:
            if op == "EXISTS":
                raise self.error(self.peek(), f"an operator after {field!r}")
            return self.compare(_PLAIN[field], op, [v.text for v in values])
        if field in _TIMES:
            if op == "EXISTS":
                return f"{_TIMES[field]} IS NOT NULL"
            return self.compare(_TIMES[field], op, [_time(v) for v in values])
        if field == "duration":
            if op == "EXISTS":
                return f"{_DURATION} IS NOT NULL"
            return self.compare(_DURATION, op, [_seconds(v) for v in values])
        raise FilterError(
            f"filter: unknown field {field!r} at column {tok.pos + 1}; use status, target, "
            "type, name, id, parent, experiment, created, started, ended, duration, tags.KEY, "
            "properties.KEY or metrics.NAME"
        )

    def key_value(self, table: str, key: str, op: str, values: list[_Token]) -> str:
        if not key:
            raise FilterError(f"filter: {table}. needs a key, e.g. {table}.lr")
        head = f"SELECT 1 FROM {table} kv WHERE kv.run_id = r.id AND kv.key = ?"
        self.params.append(key)
        if op == "EXISTS":
            return f"EXISTS ({head})"
        if op in ("!=", "!~"):
            # "differs": runs without the key match too.
            inner = self.compare("kv.value", "=" if op == "!=" else "~", [v.text for v in values])
            return f"NOT EXISTS ({head} AND {inner})"
        if op in ("<", "<=", ">", ">="):
            inner = self.compare("CAST(kv.value AS REAL)", op, [_number(v) for v in values])
            return f"EXISTS ({head} AND kv.value <> '' AND {inner})"
        inner = self.compare("kv.value", op, [v.text for v in values])
        return f"EXISTS ({head} AND {inner})"

    def compare(self, expr: str, op: str, values: list[Any]) -> str:
        if op == "IN":
            self.params.extend(values)
            return f"{expr} IN ({', '.join('?' * len(values))})"
        self.params.append(values[0])
        if op == "~":
            return f"{expr} GLOB ?"
        if op == "!~":
            return f"({expr} IS NULL OR {expr} NOT GLOB ?)"
        if op == "!=":
            return f"({expr} IS NULL OR {expr} <> ?)"
        return f"{expr} {op} ?"


def _number(tok: _Token) -> float:
    try:
        return float(tok.text)
    except ValueError:
        raise FilterError(f"filter: {tok.text!r} at column {tok.pos + 1} is not a number") from None


def _time(tok: _Token) -> float:
    try:
        return float(tok.text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(tok.text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"filter: {tok.text!r} at column {tok.pos + 1} is not a date; write "
            "2026-01-31 or 2026-01-31T12:00 (UTC), or seconds since the epoch"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _seconds(tok: _Token) -> float:
    text = tok.text
    scale = _UNITS.get(text[-1:].lower())
    try:
        return float(text[:-1]) * scale if scale else float(text)
    except ValueError:
        raise FilterError(
            f"filter: {text!r} at column {tok.pos + 1} is not a duration; write 90, 90s, "
            "5m, 2h or 1d"
        ) from None


def compile_filter(text: str) -> tuple[str, list[Any]]:
    """``(sql, params)`` of a filter over ``runs r JOIN experiments e``; ``("", [])`` for
    an empty one. FilterError (a ValueError) says where a bad filter goes wrong."""
    if not text.strip():
        return "", []
    parser = _Parser(text)
    return parser.parse(), parser.params


# -- SQL functions over stored metric chunks --------------------------------------------


def _values(enc: str, data: bytes) -> list[Any]:
    if enc in ("f8", "i8"):
        a = array("d" if enc == "f8" else "q")
        a.frombytes(data)
        return a.tolist()
    if enc == "b1":
        return list(data)
    decoded = json.loads(data)
    return [v for v in decoded if isinstance(v, (int, float))]


def _last(enc: str, data: bytes) -> float | None:
    if enc in ("f8", "i8"):
        width = 8
        a = array("d" if enc == "f8" else "q")
        a.frombytes(data[-width:])
        return float(a[0]) if a else None
    values = _values(enc, data)
    return float(values[-1]) if values else None


def _min(enc: str, data: bytes) -> float | None:
    values = _values(enc, data)
    return float(min(values)) if values else None


def _max(enc: str, data: bytes) -> float | None:
    values = _values(enc, data)
    return float(max(values)) if values else None


def _as_number(text: object) -> float | None:
    """A tag or property value as a number, or NULL when it is not one (sorting puts
    numbers in numeric order, ``2`` before ``10``)."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def register_functions(store: Store) -> None:
    """Make ``metric_last/min/max(enc, data)`` (of one stored chunk) and
    ``as_number(text)`` known to the
    store's connection; the filters and metric columns use them. Done on every call
    (a few microseconds): the store may have reopened its connection since."""
    with store._lock:
        conn = store.conn
        conn.create_function("metric_last", 2, _last, deterministic=True)
        conn.create_function("metric_min", 2, _min, deterministic=True)
        conn.create_function("metric_max", 2, _max, deterministic=True)
        conn.create_function("as_number", 1, _as_number, deterministic=True)
