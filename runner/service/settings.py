"""The daemon's settings: ``WS/daemon/settings.json`` (written by ``runner daemon start``),
then ``RUNNER_*`` variables, then defaults."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import daemon_client
from runner.errors import ConfigError
from runner.service import gpus as gpu_mod

if TYPE_CHECKING:
    from runner.workspace import Workspace

#: Seconds between samples of a run's ``sys/...`` metrics when nothing is configured.
DEFAULT_SYSTEM_METRICS_S = 10.0
#: The sampling interval: 0 switches sampling off, else seconds within this range.
SYSTEM_METRICS_RANGE_S = (0.05, 86400.0)
_SYSTEM_METRICS_RULE = (
    f"use 0 to switch system metrics off, or seconds from {SYSTEM_METRICS_RANGE_S[0]:g} "
    f"to {SYSTEM_METRICS_RANGE_S[1]:g}"
)
_MAX_CONCURRENT_RULE = "use a whole number >= 0 (0: no limit)"


@dataclass
class Settings:
    """Daemon settings: ``WS/daemon/settings.json``, written by ``runner daemon start``."""

    gpus: list[int]  #: GPU indices runs may use
    max_concurrent: int | None  #: runs at once (None: no limit)
    system_metrics_s: float  #: seconds between samples of sys/... metrics (0: off)


def default_max_concurrent() -> int | None:
    """Runs at once when nothing is configured: no limit, as azureml's local runs.

    GPU runs still wait for their GPUs. A fixed default would deadlock a parent that
    waits for more children than there are slots.
    """
    return None


def check_system_metrics_s(value: object, source: str) -> float:
    """Seconds between system-metric samples (0: off), or ConfigError naming ``source``.

    NaN, infinities, negatives and tiny intervals are refused: the daemon's sampling loop
    would spin (NaN, 1e-9) or never sample.
    """
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip() or "0")
        except ValueError:
            number = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    low, high = SYSTEM_METRICS_RANGE_S
    if number is None or not (number == 0 or low <= number <= high):
        raise ConfigError(f"{source} is {value!r}, which is not valid; {_SYSTEM_METRICS_RULE}")
    return number


def check_max_concurrent(value: object, source: str) -> int | None:
    """Runs at once (None: no limit, written as 0), or ConfigError naming ``source``."""
    number: int | None = None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        number = value
    if number is None:
        raise ConfigError(f"{source} is {value!r}, which is not valid; {_MAX_CONCURRENT_RULE}")
    return number or None


def settings_path(ws_path: Path) -> Path:
    """``WS/daemon/settings.json``."""
    return daemon_client.daemon_dir(ws_path) / "settings.json"


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings file as a dict ({} when there is none); ConfigError when it is garbled."""
    fix = "fix it, or delete it to use the defaults, then run `runner daemon start` again"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"daemon settings file {path} is not UTF-8 text; {fix}") from None
    except OSError as exc:
        raise ConfigError(
            f"daemon settings file {path} cannot be read ({exc.strerror}); {fix}"
        ) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"daemon settings file {path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"daemon settings file {path} holds a {type(data).__name__}, not a JSON object; {fix}"
        )
    return data


def load_settings(ws: Workspace, *, strict: bool = False) -> Settings:
    """Settings from the settings file, then ``RUNNER_*`` variables, then defaults.

    ``strict`` (``runner daemon start``): a garbled file or a bad value is a ConfigError
    naming it and the valid range. Otherwise (the daemon, which may have been started on
    demand by a submit) each problem is written to the daemon log and the default is used
    instead: a daemon that died over its settings would leave every submit waiting for it.
    """
    path = settings_path(ws.path)
    try:
        data = read_settings_file(path)
    except ConfigError as exc:
        if strict:
            raise
        sys.stderr.write(f"settings: {exc}; using the defaults instead\n")
        data = {}
    return settings_from(data, path, strict=strict)


def settings_from(data: dict[str, Any], path: Path, *, strict: bool = False) -> Settings:
    """Settings from the settings file's ``data`` (read from ``path``), then ``RUNNER_*``
    variables, then defaults; ``strict`` as for ``load_settings``."""
    problems: list[ConfigError] = []
    gpus = _load_gpus(data, quiet=strict)

    def value(key: str, env: str, default: object) -> tuple[object, str]:
        if key in data:
            return data[key], f"{key} in {path}"
        if os.environ.get(env, "") != "":
            return os.environ[env], env
        return default, "the default"

    mc, mc_source = value("max_concurrent", "RUNNER_MAX_CONCURRENT", None)
    max_concurrent = default_max_concurrent()
    if mc not in (None, ""):
        try:
            max_concurrent = check_max_concurrent(mc, mc_source)
        except ConfigError as exc:
            problems.append(exc)
    sm, sm_source = value("system_metrics_s", "RUNNER_SYSTEM_METRICS_S", DEFAULT_SYSTEM_METRICS_S)
    system_metrics_s = DEFAULT_SYSTEM_METRICS_S
    try:
        system_metrics_s = check_system_metrics_s(sm, sm_source)
    except ConfigError as exc:
        problems.append(exc)
    if problems and strict:
        raise problems[0]
    for problem in problems:
        sys.stderr.write(f"settings: {problem}; using the default instead\n")
    return Settings(gpus=gpus, max_concurrent=max_concurrent, system_metrics_s=system_metrics_s)


def _load_gpus(data: dict[str, Any], quiet: bool) -> list[int]:
    found = gpu_mod.discover()
    spec = data.get("gpus", os.environ.get("RUNNER_GPUS", "all"))
    text = (
        spec
        if isinstance(spec, str)
        else ",".join(map(str, spec))
        if isinstance(spec, list)
        else str(spec)
    )
    try:
        return gpu_mod.parse_gpu_list(text, found)
    except ValueError as exc:
        # A GPU the settings name is gone (or the text is bad): keep those of the named
        # ones that remain, never GPUs the settings left out (they may be someone else's).
        named = {int(p) for p in text.split(",") if p.strip().isdigit()}
        gpus = sorted(named & {g.index for g in found})
        if not quiet:
            sys.stderr.write(f"settings: {exc}; using GPUs {gpus}\n")
        return gpus
