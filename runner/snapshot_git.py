"""The git properties of a run's source: the repository, branch, commit and whether the
work tree is dirty, as ``azureml.git.*`` and ``mlflow.source.git.*`` run properties.

Imported by the in-run client: standard library only, and it must import on Python 3.9.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["git_properties"]

_GIT_TIMEOUT_S = 10.0


def git_properties(source: Path | str) -> dict[str, str]:
    """The azureml.git.* and mlflow.source.git.* properties of the repo holding ``source``.

    Returns {} when ``source`` is not inside a git work tree or git is not installed.

    Example:
        >>> git_properties(".")["azureml.git.commit"]  # doctest: +SKIP
        '3f1c...'
    """
    path = os.path.abspath(os.fspath(source))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if shutil.which("git") is None or not os.path.isdir(folder):
        return {}
    top = _git(folder, "rev-parse", "--show-toplevel")
    if not top:
        return {}
    props: dict[str, str] = {}
    uri = _git(folder, "config", "--get", "remote.origin.url") or top
    props["azureml.git.repository_uri"] = uri
    props["mlflow.source.git.repoURL"] = uri
    branch = _git(folder, "symbolic-ref", "--short", "-q", "HEAD") or "HEAD"  # HEAD: detached
    props["azureml.git.branch"] = branch
    props["mlflow.source.git.branch"] = branch
    commit = _git(folder, "rev-parse", "--verify", "-q", "HEAD")
    if commit:  # a repo with no commit yet has none
        props["azureml.git.commit"] = commit
        props["mlflow.source.git.commit"] = commit
    status = _git(folder, "--no-optional-locks", "status", "--porcelain", strip=False)
    if status is not None:
        props["azureml.git.dirty"] = str(bool(status.strip()))
    return props


def _git(folder: str, *args: str, strip: bool = True) -> str | None:
    """stdout of ``git -C folder args`` or None if it fails or times out."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        proc = subprocess.run(
            ["git", "-C", folder, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out = proc.stdout.decode("utf-8", "surrogateescape")
    return out.strip() if strip else out
