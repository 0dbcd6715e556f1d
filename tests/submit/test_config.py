"""ScriptRunConfig and RunConfiguration: validated at construction or submit (clear errors,
nothing submitted), and RunConfiguration.save/load of ``.runner/NAME.runconfig`` (YAML)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from runner import Environment, RunConfiguration, ScriptRunConfig, daemon_client
from runner.errors import ConfigError, NotFoundError, UserError
from runner.experiment import Experiment


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    return folder


def assert_nothing_submitted(exp: Experiment) -> None:
    assert list(exp.get_runs()) == []
    assert exp.workspace._store.query("SELECT COUNT(*) FROM runs") == [(0,)]
    runs = exp.workspace.path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    blobs = exp.workspace.path / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []  # no snapshot taken
    assert not daemon_client.is_running(exp.workspace.path)


# -- construction ------------------------------------------------------------------------


def test_defaults_and_the_fields_as_spec_says(src: Path) -> None:
    rc = RunConfiguration()
    assert rc.target == "local"
    assert rc.gpu_count == 0
    assert rc.max_run_duration_seconds is None
    assert rc.cancel_grace_seconds == 10
    assert rc.environment_variables == {}
    assert rc.environment.python.user_managed_dependencies is True
    assert rc.environment.python.interpreter_path is None

    env = Environment("mine")
    env.python.user_managed_dependencies = True
    cfg = ScriptRunConfig(
        source_directory=src,
        script="train.py",
        arguments=["--lr", 0.01, "--epochs", 3],
        compute_target="local",
        environment=env,
        max_run_duration_seconds=60,
    )
    assert cfg.arguments == ["--lr", "0.01", "--epochs", "3"]
    assert cfg.run_config.environment is env
    assert cfg.run_config.max_run_duration_seconds == 60
    assert cfg.run_config.target_name == "local"
    other = Environment("other")
    cfg.run_config.environment = other  # as in the seeds
    assert cfg.run_config.environment is other


def test_a_missing_script_fails_at_construction(src: Path) -> None:
    with pytest.raises(NotFoundError, match=r"script 'nope\.py' not found in source_directory"):
        ScriptRunConfig(src, "nope.py")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_source_directory_that_is_not_a_folder(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "not-a-folder"
    if kind == "file":
        path.write_text("x")
    with pytest.raises(ConfigError, match=r"source_directory .*not-a-folder.* is not a folder"):
        ScriptRunConfig(path, "train.py")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("--lr 0.1", r"arguments must be a list such as \['--lr', 0\.01\], not str"),
        ({"lr": 1}, r"arguments must be a list .*not dict"),
        (["--flag", True], r"arguments\[1\] is True \(bool\); arguments may be str, int or float"),
        ([None], r"arguments\[0\] is None \(NoneType\)"),
        ([b"bytes"], r"arguments\[0\] is b'bytes' \(bytes\)"),
        ([["nested"]], r"arguments\[0\] is \['nested'\] \(list\)"),
        ([Path("p")], r"arguments\[0\] is .*PosixPath"),
    ],
)
def test_bad_argument_types(src: Path, arguments: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScriptRunConfig(src, "train.py", arguments=arguments)  # type: ignore[arg-type]


def test_numbers_are_stringified(src: Path) -> None:
    cfg = ScriptRunConfig(src, "train.py", arguments=["a", 1, 2.5, -3, 1e-5])
    assert cfg.arguments == ["a", "1", "2.5", "-3", "1e-05"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ConfigError, r"needs script= \(a file in source_directory\) or command="),
        (
            {"script": "train.py", "command": "python train.py"},
            ConfigError,
            r"takes script= or command=, not both",
        ),
        ({"script": "/abs/train.py"}, ConfigError, r"is absolute; pass it relative"),
        ({"script": "../train.py", "_up": True}, ConfigError, r"is outside source_directory"),
        ({"command": "  "}, ConfigError, r"command= is empty"),
        ({"command": ["python", 3]}, ConfigError, r"pass a str or a list of str"),
    ],
)
def test_script_and_command_checks(
    src: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    folder = src
    if kwargs.pop("_up", False):
        folder = src / "inner"
        folder.mkdir()
    with pytest.raises(error, match=message):
        ScriptRunConfig(folder, **kwargs)  # type: ignore[arg-type]


# -- submit re-validates; nothing is recorded on a mistake ------------------------------


def _break_script(cfg: ScriptRunConfig, src: Path) -> None:
    (src / "train.py").unlink()


def _break_arguments(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.arguments = ["ok", object()]  # type: ignore[list-item]


def _break_source(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.source_directory = str(src / "gone")


def _break_duration(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.run_config.max_run_duration_seconds = -5


def _break_gpus(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.run_config.gpu_count = "2"  # type: ignore[assignment]


def _break_grace(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.run_config.cancel_grace_seconds = -1


def _break_env_vars(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.run_config.environment_variables = {"N": 1}  # type: ignore[dict-item]


def _break_interpreter(cfg: ScriptRunConfig, src: Path) -> None:
    env = Environment("broken")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = str(src / "no-such-python")
    cfg.run_config.environment = env


def _break_target(cfg: ScriptRunConfig, src: Path) -> None:
    cfg.run_config.target = "gpu-cluster"


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_break_script, r"script 'train\.py' not found in source_directory"),
        (_break_arguments, r"arguments\[1\] is <object object"),
        (_break_source, r"source_directory .*gone.* is not a folder"),
        (_break_duration, r"max_run_duration_seconds=-5; pass a positive number"),
        (_break_gpus, r"gpu_count='2'; pass an int >= 0"),
        (_break_grace, r"cancel_grace_seconds=-1; pass seconds >= 0"),
        (_break_env_vars, r"run_config\.environment_variables\[.N.\] = 1 is not a string"),
        (_break_interpreter, r"interpreter .*no-such-python.* does not exist"),
        (_break_target, r"gpu-cluster"),
    ],
)
def test_submit_revalidates_and_records_nothing(
    exp: Experiment, src: Path, breaker, message: str
) -> None:
    cfg = ScriptRunConfig(src, "train.py", arguments=["--lr", 0.1])
    breaker(cfg, src)
    with pytest.raises(UserError, match=message):
        exp.submit(cfg)
    assert_nothing_submitted(exp)


def test_submit_takes_only_a_script_run_config(exp: Experiment) -> None:
    with pytest.raises(ConfigError, match=r"submit\(\) takes a ScriptRunConfig, not dict"):
        exp.submit({"script": "train.py"})  # type: ignore[arg-type]
    assert_nothing_submitted(exp)


# -- save / load -------------------------------------------------------------------------


def test_save_and_load_round_trip_as_yaml(tmp_path: Path) -> None:
    rc = RunConfiguration()
    rc.max_run_duration_seconds = 120
    rc.gpu_count = 1
    rc.cancel_grace_seconds = 2.5
    rc.environment_variables = {"A": "1", "SPACED": "two words ü"}
    env = Environment("py")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    rc.environment = env

    written = Path(rc.save(path=str(tmp_path), name="train"))
    assert written == tmp_path / ".runner" / "train.runconfig"
    data = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert data["target"] == "local"
    assert data["maxRunDurationSeconds"] == 120
    assert data["environmentVariables"] == {"A": "1", "SPACED": "two words ü"}

    back = RunConfiguration.load(str(tmp_path), "train")
    assert back.to_dict() == rc.to_dict()
    assert back.environment.python.interpreter_path == sys.executable
    # also by the file's own path, and from the current folder by default
    assert RunConfiguration.load(str(written)).to_dict() == rc.to_dict()
    assert RunConfiguration.load(name="train").to_dict() == rc.to_dict()  # cwd is tmp_path


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no run configuration at .*nope\.runconfig"):
        RunConfiguration.load(str(tmp_path), "nope")
    bad = tmp_path / ".runner" / "bad.runconfig"
    bad.parent.mkdir()
    bad.write_text("target: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.runconfig is not valid YAML"):
        RunConfiguration.load(str(tmp_path), "bad")
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping"):
        RunConfiguration.load(str(tmp_path), "bad")
    bad.write_text("gpuCount: -1\n")
    with pytest.raises(ConfigError, match=r"gpu_count=-1"):
        RunConfiguration.load(str(tmp_path), "bad")
    with pytest.raises(ConfigError, match=r"needs name="):
        RunConfiguration().save(path=str(tmp_path))
