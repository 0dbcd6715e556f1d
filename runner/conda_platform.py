"""Which conda platform (subdir) a machine is: standard library only, so that a host's
agent (``runner.remote_agent``) and this machine's builds (``environments.conda_definition``)
read the same table."""

from __future__ import annotations

#: uname machine -> conda's CPU name on Linux.
_LINUX_ARCHES = {
    "x86_64": "64",
    "amd64": "64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def conda_subdir(system: str, machine: str) -> str | None:
    """The conda platform (``linux-64``, ``osx-arm64``...) of ``sys.platform`` and a lowered
    ``platform.machine()``; None for a machine conda has none for."""
    if system.startswith("linux"):
        arch = _LINUX_ARCHES.get(machine)
        return f"linux-{arch}" if arch else None
    if system == "darwin":
        return {"x86_64": "osx-64", "arm64": "osx-arm64"}.get(machine)
    if system == "win32":
        return {"amd64": "win-64", "x86_64": "win-64", "arm64": "win-arm64"}.get(machine)
    return None
