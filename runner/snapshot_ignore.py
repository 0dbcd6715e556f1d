"""The ignore files of a snapshot: ``.amlignore`` / ``.gitignore`` patterns, compiled.

The matcher follows the gitignore documentation and agrees with ``git ls-files
--exclude-standard`` (tests/runner/test_snapshot.py compares them on random patterns).
One known difference: a ``**`` glued to other characters (``b**``) is a plain ``*`` here,
as documented, while git lets it cross ``/`` in anchored patterns. Which file applies
where is decided by the walk (:mod:`runner.snapshot_walk`).

Imported by the in-run client: standard library only, and it must import on Python 3.9.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Rule:
    """One gitignore pattern, compiled."""

    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


@dataclass(frozen=True)
class _IgnoreFile:
    """The rules of one ignore file; ``base`` is its folder as ``'a/b/'`` ('' at the root)."""

    base: str
    rules: tuple[_Rule, ...]

    def decide(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by '!', None: no rule of this file matches."""
        sub = rel[len(self.base) :]
        for rule in reversed(self.rules):  # the last matching pattern wins
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.fullmatch(sub):
                return not rule.negate
        return None


_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}

_Token = tuple[str, bool]  # (character, escaped by a backslash)


def _tokenize(line: str) -> list[_Token] | None:
    """Split a pattern into characters, marking backslash-escaped ones; None if invalid."""
    tokens: list[_Token] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if i + 1 == len(line):
                return None  # a trailing backslash: git never matches such a pattern
            tokens.append((line[i + 1], True))
            i += 2
        else:
            tokens.append((ch, False))
            i += 1
    return tokens


def _bracket(tokens: list[_Token], start: int) -> tuple[str, int] | None:
    """Translate the bracket expression at ``tokens[start]`` ('['): (regex, next index).

    None when the '[' is never closed (it is then a literal '['). An unknown class such
    as '[[:foo:]]' matches nothing, as in git.
    """
    i = start + 1
    negate = False
    valid = True
    if i < len(tokens) and tokens[i] in (("!", False), ("^", False)):
        negate = True
        i += 1
    parts: list[str] = []
    first = True
    while i < len(tokens):
        ch, esc = tokens[i]
        if ch == "]" and not esc and not first:
            body = "".join(parts)
            if not valid:
                return "(?!)", i + 1
            if negate:
                return f"[^/{body}]", i + 1
            return f"(?!/)[{body}]", i + 1  # as in git, a class never matches the separator
        first = False
        if ch == "[" and not esc and i + 1 < len(tokens) and tokens[i + 1] == (":", False):
            end = _posix_class_end(tokens, i + 2)
            if end is None:
                parts.append(re.escape(ch))
                i += 1
                continue
            name = "".join(c for c, _ in tokens[i + 2 : end])
            valid = valid and name in _POSIX_CLASSES
            parts.append(_POSIX_CLASSES.get(name, ""))
            i = end + 2
            continue
        if i + 2 < len(tokens) and tokens[i + 1] == ("-", False) and tokens[i + 2] != ("]", False):
            hi = tokens[i + 2][0]
            # git matches the first character even when the range is reversed ('[z-a]': 'z')
            parts.append(f"{re.escape(ch)}-{re.escape(hi)}" if ch <= hi else re.escape(ch))
            i += 3
            continue
        parts.append(re.escape(ch))
        i += 1
    return None


def _posix_class_end(tokens: list[_Token], i: int) -> int | None:
    """Index of the ':' of the ':]' closing a '[:name:]' class, or None."""
    while i + 1 < len(tokens):
        if tokens[i] == (":", False) and tokens[i + 1] == ("]", False):
            return i
        if not tokens[i][0].isalpha():
            return None
        i += 1
    return None


def _translate(tokens: list[_Token]) -> str:
    """The regex body for a pattern (without anchoring)."""
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        ch, esc = tokens[i]
        if esc:
            out.append(re.escape(ch))
            i += 1
        elif ch == "*":
            j = i
            while j < n and tokens[j] == ("*", False):
                j += 1
            at_start = i == 0 or tokens[i - 1] == ("/", False)
            at_end = j == n or tokens[j] == ("/", False)
            if j - i >= 2 and at_start and at_end:
                if j < n:  # '**/': zero or more folders
                    out.append("(?:.*/)?")
                    j += 1
                else:  # trailing '**': everything inside
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            translated = _bracket(tokens, i)
            if translated is None:
                out.append(re.escape(ch))
                i += 1
            else:
                out.append(translated[0])
                i = translated[1]
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


def _parse_rule(line: str) -> _Rule | None:
    """Compile one line of an ignore file; None for blanks, comments and invalid lines."""
    if not line or line.startswith("#"):
        return None
    tokens = _tokenize(line)
    if tokens is None:
        return None
    while tokens and tokens[-1] == (" ", False):  # trailing spaces, unless escaped
        tokens.pop()
    negate = False
    if tokens and tokens[0] == ("!", False):
        negate = True
        tokens = tokens[1:]
    dir_only = False
    if tokens and tokens[-1] == ("/", False):
        dir_only = True
        tokens = tokens[:-1]
    if not tokens:
        return None
    anchored = ("/", False) in tokens
    if tokens[0] == ("/", False):
        tokens = tokens[1:]
        if not tokens:
            return None
    body = _translate(tokens)
    if not anchored:
        body = "(?:.*/)?" + body
    return _Rule(re.compile(body, re.DOTALL), negate, dir_only)


def _parse_ignore(text: str) -> tuple[_Rule, ...]:
    """Compile the text of an ignore file."""
    if text.startswith("\ufeff"):
        text = text[1:]
    rules = []
    for raw in text.split("\n"):
        rule = _parse_rule(raw[:-1] if raw.endswith("\r") else raw)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _is_ignored(ignores: tuple[_IgnoreFile, ...], rel: str, is_dir: bool) -> bool:
    for ignore in reversed(ignores):  # a deeper ignore file overrides a shallower one
        decided = ignore.decide(rel, is_dir)
        if decided is not None:
            return decided
    return False
