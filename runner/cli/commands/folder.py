"""``runner folder ...``: its commands and their handlers."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from runner.cli.context import EXPERIMENT_KEY, Context
from runner.cli.parser import Tree, add_experiment_option
from runner.errors import NotFoundError


def add_commands(tree: Tree) -> None:
    """Add the ``folder`` commands to the command tree."""
    folder = tree.group(
        "folder",
        "attach a project folder to a workspace",
        """
        example:
          runner folder attach -e mnist
        """,
    )
    p = tree.leaf(
        folder,
        "attach",
        "Write .runner/config.json and sample run configurations into a folder.",
        """
        Creates .runner/config.json (pointing at the workspace), and the sample run
        configurations .runner/local.runconfig and .runner/docker.runconfig unless they
        exist. With -e, the experiment becomes the folder's default for 'runner run ...'.

        examples:
          runner folder attach -e mnist
          runner -w ~/team-workspace folder attach -e mnist --path ./project
        """,
        _folder_attach,
    )
    add_experiment_option(p, "default experiment for commands run in this folder")
    p.add_argument("-p", "--path", default=".", help="the project folder (default: .)")


def _folder_attach(ctx: Context) -> int:
    from runner.config import RunConfiguration
    from runner.environment import DEFAULT_CPU_IMAGE, Environment
    from runner.workspace import check_experiment_name

    folder = Path(ctx.args.path).expanduser().resolve()
    if not folder.is_dir():
        raise NotFoundError(f"--path {str(folder)!r} is not a folder; create it first")
    exp_name = ctx.args.experiment_name
    if exp_name is not None:
        check_experiment_name(exp_name)
    ws = ctx.workspace(create=True)  # az ml's first step names the workspace: make it here
    config_path = folder / ".runner" / "config.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(config_path.read_text(encoding="utf-8"))
        previous = loaded if isinstance(loaded, dict) else {}
    existed = config_path.exists()
    written = ws.write_config(folder)
    exp_name = exp_name or previous.get(EXPERIMENT_KEY)
    if exp_name:
        data = json.loads(written.read_text(encoding="utf-8"))
        data[EXPERIMENT_KEY] = exp_name
        tmp = written.with_name(f".config.json.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, written)
    files = [{"path": str(written), "action": "updated" if existed else "created"}]

    docker = RunConfiguration()
    docker_env = Environment("runner-docker")
    docker_env.python.user_managed_dependencies = True  # the image's own python
    docker_env.docker.enabled = True
    docker_env.docker.base_image = DEFAULT_CPU_IMAGE
    docker.environment = docker_env
    for name, rc in (("local", RunConfiguration()), ("docker", docker)):
        target = folder / ".runner" / f"{name}.runconfig"
        if target.exists():
            files.append({"path": str(target), "action": "kept"})
        else:
            files.append({"path": rc.save(path=str(folder), name=name), "action": "created"})
    ctx.emit(
        {
            "workspaceName": ws.name,
            "workspacePath": str(ws.path),
            "experimentName": exp_name,
            "files": files,
        }
    )
    return 0
