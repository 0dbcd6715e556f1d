"""The environment-builder interface and the value it produces."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from runner.environment import Environment

_PIP_ONLY = re.compile(r"^(?:[^:\s]+::)?pip(?:\s*[=<>!~].*|\s+\S.*)?$")


def is_pip_spec(spec: str) -> bool:
    """True for a conda spec of pip itself (``pip``, ``pip=24.0``, ``conda-forge::pip``)."""
    return bool(_PIP_ONLY.match(spec))


@dataclass(frozen=True, slots=True)
class PreparedEnvironment:
    """A ready environment: how to start Python in it (ray's runtime_env idea)."""

    python: str  #: the interpreter to run scripts with
    env: Mapping[str, str] = field(default_factory=dict)  #: variables it needs set
    argv_prefix: tuple[str, ...] = ()  #: e.g. ("conda", "run", ...); empty for plain python
    image: str | None = None  #: a docker image to run in, when there is one
    lock_file: Path | None = None  #: the lock that rebuilds it exactly, when there is one


class EnvironmentBuilder(Protocol):
    """Turns an Environment definition into a PreparedEnvironment."""

    kind: ClassVar[str]

    def prepare(self, env: Environment, log: Path) -> PreparedEnvironment:
        """Build (or find in the cache) the environment, writing progress to ``log``."""
