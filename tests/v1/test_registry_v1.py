"""``env.docker.base_image_registry`` as v1 writes it (issue 14 item 7).

The pull with the login is exercised by the Docker tests' engine only where a registry
is reachable; here: the image reference, the definition kept with a run, and the password
never shown.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.environment import ContainerRegistry, Environment
from runner.errors import ConfigError
from tests.helpers import script_env

SECRET = "s3cr3t"  # noqa: S105 (a test login, not a credential)


def test_the_registry_prefixes_the_base_image_and_survives_a_round_trip() -> None:
    env = Environment("private-base")
    env.docker.enabled = True
    env.docker.base_image = "team/train:1.0"
    env.docker.base_image_registry.address = "myregistry.azurecr.io"
    env.docker.base_image_registry.username = "me"
    env.docker.base_image_registry.password = SECRET
    assert env.docker.base_image_reference == "myregistry.azurecr.io/team/train:1.0"
    again = Environment.from_dict(env.to_dict())
    assert again.docker.base_image_registry.password == SECRET
    assert again.spec_hash() == env.spec_hash()
    assert SECRET not in repr(env.docker.base_image_registry)
    plain = Environment("private-base")
    plain.docker.enabled = True
    plain.docker.base_image = "team/train:1.0"
    assert "baseImageRegistry" not in plain.to_dict()["docker"]
    assert plain.spec_hash() != env.spec_hash(), "another registry is another image"
    via = Environment.from_docker_image(
        "x", "team/train:1.0", container_registry=ContainerRegistry("r.example:5000", "u", "p")
    )
    assert via.docker.base_image_reference == "r.example:5000/team/train:1.0"


def test_half_a_login_is_refused() -> None:
    env = Environment("e")
    env.docker.base_image_registry.username = "me"
    with pytest.raises(ConfigError, match="needs both username and password"):
        env.to_dict()


def test_the_password_is_kept_for_the_build_but_never_shown(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code = (
        "import sys\n"
        "from runner import Environment, Workspace\n"
        "ws = Workspace.create(sys.argv[1])\n"
        "env = Environment('private-base')\n"
        "env.docker.base_image = 'team/train:1.0'\n"
        "env.docker.base_image_registry.address = 'myregistry.azurecr.io'\n"
        "env.docker.base_image_registry.username = 'me'\n"
        "env.docker.base_image_registry.password = 's3cr3t'\n"
        "env.register(ws)\n"
        "print(Environment.get(ws, 'private-base').docker.base_image_registry.password)\n"
    )
    kept = subprocess.run(
        [sys.executable, "-c", code, str(ws)], env=script_env(), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "s3cr3t"
    shown = subprocess.run(
        [sys.executable, "-m", "runner", "env", "show", "private-base"],
        env=script_env({"RUNNER_WORKSPACE": str(ws)}), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    registry = json.loads(shown.stdout)["docker"]["baseImageRegistry"]
    assert registry == {"address": "myregistry.azurecr.io", "username": "me", "password": "***"}
