"""A conda environment on a host, from a lock made here (the agent's ``prepare`` of kind
``conda``, in ``runner/remote_agent.py``).

1. The agent says what the host is (``conda_host``): its conda platform, virtual packages,
   Python, glibc, CPU.
2. The environment is locked HERE for that platform, by the same solve and writer as a
   build here (:meth:`environments.conda.CondaBuilder.lock_for_host`), kept in this
   machine's cache; the lock is the one stored with the run.
3. ``prepare`` with the lock's hash as the key: a prefix the host built before is reused
   (``~/.runner-remote/envs/conda-<key>``). Otherwise the agent names the package archives
   (by sha256) and the installer bundle it lacks; they are sent as blobs (from a local
   channel's files, or fetched here once), and ``prepare`` is asked again: the host
   installs the lock with runner's own py-rattler worker, offline.

Why the installer is py-rattler sent from here, not the host's micromamba/conda or a
prefix built here: see :mod:`environments.conda_remote`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from environments.base import PreparedEnvironment
from environments.cache import log_line
from environments.conda import CondaBuilder, conda_definition, pip_section_problem
from environments.conda_remote import (
    archive_file,
    describe_archives,
    installer_bundle,
    installer_fits,
    locked_archives,
)
from environments.conda_worker import WORKER_SCRIPT
from runner.errors import ConfigError, EnvironmentBuildError

if TYPE_CHECKING:
    from runner.environment import Environment
    from targets.ssh.session import AgentSession

__all__ = ["check_conda", "prepare_conda"]

_KEY_HEX = 16


def check_conda(env: Environment) -> None:
    """ConfigError now for a conda environment no host can be given (no subprocess)."""
    definition = conda_definition(env)
    if definition.pip_requirements:
        raise ConfigError(pip_section_problem(env.name, definition.pip_requirements))


def prepare_conda(
    session: AgentSession, env: Environment, log: Path
) -> tuple[PreparedEnvironment, dict[str, Any]]:
    """The conda environment of ``env`` on the session's host; (prepared, the agent's answer).

    Raises:
        ConfigError: a pip section (see :func:`check_conda`).
        EnvironmentBuildError: the solve failed (unknown package...), an archive cannot be
            read here, or neither runner's py-rattler nor the host's own can run there.
        RemoteError: the host's install failed (its log in the message).
    """
    host, _ = session.request({"op": "conda_host"})
    address = session.conn.endpoint.address
    platform = host.get("platform")
    if not platform:
        raise EnvironmentBuildError(
            f"the host {address} ({host.get('system')}/{host.get('machine')}) has no conda "
            "platform",
            hint="use a venv (pip packages only) or a docker environment there",
        )
    definition = conda_definition(env)
    lock = CondaBuilder().lock_for_host(
        env, log, platform=str(platform), virtual_packages=host.get("virtual") or []
    )
    content = lock.read_bytes()
    key = hashlib.sha256(content).hexdigest()[:_KEY_HEX]
    archives = locked_archives(lock, str(platform))
    if installer_fits(host):
        bundle = installer_bundle(WORKER_SCRIPT)
        installer: str | None = bundle.digest
        log_line(log, f"conda: installing on {address} with runner's py-rattler {bundle.version}")
    elif host.get("rattler"):
        bundle = None
        installer = None
        log_line(log, f"conda: installing on {address} with the py-rattler of its python3")
    else:
        python = ".".join(map(str, host.get("python") or []))
        raise EnvironmentBuildError(
            f"the py-rattler installed here cannot run on {address} ({host.get('system')}/"
            f"{host.get('machine')}, Python {python}, glibc {host.get('glibc') or '-'}), and "
            "that host's python3 has none",
            hint="install py-rattler for the host's python3 there (python3 -m pip install "
            "--user py-rattler), or submit from a machine of the host's platform",
        )
    request = {
        "op": "prepare",
        "kind": "conda",
        "key": key,
        "platform": platform,
        "lock": content.decode("utf-8"),
        "packages": describe_archives(archives),
        "installer": installer,
        "worker": WORKER_SCRIPT.read_text(encoding="utf-8"),
    }
    answer, _ = session.request(request)
    sent = 0
    if answer.get("missing"):
        missing = [str(d) for d in answer["missing"]]
        by_digest = {a.sha256: a for a in archives}
        for digest in missing:
            if bundle is not None and digest == bundle.digest:
                path = bundle.path
            else:
                path = archive_file(by_digest[digest])
            data = path.read_bytes()
            session.send({"op": "blob", "digest": digest}, data)
            sent += len(data)
        log_line(log, f"conda: sent {len(missing)} file(s) to {address}: {sent} bytes")
        answer, _ = session.request(request)
        if answer.get("missing"):
            raise EnvironmentBuildError(
                f"{address} still lacks {len(answer['missing'])} archive(s) after they were sent"
            )
    else:
        log_line(log, f"conda: sent 0 bytes to {address} (it has every archive it needs)")
    log_line(log, str(answer.get("log") or "").rstrip("\n"))
    variables = {**dict(answer.get("env") or {}), **definition.variables}
    prepared = PreparedEnvironment(
        python=str(answer["python"]), env=variables, lock_file=Path(lock)
    )
    return prepared, answer
