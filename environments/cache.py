"""The build cache of prepared environments: one folder per key, built once, never half-used.

Layout under :func:`cache_root` (shared by every workspace on the machine, so two workspaces
that ask for the same environment build it once)::

    <root>/<key>/                 the environment; usable only once it holds .complete
    <root>/<key>/.complete        JSON (key, build seconds, time), written last, atomically
    <root>/.locks/<key>.lock      a filelock per key, held while checking and building

Design: the environment is built **in its final folder**, under the per-key lock, and the
``.complete`` marker is written last. Not in a temporary folder renamed into place, because
environments are not relocatable in general: a venv's entry-point scripts and ``activate``
embed the absolute prefix (only ``bin/python`` of a uv venv survives a move), and a conda
prefix has it patched into files and binaries at install time. Building in place works for
every builder, and the contract is the same as with a rename:

- Nothing half-made is ever used: a folder counts only when its marker exists, and the marker
  is written (tmp file + ``os.replace``) after the build returned.
- A crashed build is cleaned and rebuilt: a folder without a marker, found while holding the
  lock, can only be the leftover of a builder that died (the lock is released by the kernel
  when its holder dies), so it is deleted before building again.
- A failed build deletes its folder, then raises :class:`~runner.errors.EnvironmentBuildError`
  with the log path and the log's last lines.
- N processes asking for the same new key build it once: the first takes the lock and
  builds, the others wait on the lock, then find the marker (a hit).

A hit costs two ``stat`` calls and a log line: no lock, no subprocess, no third-party import.
Complete folders are never modified or deleted here, except one whose ``is_valid`` check
fails (a venv whose base interpreter was uninstalled), which is rebuilt under the lock.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from runner.errors import EnvironmentBuildError, UserError

__all__ = [
    "COMPLETE_MARKER",
    "EnvironmentCache",
    "cache_root",
    "log_line",
    "log_size",
    "log_tail",
]

#: The file written last into a finished environment folder.
COMPLETE_MARKER = ".complete"
#: The variable that moves the cache (default ``~/.cache/runner/envs``).
CACHE_ENV_VAR = "RUNNER_ENV_CACHE"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TAIL_LINES = 40


def cache_root() -> Path:
    """The cache folder: ``$RUNNER_ENV_CACHE``, else ``~/.cache/runner/envs``."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "runner" / "envs"


def log_line(log: Path, text: str) -> None:
    """Append one line to a build log (created with its folder if needed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(text.rstrip("\n") + "\n")


def log_size(log: Path) -> int:
    """The size of a log now (0 when it does not exist): where what comes next starts."""
    try:
        return log.stat().st_size
    except OSError:
        return 0


def log_tail(log: Path, lines: int = _TAIL_LINES, *, since: int = 0) -> str:
    """The last ``lines`` lines of a log, after byte offset ``since``; "" if unreadable."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(since, handle.tell() - 32768))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EnvironmentCache:
    """Folders built once per key, shared by processes through a file lock per key.

    Args:
        root: the cache folder; default :func:`cache_root` (read when the cache is made).
        lock_timeout_s: how long to wait for another process's build of the same key;
            None waits as long as it takes.

    Example:
        >>> cache = EnvironmentCache(tmp_path)  # doctest: +SKIP
        >>> path = cache.get_or_build("venv-3f2a", build_venv, log)  # doctest: +SKIP
    """

    def __init__(self, root: Path | None = None, *, lock_timeout_s: float | None = None) -> None:
        self.root = cache_root() if root is None else Path(root)
        self.lock_timeout_s = lock_timeout_s

    def path_for(self, key: str) -> Path:
        """The folder of ``key`` (whether or not it is built)."""
        if not _KEY.match(key):
            raise ValueError(f"cache key {key!r} is not a short name of letters, digits, '._-'")
        return self.root / key

    def is_complete(self, key: str) -> bool:
        """True when ``key`` is built (its marker exists)."""
        return (self.path_for(key) / COMPLETE_MARKER).is_file()

    def get_or_build(
        self,
        key: str,
        build: Callable[[Path], None],
        log: Path,
        *,
        is_valid: Callable[[Path], bool] | None = None,
    ) -> Path:
        """The folder of ``key``, built by ``build(folder)`` unless it is already complete.

        Args:
            key: the cache key (a spec hash, with a builder prefix).
            build: creates the environment in the folder it is given, which does not exist
                yet; it raises to fail the build.
            log: the build log; progress lines are appended, and ``build`` writes its own.
            is_valid: an extra check of a complete folder (cheap: no subprocess); a folder
                that fails it is rebuilt.

        Raises:
            EnvironmentBuildError: the build failed (its folder is gone); the message has
                the log's last lines and ``log_path`` the log.
            UserError: raised by ``build`` for a problem the user can fix (a missing Python);
                passed on as it is, after the folder is deleted.
        """
        path = self.path_for(key)
        if (path / COMPLETE_MARKER).is_file() and (is_valid is None or is_valid(path)):
            log_line(log, f"cache hit: {path}")
            return path
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".locks").mkdir(exist_ok=True)

        from filelock import FileLock, Timeout  # only builds need it

        lock = FileLock(str(self.root / ".locks" / f"{key}.lock"))
        t0 = time.monotonic()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log_line(log, f"waiting: another process is building {key}...")
            try:
                lock.acquire(timeout=-1 if self.lock_timeout_s is None else self.lock_timeout_s)
            except Timeout as exc:
                raise EnvironmentBuildError(
                    f"environment {key} is still being built by another process after "
                    f"{self.lock_timeout_s} s (lock {lock.lock_file}); wait and retry, or end "
                    "that build",
                    log_path=str(log),
                ) from exc
            log_line(log, f"waited {time.monotonic() - t0:.2f} s for the lock of {key}")
        try:
            return self._build_locked(key, path, build, log, is_valid)
        finally:
            lock.release()

    def _build_locked(
        self,
        key: str,
        path: Path,
        build: Callable[[Path], None],
        log: Path,
        is_valid: Callable[[Path], bool] | None,
    ) -> Path:
        marker = path / COMPLETE_MARKER
        if marker.is_file():
            if is_valid is None or is_valid(path):
                log_line(log, f"cache hit: {path}")
                return path
            log_line(log, f"cached environment {path} is broken; deleting and rebuilding it")
        elif path.exists():
            log_line(log, f"deleting the half-built environment {path} (a crashed build)")
        _remove(path)
        start = log_size(log)  # the tail of a failure shows this build's lines only
        log_line(log, f"building environment {key} in {path}...")
        t0 = time.monotonic()
        try:
            build(path)
            _write_marker(marker, key, time.monotonic() - t0)
        except BaseException as exc:
            _remove(path)
            log_line(log, f"building environment {key} failed after {time.monotonic() - t0:.2f} s")
            if isinstance(exc, UserError) or not isinstance(exc, Exception):
                raise  # the user's to fix, or an interrupt: as it is
            reason = exc.summary if isinstance(exc, EnvironmentBuildError) else str(exc)
            raise EnvironmentBuildError(
                f"building environment {key} failed: {reason}; full log: {log}",
                log_path=str(log),
                log_tail=log_tail(log, since=start),
            ) from exc
        log_line(log, f"built environment {key} in {time.monotonic() - t0:.2f} s: {path}")
        return path


def _write_marker(marker: Path, key: str, build_s: float) -> None:
    data = {"key": key, "build_s": round(build_s, 3), "built_at": time.time()}
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def _remove(path: Path) -> None:
    """Delete a folder (or a stray file) at ``path``, whatever it holds."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
