"""GPU discovery and sampling through NVML (nvidia-ml-py), imported lazily.

No driver, no library, or no GPU simply means no GPUs: never an error. Host side only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML reports it."""

    index: int  #: NVML index (what CUDA_VISIBLE_DEVICES names)
    name: str  #: e.g. "NVIDIA H100 80GB HBM3"
    uuid: str  #: stable identity
    memory_total_mb: int  #: total memory in MiB


_lock = threading.Lock()
_nvml: Any = None
_init_failed = False


def _lib() -> Any:
    """The initialised pynvml module, or None when NVML is not usable here."""
    global _nvml, _init_failed
    with _lock:
        if _nvml is not None or _init_failed:
            return _nvml
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no package, no libnvidia-ml, no driver: no GPUs
            _init_failed = True
            return None
        _nvml = pynvml
        return _nvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover() -> list[Gpu]:
    """Every GPU NVML sees (an empty list without NVML)."""
    nv = _lib()
    if nv is None:
        return []
    gpus = []
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            gpus.append(
                Gpu(
                    index=i,
                    name=_text(nv.nvmlDeviceGetName(h)),
                    uuid=_text(nv.nvmlDeviceGetUUID(h)),
                    memory_total_mb=int(mem.total) >> 20,
                )
            )
    except Exception:  # a broken driver counts as no GPUs, not as a crash of the daemon
        return []
    return gpus


def sample(index: int) -> dict[str, float]:
    """Utilisation (%) and memory used (MiB) of one GPU; {} when it cannot be read."""
    nv = _lib()
    if nv is None:
        return {}
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        util = nv.nvmlDeviceGetUtilizationRates(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
    except Exception:
        return {}
    return {"utilization": float(util.gpu), "memory_used_mb": float(int(mem.used) >> 20)}


def parse_gpu_list(text: str, known: list[Gpu]) -> list[int]:
    """``all`` or ``0,1,3`` -> GPU indices; ValueError naming the known ones otherwise."""
    indices = [g.index for g in known]
    if text.strip().lower() == "all":
        return indices
    if text.strip().lower() in ("", "none"):
        return []
    chosen = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--gpus {text!r}: {part!r} is not a GPU index; use 'all' or e.g. 0,1")
        i = int(part)
        if i not in indices:
            raise ValueError(f"--gpus {text!r}: GPU {i} does not exist here; GPUs found: {indices}")
        chosen.append(i)
    return sorted(set(chosen))
