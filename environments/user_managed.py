"""User-managed environments: the interpreter as it is, nothing installed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from environments.base import PreparedEnvironment
from runner.errors import ConfigError

if TYPE_CHECKING:
    from runner.environment import Environment


def resolve_interpreter(env: Environment, default: str | None = None) -> str:
    """The interpreter a user-managed environment runs: interpreter_path, else ``default``.

    Raises ConfigError at submit time when the interpreter does not exist.
    """
    path = env.python.interpreter_path or default or sys.executable
    if os.sep not in path:
        found = shutil.which(path)
        if found is None:
            raise ConfigError(
                f"interpreter {path!r} of environment {env.name!r} is not on PATH; set "
                "env.python.interpreter_path to a full path"
            )
        path = found
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise ConfigError(
            f"interpreter {path!r} of environment {env.name!r} does not exist or is not "
            "executable; fix env.python.interpreter_path"
        )
    return path


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
