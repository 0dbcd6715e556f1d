"""The one exception tree of runner.

::

    RunnerError(Exception)            exit_code = 1; .hint: str | None
    ├── UserError                     exit_code = 2: input the user can fix
    │   ├── ConfigError(UserError, ValueError)      bad config, arguments, metric value
    │   ├── NotFoundError(UserError, LookupError)   unknown run, experiment, target, file
    │   │   ├── WorkspaceNotFoundError(WorkspaceError, NotFoundError)   no such workspace
    │   │   ├── TargetNotFoundError(ComputeTargetError, NotFoundError, KeyError)
    │   │   └── ModelNotFoundError(ModelError, NotFoundError)            no such model
    │   └── ConflictError(UserError, ValueError)    changing an immutable property; duplicates
    ├── EnvironmentBuildError         .log_path plus the tail of the build log
    ├── ComputeTargetError            a compute target is missing or cannot be used
    │   ├── TargetNotFoundError       (above) no target of that name
    │   └── TargetUnavailableError    docker down, ssh refused, host key unknown
    │       └── HostKeyError(TargetUnavailableError, UserError)   exit_code = 2: an SSH
    │                                 host key not accepted yet, not the given one, or changed
    ├── WorkspaceError                a workspace is missing or cannot be used
    │   ├── WorkspaceNotFoundError    (above)
    │   └── StoreError                workspace unreadable, locked, corrupt or full
    ├── ModelError                    the model registry: ModelNotFoundError (above)
    └── RunFailedError                wait_for_completion(raise_on_error=True)

v1 code catches azureml's exception names; ``runner.exceptions`` gives them as aliases of
these classes (``ComputeTargetException`` is ComputeTargetError, ``ActivityFailedException``
RunFailedError, ``UserErrorException`` UserError, ``WorkspaceException`` WorkspaceError,
``WebserviceException`` ModelError, ``ModelNotFoundException`` ModelNotFoundError,
``AzureMLException`` RunnerError), so ``except ComputeTargetException:`` catches what
runner raises where azureml raised that.

A failing user script is data, not an exception: the run becomes Failed.

``store_fault`` is the one place where a failed write or read of a workspace (SQLite's
errors, and the OSErrors of a full, read-only or failing disk) becomes a StoreError that
names the workspace, what could not be done, and what to free or fix.
"""

from __future__ import annotations

import errno
import sqlite3


class RunnerError(Exception):
    """Base of every error runner raises on purpose.

    Attributes:
        exit_code: what the CLI exits with when this error reaches it.
        hint: what the user can do about it, when that is not already in the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = Exception.__str__(self)  # not super(): KeyError's would repr() the message
        return f"{base}; {self.hint}" if self.hint else base


class UserError(RunnerError):
    """Input the user can fix. The CLI prints it as one line and exits 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A bad configuration, argument or metric value."""


class NotFoundError(UserError, LookupError):
    """An unknown run, experiment, target, environment, model, secret or file."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return RunnerError.__str__(self)


class WorkspaceError(RunnerError):
    """A workspace is missing or cannot be used (v1: ``WorkspaceException``)."""


class WorkspaceNotFoundError(WorkspaceError, NotFoundError):
    """No workspace at that path or of that name."""


class ComputeTargetError(RunnerError):
    """A compute target is missing or cannot be used (v1: ``ComputeTargetException``)."""


class TargetNotFoundError(ComputeTargetError, NotFoundError, KeyError):
    """No compute target of that name; also a KeyError, as ``ws.compute_targets[name]`` is."""


class ModelError(RunnerError):
    """The model registry cannot do what was asked (v1 calls these ``WebserviceException``)."""


class ModelNotFoundError(ModelError, NotFoundError):
    """No registered model of that name or version (v1: ``ModelNotFoundException``)."""


class ConflictError(UserError, ValueError):
    """A change to something immutable, or a name that is already taken."""


class EnvironmentBuildError(RunnerError):
    """Preparing an environment failed; ``log_path`` holds the whole build log.

    ``str()`` is the message and then the log's last lines (``log_tail``), once;
    ``summary`` is the message alone, for places that show the tail themselves.
    """

    def __init__(
        self,
        message: str,
        *,
        log_path: str | None = None,
        hint: str | None = None,
        log_tail: str = "",
    ):
        super().__init__(message, hint=hint)
        self.log_path = log_path
        self.log_tail = log_tail

    @property
    def summary(self) -> str:
        """What failed and what to do, without the log's last lines."""
        return RunnerError.__str__(self)

    def __str__(self) -> str:
        tail = self.log_tail.rstrip("\n")
        return f"{self.summary}\n--- last lines of the log ---\n{tail}" if tail else self.summary


class TargetUnavailableError(ComputeTargetError):
    """A compute target cannot be reached or used right now."""


class HostKeyError(TargetUnavailableError, UserError):
    """An SSH host presents a key that is not accepted: unknown, not the one given, or changed.

    Only the user can settle it (compare the fingerprint with the host's own), so the CLI
    exits 2, as for other input the user can fix.

    Attributes:
        host: the host as known_hosts names it (``host`` or ``[host]:port``).
        key_type: the presented key's type, e.g. ``ssh-ed25519``.
        fingerprint: the presented key's SHA256 fingerprint, ``SHA256:...``.
        expected: the fingerprint the caller gave, when one was given.
        changed: whether a different key is known for the host (not merely none yet).
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        key_type: str,
        fingerprint: str,
        expected: str | None = None,
        changed: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.expected = expected
        self.changed = changed

    @property
    def unknown(self) -> bool:
        """The host's key is merely not known yet (accepting it is the user's call)."""
        return self.expected is None and not self.changed


class RunFailedError(RunnerError):
    """A run ended Failed (or Canceled) while the caller waited with raise_on_error=True."""

    def __init__(
        self, message: str, *, run_id: str, status: str, exit_code: int | None, log_tail: str = ""
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.run_exit_code = exit_code
        self.log_tail = log_tail


class StoreError(WorkspaceError):
    """The workspace's store is unreadable, locked, corrupt or full.

    Attributes:
        fault: what went wrong with the disk, when that is known: ``disk_full``,
            ``quota``, ``read_only`` or ``io_error`` (else None).
    """

    def __init__(self, message: str, *, hint: str | None = None, fault: str | None = None):
        super().__init__(message, hint=hint)
        self.fault = fault


#: Disk faults: (errno, SQLite message, fault, what it is, what to do ({where} is the path)).
_FAULTS = (
    (errno.ENOSPC, "database or disk is full", "disk_full", "disk full",
     "free space on the file system of {where} and try again"),
    (errno.EDQUOT, None, "quota", "disk quota exceeded",
     "free space within your disk quota (or have it raised) and try again"),
    (errno.EROFS, "readonly database", "read_only", "read-only file system",
     "make {where} writable again (remount it read-write) and try again"),
    (errno.EIO, "disk I/O error", "io_error", "disk I/O error",
     "check the disk that holds {where} (dmesg); copy the workspace elsewhere if it is failing"),
)  # fmt: skip


def store_fault(exc: BaseException, where: str, doing: str) -> StoreError | None:
    """The StoreError for an error of a workspace's database or files, or None.

    ``where`` is the workspace folder, ``doing`` what failed (``"record metrics for run
    R"``). Every SQLite error becomes a StoreError; an OSError only when the disk is at
    fault (full, over quota, read-only, failing): others are the caller's to explain.
    Used as ``raise store_fault(...) from exc`` in the store's and blob store's write
    paths, never on a fast path.
    """
    text = str(exc)
    for code, sqlite_text, fault, what, todo in _FAULTS:
        if isinstance(exc, OSError) and exc.errno == code:
            detail = exc.strerror or text
        elif isinstance(exc, sqlite3.Error) and sqlite_text and sqlite_text in text:
            detail = text
        else:
            continue
        return StoreError(
            f"workspace {where}: cannot {doing}: {what} ({detail})",
            hint=todo.format(where=where),
            fault=fault,
        )
    if isinstance(exc, sqlite3.Error):
        return StoreError(
            f"workspace {where}: cannot {doing}: {text or type(exc).__name__}",
            hint="try again; if it keeps failing, check the workspace's runner.db",
        )
    return None


class RunnerWarning(UserWarning):
    """Something worth saying that is not an error (a large snapshot, a no-op cancel)."""
