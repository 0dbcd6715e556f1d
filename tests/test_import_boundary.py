"""What `import runner` and `Run.get_context()` reach is standard-library only, and the
public names are exactly what SPEC.md and ``runner.__all__`` say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from tests.helpers import REPO

#: Never imported by the in-run client (user environments lack them).
THIRD_PARTY = (
    "docker", "psutil", "filelock", "watchdog", "yaml", "jmespath",
    "tensorboard", "ipywidgets", "IPython",  # the optional bridges (issue 15)
)  # fmt: skip

#: SPEC.md: from runner import Workspace, Experiment, Run, ScriptRunConfig,
#: RunConfiguration, Environment, Model, ComputeTarget, RemoteCompute (+ CondaDependencies)
SPEC_PUBLIC = (
    "Workspace",
    "Experiment",
    "Run",
    "ScriptRunConfig",
    "RunConfiguration",
    "Environment",
    "Model",
    "ComputeTarget",
    "RemoteCompute",
    "CondaDependencies",
)

PROBE = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
import runner
import runner.remote_agent, runner.journal  # the remote side of SSH targets, too
run = runner.Run.get_context()
run.log("probe", 1)
run.tag("t")
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({list(THIRD_PARTY)!r}))
print("LOADED " + json.dumps(loaded))
"""

PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")


def _python(argv: list[str], cwd: Path) -> str:
    """Run a Python process; its stdout (it must exit 0)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _line(out: str, prefix: str) -> str:
    """What follows ``prefix`` on the line of ``out`` that starts with it."""
    return next(x for x in out.splitlines() if x.startswith(prefix))[len(prefix) :]


def _probe(python: str, cwd: Path) -> list[str]:
    return json.loads(_line(_python([python, "-I", "-c", PROBE], cwd), "LOADED "))


def test_import_runner_and_get_context_load_no_third_party_module(tmp_path):
    assert _probe(sys.executable, tmp_path) == []


@pytest.mark.skipif(
    not PY39.exists(), reason=f"no Python 3.9 at {PY39} to try the in-run client on"
)
def test_the_in_run_client_imports_on_python_3_9(tmp_path):
    assert _probe(str(PY39), tmp_path) == []


STAR = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
before = set(globals()) | {{"before"}}
from runner import *
print(json.dumps(sorted(set(globals()) - before)))
"""


def test_star_import_gives_exactly_all(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-I", "-c", STAR],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == sorted(runner.__all__)
    assert len(runner.__all__) == len(set(runner.__all__))


@pytest.mark.parametrize("name", SPEC_PUBLIC)
def test_every_public_name_of_the_spec_is_importable(name):
    assert name in runner.__all__
    assert getattr(runner, name).__name__ == name


def test_conda_dependencies_has_its_spec_path():
    from runner.conda_dependencies import CondaDependencies

    assert runner.CondaDependencies is CondaDependencies


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match=r"module 'runner' has no attribute 'Nope'"):
        _ = runner.Nope  # type: ignore[attr-defined]


CLIENT_COPY = """
import sys
from runner import Workspace
from runner.service.daemon import Daemon

ws = Workspace.create(sys.argv[1])
print("CLIENT " + str(Daemon(ws, None).client_dir()))
"""

IN_THE_COPY = """
import json, sys
sys.path.insert(0, sys.argv[1])
import runner
found = {}
for name in ("runner.service", "runner.cli", "targets", "environments", "runner.run"):
    try:
        __import__(name)
        found[name] = True
    except ImportError:
        found[name] = False
print("FOUND " + json.dumps(found))
print("FROM " + runner.__file__)
"""


@pytest.mark.skipif(
    not PY39.exists(), reason=f"no Python 3.9 at {PY39} to play a user's environment"
)
def test_the_client_copy_a_run_gets_holds_no_host_side_package(tmp_path):
    """What the daemon puts on a run's PYTHONPATH (Daemon.client_dir), in an interpreter
    without runner installed (Python 3.9, isolated): the client imports, and nothing of
    runner/service/, runner/cli/, targets/ or environments/ can be imported from it."""
    client = _line(
        _python([sys.executable, "-c", CLIENT_COPY, str(tmp_path / "ws")], REPO), "CLIENT "
    )
    out = _python([str(PY39), "-I", "-c", IN_THE_COPY, client], tmp_path)
    assert json.loads(_line(out, "FOUND ")) == {
        "runner.service": False,
        "runner.cli": False,
        "targets": False,
        "environments": False,
        "runner.run": True,
    }
    assert _line(out, "FROM ").startswith(client)
