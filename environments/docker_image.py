"""Docker images for ``env.docker.enabled``: built through the Docker Engine API, tagged by hash.

:class:`DockerImageBuilder` turns an Environment with ``docker.enabled = True`` into an image:

- The base is ``docker.base_dockerfile`` (its text, as written) or ``FROM docker.base_image``.
- On top, when the environment is not user-managed and has pip packages, one pip layer:
  ``python3 -m pip install <pip options> <packages>`` with ``PIP_BREAK_SYSTEM_PACKAGES=1``
  (Debian's Python refuses a system-wide install otherwise).
- The image is tagged ``runner-env:<first 16 hex of the spec hash>``. When that tag exists it
  is reused: one ``GET /images/<tag>/json`` call, a few milliseconds, no build.

Builds behind a TLS-inspecting proxy: the host's CA bundle (``$SSL_CERT_FILE``, ``$PIP_CERT``,
``$REQUESTS_CA_BUNDLE``, else ``/etc/ssl/certs/ca-certificates.crt``) is put in the build
context and used by the pip ``RUN`` only (``PIP_CERT``, ``REQUESTS_CA_BUNDLE`` and
``SSL_CERT_FILE`` are set for that command, and the file is removed in the same step). The
Engine API's classic builder has no build secrets; a CA bundle is public data, so a copy in
a lower layer is harmless. ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_TRUSTED_HOST``
and the proxy variables of the daemon's environment are passed as build arguments; they are
not part of the spec hash (they change where packages come from, not what is installed).

The build log (the engine's ``stream`` lines) is written to the prep log as the build runs.
A failed build raises :class:`~runner.errors.EnvironmentBuildError` with the log's tail; a
base image that is not on this machine and cannot be pulled fails the same way.

The interpreter in the image is ``python.interpreter_path`` when set, else ``python3``.
Conda packages (other than ``pip``) are solved, locked and installed on the host by
CondaBuilder (a cache hit when built before), and the prefix is copied into the image at
the same absolute path (conda prefixes are not relocatable), with ``CONDA_PREFIX`` and
``PATH`` set; its lock is kept with the run as for any conda environment.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from environments.base import PreparedEnvironment, is_pip_spec
from environments.cache import cache_root, log_line, log_size, log_tail
from runner.errors import ConfigError, EnvironmentBuildError, TargetUnavailableError

if TYPE_CHECKING:
    from runner.environment import Environment

__all__ = [
    "IMAGE_REPOSITORY",
    "DockerImageBuilder",
    "build_context",
    "docker_client",
    "dockerfile_for",
    "image_tag",
    "pip_requirements",
]

#: The repository of every image runner builds; the tag is the spec hash's first 16 hex.
IMAGE_REPOSITORY = "runner-env"
#: Label on runner's images: the full spec hash.
SPEC_LABEL = "runner.spec_hash"
#: The default interpreter inside an image.
DEFAULT_PYTHON = "python3"
#: Where the CA bundle lands in the build context (and, for the pip step only, in the image).
_PREFIX_DIR = "conda-prefix"
_CA_NAME = "runner-ca-bundle.crt"
_SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
#: Variables handed to builds as build arguments when the daemon has them.
BUILD_ARG_VARS = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_PIP_OPTION_ARGS = {
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--trusted-host",
    "--no-index",
    "--pre",
}


def docker_client(timeout_s: float = 60.0) -> Any:
    """A Docker Engine API client from the environment (``DOCKER_HOST``, else the socket).

    Raises:
        TargetUnavailableError: the ``docker`` package is missing or no engine answers.
    """
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - a dependency of runner
        raise TargetUnavailableError(
            "the docker Python package is not installed; pip install 'docker>=7'"
        ) from exc
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    client = None
    try:
        if where.startswith("unix://"):
            # Connect once ourselves: docker-py leaks the socket of a refused connection.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout_s)
                probe.connect(where[len("unix://") :])
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, ...
        if client is not None:
            client.close()
        raise TargetUnavailableError(
            f"no Docker engine answers at {where} ({type(exc).__name__}: {exc}); start it "
            "(sudo systemctl start docker, or as root: bash scripts/ci_services.sh), or set "
            "env.docker.enabled = False",
            hint="start the Docker engine",
        ) from exc
    return client


def image_tag(env: Environment) -> str:
    """``runner-env:<spec hash[:16]>``."""
    return f"{IMAGE_REPOSITORY}:{env.spec_hash()[:16]}"


def pip_requirements(env: Environment) -> list[str]:
    """The pip arguments of the pip layer (options first), [] for none.

    Raises:
        ConfigError: conda packages other than pip, a conda file, or an unknown pip option.
    """
    python = env.python
    if python.user_managed_dependencies:
        return []
    if python.conda_dependencies_file is not None:
        raise ConfigError(
            f"environment {env.name!r} names python.conda_dependencies_file; a docker "
            "environment reads only python.conda_dependencies (pip packages)"
        )
    conda = python.conda_dependencies
    if conda is None:
        return []

    if conda_packages(env):
        return []  # the conda prefix built on the host carries the pip section too
    args: list[str] = []
    for option in conda.pip_options:
        parts = option.split(None, 1)
        if parts[0] not in _PIP_OPTION_ARGS:
            raise ConfigError(
                f"environment {env.name!r}: pip option {option!r} is not supported in a "
                f"docker environment; use only {', '.join(sorted(_PIP_OPTION_ARGS))}"
            )
        args += parts
    packages = list(conda.pip_packages)
    return [*args, *packages] if packages else []


def conda_packages(env: Environment) -> list[str]:
    """The conda packages (other than pip) of ``env``: these make a conda layer."""
    conda = env.python.conda_dependencies
    if env.python.user_managed_dependencies or conda is None:
        return []
    return [spec for spec in conda.conda_packages if not is_pip_spec(spec)]


def host_conda_env(env: Environment) -> Environment:
    """The same definition without docker: what CondaBuilder builds on the host."""
    host = env.clone(env.name)
    host.docker.enabled = False
    host.python.interpreter_path = None
    return host


def dockerfile_for(
    env: Environment, spec_hash: str, with_ca: bool, conda_prefix: Path | None = None
) -> str:
    """The Dockerfile of the environment's image: its base plus the pip layer."""
    if env.docker.base_dockerfile:
        base = env.docker.base_dockerfile.replace("\r\n", "\n").rstrip("\n")
    elif env.docker.base_image_reference:
        base = f"FROM {env.docker.base_image_reference}"
    else:  # validate() refuses this
        raise ConfigError(f"environment {env.name!r} has no docker base image or Dockerfile")
    lines = [base, f'LABEL {SPEC_LABEL}="{spec_hash}"']
    if conda_prefix is not None:
        # The prefix solved, locked and installed on the host (conda packages and the pip
        # section), copied to the same absolute path: conda prefixes are not relocatable.
        lines.append(f"COPY {_PREFIX_DIR}/ {conda_prefix}/")
        lines.append(f'ENV CONDA_PREFIX="{conda_prefix}" PATH="{conda_prefix}/bin:$PATH"')
    requirements = pip_requirements(env)
    if requirements:
        python = env.python.interpreter_path or DEFAULT_PYTHON
        lines += [f"ARG {var}" for var in BUILD_ARG_VARS]
        env_vars = ["PIP_BREAK_SYSTEM_PACKAGES=1", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
        if with_ca:
            ca = f"/usr/local/share/{_CA_NAME}"
            lines.append(f"COPY {_CA_NAME} {ca}")
            env_vars += [f"PIP_CERT={ca}", f"REQUESTS_CA_BUNDLE={ca}", f"SSL_CERT_FILE={ca}"]
        argv = ["env", *env_vars, python, "-m", "pip", "install", "--no-cache-dir", *requirements]
        command = " ".join(_shell_quote(a) for a in argv)
        if with_ca:
            command += f" && rm -f /usr/local/share/{_CA_NAME}"
        lines.append(f"RUN {command}")
    return "\n".join(lines) + "\n"


def _shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def ca_bundle(environ: Mapping[str, str] | None = None) -> Path | None:
    """The host's CA bundle, handed to builds: SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE,
    else the system bundle; None when there is none."""
    environ = os.environ if environ is None else environ
    for var in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        value = environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return _SYSTEM_CA if _SYSTEM_CA.is_file() else None


def build_context(dockerfile: str, ca: Path | None, conda_prefix: Path | None = None) -> io.BytesIO:
    """An in-memory tar with the Dockerfile (the CA bundle, a conda prefix), as the Engine
    API takes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if conda_prefix is not None:
            tar.add(str(conda_prefix), arcname=_PREFIX_DIR, recursive=True)
        files = [("Dockerfile", dockerfile.encode("utf-8"))]
        if ca is not None:
            files.append((_CA_NAME, ca.read_bytes()))
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def build_args(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The package-index and proxy settings of ``environ`` to pass to a build."""
    environ = os.environ if environ is None else environ
    return {var: environ[var] for var in BUILD_ARG_VARS if environ.get(var)}


class DockerImageBuilder:
    """Builds (or reuses) the image of a docker environment.

    Example:
        >>> env = Environment("py"); env.docker.enabled = True  # doctest: +SKIP
        >>> env.docker.base_image = "runner-test/python:3.11-bookworm"  # doctest: +SKIP
        >>> DockerImageBuilder().prepare(env, Path("prep.log")).image  # doctest: +SKIP
        'runner-env:5d0c1f...'
    """

    kind: ClassVar[str] = "docker"

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """The Docker client (made on first use)."""
        if self._client is None:
            self._client = docker_client()
        return self._client

    def prepare(self, env: Environment, log: Path) -> PreparedEnvironment:
        """The image for ``env``: reused when its tag exists, else built with the log."""
        spec_hash = env.spec_hash()
        tag = f"{IMAGE_REPOSITORY}:{spec_hash[:16]}"
        python = env.python.interpreter_path or DEFAULT_PYTHON
        variables = dict(
            (env.python.conda_dependencies.as_dict().get("variables") or {})
            if env.python.conda_dependencies is not None
            else {}
        )
        prepared = PreparedEnvironment(python=python, env=variables, image=tag)
        owns_client = self._client is None
        try:
            return self._prepare(env, spec_hash, tag, prepared, log)
        finally:
            if owns_client and self._client is not None:
                self._client.close()
                self._client = None

    def _prepare(
        self, env: Environment, spec_hash: str, tag: str, prepared: PreparedEnvironment, log: Path
    ) -> PreparedEnvironment:
        t0 = time.monotonic()
        conda_prefix: Path | None = None
        if conda_packages(env):
            # Solved, locked and installed on the host (a cache hit when built before); the
            # lock is kept with the run like any conda environment's.
            from environments.conda import CondaBuilder

            host = CondaBuilder().prepare(host_conda_env(env), log)
            conda_prefix = Path(host.python).parent.parent
            python = env.python.interpreter_path or host.python
            prepared = PreparedEnvironment(
                python=python,
                env={**prepared.env, "CONDA_PREFIX": str(conda_prefix)},
                image=tag,
                lock_file=host.lock_file,
            )
        if self._exists(tag):
            log_line(log, f"image cache hit: {tag} ({(time.monotonic() - t0) * 1000:.0f} ms)")
            return prepared
        lock = self._lock(spec_hash)
        with lock:
            if self._exists(tag):  # another process built it while we waited
                log_line(log, f"image cache hit: {tag} (built by another process)")
                return prepared
            self._build(env, spec_hash, tag, log, conda_prefix)
        return prepared

    def _exists(self, tag: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    @staticmethod
    def _lock(spec_hash: str) -> Any:
        from filelock import FileLock

        folder = cache_root() / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / f"docker-{spec_hash[:32]}.lock"))

    def _build(
        self, env: Environment, spec_hash: str, tag: str, log: Path, conda_prefix: Path | None
    ) -> None:
        start = log_size(log)
        t0 = time.monotonic()
        ca = ca_bundle()
        dockerfile = dockerfile_for(
            env,
            spec_hash,
            with_ca=ca is not None and bool(pip_requirements(env)),
            conda_prefix=conda_prefix,
        )
        log_line(log, f"building image {tag} with the Docker engine; Dockerfile:")
        for line in dockerfile.splitlines():
            log_line(log, f"  | {line}")
        context = build_context(
            dockerfile, ca if "COPY " + _CA_NAME in dockerfile else None, conda_prefix
        )
        error = self._pull_with_login(env, log)
        try:
            for chunk in () if error else self._stream(context, tag):
                text = chunk.get("stream") or chunk.get("status")
                if text:
                    with open(log, "a", encoding="utf-8") as handle:
                        handle.write(text if text.endswith("\n") else text + "\n")
                if "error" in chunk:
                    error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"])
                    log_line(log, f"ERROR: {error}")
        except EnvironmentBuildError:
            raise
        except Exception as exc:  # the engine went away, or refused the request
            error = f"{type(exc).__name__}: {exc}"
            log_line(log, f"ERROR: {error}")
        if error is None and not self._exists(tag):
            error = "the build ended without an image"
        base = env.docker.base_image_reference
        if error is not None and base and not self._exists(base):
            error = (
                f"base image {base!r} is not on this machine and could not be pulled ({error}); "
                "build or pull it first, or set docker.base_image to an image listed by the engine"
            )
        if error is not None:
            raise EnvironmentBuildError(
                f"building image {tag} for environment {env.name!r} failed: {error}; "
                f"full log: {log}",
                log_path=str(log),
                log_tail=log_tail(log, since=start),
            )
        log_line(log, f"built image {tag} in {time.monotonic() - t0:.2f} s")

    def _pull_with_login(self, env: Environment, log: Path) -> str | None:
        """Pull a base image whose registry has a login (the build could not log in); the
        error, or None. Images already here, or with no login, are left to the build."""
        registry = env.docker.base_image_registry
        base = env.docker.base_image_reference
        if env.docker.base_dockerfile or not base or registry.username is None:
            return None
        if self._exists(base):
            return None
        log_line(log, f"pulling {base} as {registry.username} from {registry.address}")
        try:
            self.client.images.pull(
                base, auth_config={"username": registry.username, "password": registry.password}
            )
        except Exception as exc:  # refused login, unknown image, registry unreachable
            error = f"pulling {base} from registry {registry.address} as {registry.username} "
            error += f"failed: {exc}"
            log_line(log, f"ERROR: {error}")
            return error
        return None

    def _stream(self, context: io.BytesIO, tag: str) -> Iterator[dict[str, Any]]:
        # A base image missing here is pulled by the build; with no registry reachable the
        # engine fails that pull within seconds (DNS or connection refused), never hangs.
        stream: Iterator[dict[str, Any]] = self.client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            buildargs=build_args(),
        )
        yield from stream
