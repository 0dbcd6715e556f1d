"""A short-lived py-rattler worker: one conda solve or one install from a lock, then exit.

Run by :mod:`environments.conda` as ``python rattler_worker.py`` (by path: it imports only the
standard library and py-rattler, never runner). The protocol:

- stdin: one JSON request, ``{"op": "solve", ...}`` or ``{"op": "install", ...}``
  (the fields are read in :func:`_solve` and :func:`_install`);
- stderr: progress lines (the caller appends them to the build log);
- stdout: exactly one JSON line, the result: ``{"ok": true, ...}``, or ``{"ok": false,
  "kind": ..., "message": ...}`` for a failure the caller explains to the user.

The worker always ends with ``os._exit`` after flushing: py-rattler's Rust threads can crash
the interpreter during finalization (SIGSEGV / "PyGILState_Release ... finalizing") in
10-27 % of short runs, after the work succeeded. Skipping finalization avoids that; the caller
also trusts the JSON result over the exit code (a 139 after ``"ok": true`` is a success, no
result is a failure whatever the exit code).
"""

from __future__ import annotations

import os
import sys

# Run by path, this folder comes first on sys.path, and its venv.py (or any module of
# ours named like one of the standard library's) would shadow the real one. (os and sys
# are loaded before sys.path is read, so they are the real ones.)
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import asyncio
import json
import time
import traceback
from pathlib import Path
from typing import Any

JSONDict = dict[str, Any]


class WorkerFailure(Exception):
    """A failure to report as ``{"ok": false, "kind": kind, "message": ...}``."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.extra = extra


def _progress(text: str) -> None:
    sys.stderr.write(f"rattler: {text}\n")
    sys.stderr.flush()


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


def _record_json(record: Any) -> JSONDict:
    """A RepoDataRecord as plain data (what a conda-lock entry needs, and a bit more)."""
    noarch = record.noarch
    kind = "python" if noarch.python else "generic" if noarch.generic else None
    return {
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "build_number": int(record.build_number),
        "subdir": str(record.subdir),
        "url": str(record.url),
        "channel": str(record.channel) if record.channel is not None else None,
        "file_name": str(record.file_name),
        "md5": _hex(record.md5),
        "sha256": _hex(record.sha256),
        "depends": [str(d) for d in record.depends],
        "constrains": [str(c) for c in record.constrains],
        "noarch": kind,
    }


async def _has_records(gateway: Any, channels: list[Any], platforms: list[Any], name: str) -> bool:
    """True when some channel has a package called ``name`` for these platforms."""
    found = await gateway.query(channels, platforms, [name], recursive=False)
    return any(len(records) > 0 for records in found)


def _package_names(specs: list[str]) -> list[str]:
    """The package names the specs ask for (WorkerFailure for a spec that is not valid)."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError

    names: list[str] = []
    for spec in specs:
        try:
            parsed = MatchSpec(spec)
        except InvalidMatchSpecError as exc:
            raise WorkerFailure("invalid-spec", f"conda spec {spec!r} is not valid: {exc}") from exc
        name = parsed.name.as_package_name() if parsed.name is not None else None
        if name is not None:
            names.append(name.normalized)
    return names


def _virtual_packages(described: list[list[str]]) -> list[Any]:
    """``[[name, version, build], ...]`` (``__glibc``, ``2.36``, ``0``) as py-rattler's."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    return [
        GenericVirtualPackage(PackageName(name), Version(version), BuildString(build or "0"))
        for name, version, build in described
    ]


async def _solve(request: JSONDict) -> JSONDict:
    from rattler import Channel, Gateway, solve
    from rattler.exceptions import (
        FetchRepoDataError,
        GatewayError,
        InvalidChannelError,
        SolverError,
    )
    from rattler.platform import Subdir
    from rattler.virtual_package import VirtualPackage

    channel_urls: list[str] = list(request["channels"])
    specs: list[str] = list(request["specs"])
    platform: str = request["platform"]
    platforms = [Subdir(platform), Subdir("noarch")]
    python: str | None = request.get("python")
    searched = ", ".join(channel_urls) or "(none)"
    if not channel_urls:
        raise WorkerFailure(
            "no-channel", "the environment has no conda channel to install packages from"
        )
    try:
        channels = [Channel(url) for url in channel_urls]
    except InvalidChannelError as exc:
        raise WorkerFailure("channel", f"a conda channel is not valid: {exc}") from exc
    names = _package_names(specs)
    gateway = Gateway(cache_dir=request.get("repodata_cache"))
    t0 = time.monotonic()
    _progress(f"solving {specs} for {platform} from {searched}")
    try:
        python_added = False
        if python is not None:
            if await _has_records(gateway, channels, platforms, "python"):
                specs = [f"python={python}", *specs]
                python_added = True
                _progress(f"python={python} added (a channel has python)")
            else:
                _progress(f"no channel has python: python={python} is not part of the solve")
        virtual: list[Any]
        if request.get("virtual_packages") is not None:  # another host's, as it reported them
            virtual = _virtual_packages(request["virtual_packages"])
        elif request.get("detect_virtual", True):
            virtual = VirtualPackage.detect()
        else:
            virtual = []
        try:
            records = await solve(
                sources=channels,
                specs=specs,
                gateway=gateway,
                platforms=platforms,
                virtual_packages=virtual,
            )
        except SolverError as exc:
            unknown = [n for n in names if not await _has_records(gateway, channels, platforms, n)]
            if unknown:
                raise WorkerFailure(
                    "unknown-package",
                    f"conda package(s) {', '.join(unknown)} not found in the channel(s) "
                    f"{searched} (platforms {platform}, noarch)",
                    unknown=unknown,
                ) from exc
            raise WorkerFailure(
                "unsolvable",
                f"the conda specs {specs} cannot be satisfied together from the channel(s) "
                f"{searched} (platforms {platform}, noarch): {str(exc).strip()}",
            ) from exc
    except (GatewayError, FetchRepoDataError) as exc:
        raise WorkerFailure(
            "channel",
            f"the conda channel(s) {searched} cannot be read for {platform}/noarch: "
            f"{' / '.join(line.strip() for line in str(exc).splitlines() if line.strip())}",
        ) from exc
    solved = [_record_json(r) for r in records]
    _progress(
        f"solved {len(solved)} package(s) in {time.monotonic() - t0:.3f} s: "
        + ", ".join(f"{r['name']}={r['version']}={r['build']}" for r in solved)
    )
    return {"ok": True, "records": solved, "python_added": python_added, "specs": specs}


async def _install(request: JSONDict) -> JSONDict:
    from rattler import LockFile, install
    from rattler.exceptions import ParseCondaLockError

    lock_file: str = request["lock_file"]
    prefix: str = request["prefix"]
    platform: str = request["platform"]
    t0 = time.monotonic()
    try:
        lock = LockFile.from_path(Path(lock_file))
    except ParseCondaLockError as exc:
        raise WorkerFailure("lock", f"{lock_file} is not a readable lock file: {exc}") from exc
    env = lock.default_environment()
    if env is None:
        raise WorkerFailure("lock", f"{lock_file} has no default environment")
    matching = [p for p in env.platforms() if p.name == platform]
    if not matching:
        have = ", ".join(p.name for p in env.platforms()) or "none"
        raise WorkerFailure(
            "platform", f"{lock_file} locks platform(s) {have}, not this machine's {platform}"
        )
    records = env.conda_repodata_records_for_platform(matching[0]) or []
    archives: dict[str, str] | None = request.get("archives")
    if archives is not None:
        # The archives were brought here already (a host without the channels): each
        # package comes from its file, found by the sha256 the lock names.
        for record in records:
            path = archives.get(_hex(record.sha256) or "")
            if path is None:
                raise WorkerFailure(
                    "archive",
                    f"no archive was brought for {record.name.normalized}={record.version}",
                )
            record.url = Path(path).as_uri()
    _progress(f"installing {len(records)} conda package(s) from {lock_file} into {prefix}")
    await install(
        records,
        target_prefix=prefix,
        cache_dir=request.get("package_cache"),
        show_progress=False,
    )
    installed = [f"{r.name.normalized}={r.version}={r.build}" for r in records]
    _progress(f"installed {len(installed)} package(s) in {time.monotonic() - t0:.3f} s")
    return {"ok": True, "installed": installed}


def _run(request: JSONDict) -> JSONDict:
    op = request.get("op")
    if op == "solve":
        return asyncio.run(_solve(request))
    if op == "install":
        return asyncio.run(_install(request))
    raise WorkerFailure("protocol", f"unknown op {op!r}; expected 'solve' or 'install'")


def main() -> None:
    """Read the request, do it, print the result; always leave through ``os._exit``."""
    code = 0
    try:
        try:
            import rattler  # noqa: F401  (a clear message when py-rattler is missing)
        except ImportError as exc:
            raise WorkerFailure(
                "missing",
                f"py-rattler is not installed in {sys.executable} ({exc}); "
                "pip install py-rattler conda-lock",
            ) from exc
        try:
            request = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise WorkerFailure("protocol", f"the request is not JSON: {exc}") from exc
        result = _run(request)
    except WorkerFailure as exc:
        result = {"ok": False, "kind": exc.kind, "message": str(exc), **exc.extra}
        code = 1
    except Exception as exc:  # a bug or an unexpected rattler error: report it all
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}
        code = 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter finalization: see the module docstring


if __name__ == "__main__":
    main()
