"""User-managed environments: the interpreter as it is, nothing installed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from environments.base import PreparedEnvironment
from runner.environment import resolve_interpreter

if TYPE_CHECKING:
    from runner.environment import Environment


class UserManagedBuilder:
    """Uses the chosen interpreter as it is."""

    kind: ClassVar[str] = "user_managed"

    def __init__(self, default_python: str | None = None) -> None:
        self.default_python = default_python

    def prepare(self, env: Environment, log: Path) -> PreparedEnvironment:
        """Check the interpreter; nothing is built."""
        python = resolve_interpreter(env, self.default_python)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"user-managed environment {env.name!r}: using {python} as it is\n")
        return PreparedEnvironment(python=python)
