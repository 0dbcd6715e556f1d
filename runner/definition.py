"""RunDefinition: the one contract between ``submit`` and the daemon.

``submit`` checks everything the user can get wrong and records a RunDefinition with the
run (``runs.definition``, JSON with azureml's camelCase names, which ``get_details()``
shows as ``runDefinition``); the daemon reads it back with ``from_json`` and never
guesses at a key. Standard library only: ``run.submit_child`` builds one inside a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

#: A JSON object as read from the store.
JSONDict = dict[str, Any]
#: ``ScriptRunConfig(command=...)``: a shell string or an argv list.
Command = Union[str, tuple[str, ...], None]


@dataclass(frozen=True)
class RunDefinition:
    """What a submitted run is: its script or command, environment, target and limits."""

    script: str | None = None  #: the script, relative to the source folder
    command: Command = None  #: a shell string or an argv, instead of ``script``
    arguments: tuple[str, ...] = ()
    target: str = "local"  #: the compute target's name
    source_directory: str | None = None
    snapshot_id: str | None = None
    environment: JSONDict | None = None  #: ``Environment.to_dict()``; None: the default
    python: str | None = None  #: a user-managed environment's interpreter, resolved at submit
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    max_run_duration_seconds: float | None = None
    gpu_count: int = 0
    cancel_grace_seconds: float | None = None
    priority: int = 0
    run_configuration: JSONDict | None = None  #: ``RunConfiguration.to_dict()``, shown only
    distributed: JSONDict | None = None  #: ``jobconfig.distributed_definition``; None: one
    supervised: bool = True  #: the daemon runs it (False: a run of start_logging)

    #: Seconds between SIGTERM and SIGKILL on cancel when none was configured.
    DEFAULT_GRACE_S = 10.0

    @property
    def grace_s(self) -> float:
        """Seconds between SIGTERM and SIGKILL when the run is canceled."""
        g = self.cancel_grace_seconds
        return self.DEFAULT_GRACE_S if g is None else float(g)

    @property
    def docker(self) -> JSONDict:
        """The environment's docker section (empty when it has none)."""
        return dict((self.environment or {}).get("docker") or {})

    def to_json(self) -> JSONDict:
        """The stored form (azureml's camelCase names)."""
        command = list(self.command) if isinstance(self.command, tuple) else self.command
        return {
            "supervised": self.supervised,
            "script": self.script,
            "command": command,
            "arguments": list(self.arguments),
            "target": self.target,
            "sourceDirectory": self.source_directory,
            "snapshotId": self.snapshot_id,
            "environment": self.environment,
            "python": self.python,
            "environmentVariables": dict(self.environment_variables),
            "maxRunDurationSeconds": self.max_run_duration_seconds,
            "gpuCount": self.gpu_count,
            "cancelGraceSeconds": self.cancel_grace_seconds,
            "priority": self.priority,
            "runConfiguration": self.run_configuration,
            "distributed": self.distributed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | None) -> RunDefinition:
        """Read a stored definition (text or object); missing keys take their defaults."""
        if data is None or isinstance(data, str):
            data = json.loads(data) if data else {}
        assert isinstance(data, Mapping)  # noqa: S101 - json.loads of a stored object
        command = data.get("command")
        return cls(
            script=data.get("script"),
            command=tuple(str(a) for a in command) if isinstance(command, list) else command,
            arguments=tuple(str(a) for a in data.get("arguments") or ()),
            target=str(data.get("target") or "local"),
            source_directory=data.get("sourceDirectory"),
            snapshot_id=data.get("snapshotId"),
            environment=data.get("environment") or None,
            python=data.get("python"),
            environment_variables={
                str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()
            },
            max_run_duration_seconds=data.get("maxRunDurationSeconds"),
            gpu_count=int(data.get("gpuCount") or 0),
            cancel_grace_seconds=data.get("cancelGraceSeconds"),
            priority=int(data.get("priority") or 0),
            run_configuration=data.get("runConfiguration"),
            distributed=data.get("distributed") or None,
            supervised=bool(data.get("supervised")),
        )
