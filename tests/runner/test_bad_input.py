"""The bad-input battery (issue 12): each input is a clear error at the call, nothing recorded.

Python API mistakes are ConfigError/ConflictError/StoreError with the fix in the message;
CLI mistakes are one stderr line and exit 2 (1 for a damaged file), never a traceback.
What was (not) recorded is read back from another process, and the CLI cases run as
real ``python -m runner`` processes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.config import ScriptRunConfig
from runner.errors import ConfigError, ConflictError, StoreError
from runner.experiment import Experiment
from runner.workspace import Workspace
from tests.helpers import REPO, script_env

PY = sys.executable


def runner_cli(
    ws: Path, *argv: str | bytes, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGV`` against workspace ``ws``, as its own process."""
    return subprocess.run(
        [PY, "-m", "runner", *argv],
        cwd=ws.parent,
        env=script_env({"RUNNER_WORKSPACE": str(ws), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def python(code: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the repository importable."""
    return subprocess.run(
        [PY, "-c", code, *args],
        cwd=REPO,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *fragments: str):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runner: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def files_of(ws: Path, run_id: str) -> list[str]:
    """The run's file names, read by another process."""
    proc = python(
        "import json, sys\n"
        "from runner.workspace import Workspace\n"
        "from runner.run import Run\n"
        "print(json.dumps(Run.get(Workspace(sys.argv[1]), sys.argv[2]).get_file_names()))",
        str(ws),
        run_id,
    )
    assert proc.returncode == 0, proc.stderr
    names: list[str] = json.loads(proc.stdout)
    return names


def blob_count(ws: Path) -> int:
    return sum(1 for p in (ws / "blobs").rglob("*") if p.is_file())


def reject_constant(name: str) -> Any:
    raise AssertionError(f"the CLI wrote {name}, which is not JSON")


# -- artifact names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a\x00b", r"control character '\\x00'; artifact names are printable text"),
        ("dir/a\nb.txt", r"control character '\\n'"),
        ("a\rb", r"control character '\\r'"),
        ("a\x7fb", r"control character '\\x7f'"),
        ("x" * 1025, r"is 1025 characters long; artifact names may have at most 1024"),
        ("d/" + "x" * 1023, r"is 1025 characters long"),
        ("\udcff.bin", r"is not valid UTF-8 text"),
    ],
)
def test_a_bad_artifact_name_is_refused_and_nothing_recorded(
    exp: Experiment, tmp_path: Path, name: str, message: str
) -> None:
    run = exp.start_logging()
    src = tmp_path / "f.txt"
    src.write_text("content that is stored nowhere")
    before = blob_count(exp.workspace.path)
    with pytest.raises(ConfigError, match=message):
        run.upload_file(name, str(src))
    with pytest.raises(ConfigError, match=message):
        run.upload_files(["fine.txt", name], [str(src), str(src)])
    assert run.get_file_names() == []
    assert blob_count(exp.workspace.path) == before
    run.complete()


def test_the_longest_name_is_accepted(exp: Experiment, tmp_path: Path) -> None:
    run = exp.start_logging()
    src = tmp_path / "f.txt"
    src.write_text("x")
    run.upload_file("x" * 1024, str(src))
    assert run.get_file_names() == ["x" * 1024]
    run.complete()


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("a", "a/b", r"already has a file 'a', so 'a/b' cannot be a file too"),
        ("a/b", "a", r"already has a file 'a/b', so 'a' cannot be a file too"),
        ("a/b/c", "a/b", r"already has a file 'a/b/c', so 'a/b' cannot"),
        ("a", "a/b/c", r"already has a file 'a', so 'a/b/c' cannot"),
    ],
)
def test_a_file_named_like_a_folder_is_refused(
    exp: Experiment, tmp_path: Path, first: str, second: str, message: str
) -> None:
    run = exp.start_logging()
    src = tmp_path / "f.txt"
    src.write_text("first")
    other = tmp_path / "g.txt"
    other.write_text("second, never stored")
    run.upload_file(first, str(src))
    before = blob_count(exp.workspace.path)
    with pytest.raises(ConflictError, match=message):
        run.upload_file(second, str(other))
    assert run.get_file_names() == [first]
    assert blob_count(exp.workspace.path) == before
    # Names that merely share a beginning are different files.
    run.upload_file(first + "-2", str(other))
    run.upload_file(first + ".txt", str(other))
    out = tmp_path / "out"
    run.download_files(output_directory=str(out))
    assert (out / first).read_text() == "first"
    run.complete()


def test_the_store_refuses_a_clash_even_past_the_run_api(exp: Experiment) -> None:
    """``Store.add_files`` checks in its transaction (another process may have uploaded
    between the API's check and the write)."""
    run = exp.start_logging()
    store = exp.workspace._store
    store.add_files(run.id, [("a/b", "0" * 64, 1)])
    with pytest.raises(ConflictError, match=r"already has a file 'a/b', so 'a' cannot"):
        store.add_files(run.id, [("a", "1" * 64, 1)])
    with pytest.raises(ConflictError, match=r"'c' and 'c/d' cannot both be files"):
        store.replace_files(run.id, [("c", "1" * 64, 1), ("c/d", "2" * 64, 1)])
    assert run.get_file_names() == ["a/b"]
    run.complete()


def test_a_clash_within_one_upload_is_refused(exp: Experiment, tmp_path: Path) -> None:
    run = exp.start_logging()
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(ConflictError, match=r"'m' and 'm/n' cannot both be files.*nothing"):
        run.upload_files(["m", "m/n"], [str(src), str(src)])
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f.txt").write_text("in a folder")
    run.upload_file("up/sub", str(src))
    with pytest.raises(ConflictError, match=r"already has a file 'up/sub', so 'up/sub/f\.txt'"):
        run.upload_folder("up", str(folder))
    assert run.get_file_names() == ["up/sub"]
    run.complete()


BAD_UPLOADS = r"""
import sys
from runner.experiment import Experiment
from runner.workspace import Workspace
from runner.errors import UserError

ws = Workspace.create(sys.argv[1])
run = Experiment(ws, "names").start_logging()
print(run.id)
open("f.txt", "w").write("x")
run.upload_file("a", "f.txt")
for name in ["a/b", "nul\x00", "new\nline", "cr\r", "y" * 1025]:
    try:
        run.upload_file(name, "f.txt")
    except UserError as exc:
        print(type(exc).__name__)
run.complete()
"""


def test_bad_uploads_from_a_script_leave_nothing_for_another_process(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [PY, "-c", BAD_UPLOADS, str(ws)],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run_id, *errors = proc.stdout.split()
    assert errors == ["ConflictError"] + ["ConfigError"] * 4
    assert files_of(ws, run_id) == ["a"]
    out = tmp_path / "out"
    download = runner_cli(ws, "run", "download", "-r", run_id, "-d", str(out))
    assert download.returncode == 0, download.stderr
    assert (out / "a").read_text() == "x"


CAPTURE = r"""
import os

from runner import Run

run = Run.get_context()
os.makedirs("outputs/x", exist_ok=True)
open("outputs/good.txt", "w").write("good")
open("outputs/bad\nname.txt", "w").write("bad")
open("outputs/x/y.txt", "w").write("under a name the run already has as a file")
open("upload.txt", "w").write("uploaded")
run.upload_file("outputs/x", "upload.txt")
"""


@pytest.mark.slow
def test_captured_outputs_with_bad_names_are_left_out_and_named(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "src"
    src.mkdir()
    (src / "capture.py").write_text(CAPTURE)
    proc = python(
        "import sys\n"
        "from runner.workspace import Workspace\n"
        "from runner.experiment import Experiment\n"
        "from runner.config import ScriptRunConfig\n"
        "ws = Workspace.create(sys.argv[1])\n"
        "run = Experiment(ws, 'capture').submit(ScriptRunConfig(sys.argv[2], 'capture.py'))\n"
        "run.wait_for_completion(raise_on_error=False)\n"
        "print(run.id)",
        str(ws),
        str(src),
        timeout_s=90,
    )
    try:
        assert proc.returncode == 0, proc.stderr
        run_id = proc.stdout.strip()
        names = files_of(ws, run_id)
        assert "outputs/good.txt" in names
        assert "outputs/x" in names
        assert not [n for n in names if "bad" in n or n.startswith("outputs/x/")]
        log = (ws / "daemon" / "daemon.log").read_text()
        assert "2 file(s) for outputs/ were not stored" in log, log
        assert "control character '\\n'" in log
        assert "'outputs/x/y.txt' would make the run's file 'outputs/x' a folder" in log
        # The run does not end Completed as if everything was kept: Failed, naming them.
        shown = runner_cli(ws, "run", "show", "-r", run_id)
        assert shown.returncode == 0, shown.stderr
        details = json.loads(shown.stdout)
        assert details["status"] == "Failed", details
        message = details["error"]["error"]["message"]
        assert "2 file(s) for outputs/ were not stored" in message, message
        assert "'outputs/bad\\nname.txt'" in message, message
    finally:
        runner_cli(ws, "daemon", "stop")


# -- submit: arguments, command, environment variables -------------------------------------


def _nul_argument(cfg: ScriptRunConfig) -> None:
    cfg.arguments = ["--name", "a\x00b"]


def _nul_command(cfg: ScriptRunConfig) -> None:
    cfg.script = None
    cfg.command = ["python", "train.py", "a\x00"]


def _equals_in_rc_name(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment_variables = {"A=B": "1"}


def _empty_rc_name(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment_variables = {"": "1"}


def _nul_in_rc_name(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment_variables = {"A\x00": "1"}


def _nul_in_rc_value(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment_variables = {"A": "x\x00y"}


def _equals_in_env_name_in_place(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment.environment_variables["K=V"] = "1"


def _nul_in_docker_arguments(cfg: ScriptRunConfig) -> None:
    cfg.run_config.environment.docker.arguments.append("--label=a\x00")


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_nul_argument, r"arguments\[1\] is 'a\\x00b', which holds a NUL character"),
        (_nul_command, r"command=.* holds a NUL character"),
        (_equals_in_rc_name, r"run_config\.environment_variables: 'A=B' is not a variable name"),
        (_empty_rc_name, r"run_config\.environment_variables: '' is not a variable name"),
        (_nul_in_rc_name, r"'A\\x00' is not a variable name"),
        (_nul_in_rc_value, r"\['A'\] = 'x\\x00y' holds a NUL character"),
        (_equals_in_env_name_in_place, r"'K=V' is not a variable name .*'MY_VAR'"),
        (_nul_in_docker_arguments, r"docker\.arguments .* holds a NUL character"),
    ],
)
def test_submit_refuses_what_no_process_can_be_given(
    exp: Experiment, tmp_path: Path, breaker, message: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never run')\n")
    cfg = ScriptRunConfig(str(src), "train.py")
    breaker(cfg)
    with pytest.raises(ConfigError, match=message):
        exp.submit(cfg)
    assert list(exp.get_runs()) == []


def test_a_nul_argument_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arguments\[0\] is 'x\\x00', which holds a NUL"):
        ScriptRunConfig(str(tmp_path), "t.py", arguments=["x\x00"])


def test_a_refused_submit_records_nothing_seen_from_another_process(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never run')\n")
    proc = python(
        "import sys\n"
        "from runner.workspace import Workspace\n"
        "from runner.experiment import Experiment\n"
        "from runner.config import ScriptRunConfig\n"
        "from runner.errors import ConfigError\n"
        "exp = Experiment(Workspace.create(sys.argv[1]), 'refused')\n"
        "cfg = ScriptRunConfig(sys.argv[2], 'train.py')\n"
        "cfg.run_config.environment_variables = {'A=B': '1'}\n"
        "try:\n"
        "    exp.submit(cfg)\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n",
        str(ws),
        str(src),
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused: run_config.environment_variables: 'A=B'" in proc.stdout
    listed = runner_cli(ws, "run", "list", "-e", "refused")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert not (ws / "daemon" / "daemon.json").exists()  # nothing handed to a daemon


# -- daemon settings -----------------------------------------------------------------------

SYSTEM_METRICS_RULE = "use 0 to switch system metrics off, or seconds from 0.05 to 86400"


@pytest.fixture
def created_ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    Workspace.create(path)
    return path


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--system-metrics-s", "nan"], {}, f"is nan, which is not valid; {SYSTEM_METRICS_RULE}"),
        (["--system-metrics-s", "1e-9"], {}, "--system-metrics-s is 1e-09"),
        (["--system-metrics-s", "inf"], {}, "--system-metrics-s is inf"),
        (["--system-metrics-s=-1"], {}, "--system-metrics-s is -1.0"),
        (["--system-metrics-s", "86401"], {}, "--system-metrics-s is 86401.0"),
        (["--max-concurrent=-1"], {}, "--max-concurrent is -1, which is not valid; use a whole"),
        (["--max-concurrent", "x"], {}, "argument --max-concurrent: invalid int value: 'x'"),
        ([], {"RUNNER_SYSTEM_METRICS_S": "nan"}, "RUNNER_SYSTEM_METRICS_S is 'nan'"),
        ([], {"RUNNER_SYSTEM_METRICS_S": "soon"}, "RUNNER_SYSTEM_METRICS_S is 'soon'"),
        ([], {"RUNNER_MAX_CONCURRENT": "-3"}, "RUNNER_MAX_CONCURRENT is '-3'"),
    ],
)
def test_daemon_start_refuses_a_bad_setting_and_starts_nothing(
    created_ws: Path, argv: list[str], env: dict[str, str], fragment: str
) -> None:
    proc = runner_cli(created_ws, "daemon", "start", *argv, env=env)
    assert_one_line_error(proc, 2, fragment)
    daemon_dir = created_ws / "daemon"
    assert not (daemon_dir / "daemon.json").exists()
    assert not (daemon_dir / "settings.json").exists()


def test_a_refused_setting_keeps_the_settings_file_as_it_was(created_ws: Path) -> None:
    settings = created_ws / "daemon" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"system_metrics_s": 5}\n')
    proc = runner_cli(
        created_ws, "daemon", "start", "--max-concurrent", "2", "--system-metrics-s", "nan"
    )
    assert_one_line_error(proc, 2, "--system-metrics-s is nan")
    assert json.loads(settings.read_text()) == {"system_metrics_s": 5}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{bad", "is not valid JSON"),
        (b"[1, 2]", "holds a list, not a JSON object"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b'{"system_metrics_s": "nan"}', "system_metrics_s in "),
        (b'{"max_concurrent": "many"}', "max_concurrent in "),
    ],
)
def test_daemon_start_names_a_garbled_settings_file(
    created_ws: Path, content: bytes, fragment: str
) -> None:
    settings = created_ws / "daemon" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_bytes(content)
    proc = runner_cli(created_ws, "daemon", "start")
    assert_one_line_error(proc, 2, str(settings), fragment)
    assert not (created_ws / "daemon" / "daemon.json").exists()
    assert settings.read_bytes() == content


SUBMIT_AND_WAIT = r"""
import sys, time
from runner.workspace import Workspace
from runner.experiment import Experiment
from runner.config import ScriptRunConfig

started = time.monotonic()
run = Experiment(Workspace(sys.argv[1]), "garbled").submit(ScriptRunConfig(sys.argv[2], "ok.py"))
submitted = time.monotonic() - started
run.wait_for_completion(raise_on_error=False)
print(run.get_status(), round(submitted, 2))
"""


@pytest.mark.slow
def test_a_garbled_settings_file_does_not_hang_submit(created_ws: Path, tmp_path: Path) -> None:
    """A daemon started on demand logs the bad file and uses the defaults (a daemon that
    died over its settings left every submit waiting 30 s for it)."""
    settings = created_ws / "daemon" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"system_metrics_s": ')
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.py").write_text("print('ran')\n")
    try:
        proc = python(SUBMIT_AND_WAIT, str(created_ws), str(src), timeout_s=90)
        assert proc.returncode == 0, proc.stderr
        status, submit_s = proc.stdout.split()
        assert status == "Completed"
        assert float(submit_s) < 10.0, proc.stdout
        log = (created_ws / "daemon" / "daemon.log").read_text()
        assert f"daemon settings file {settings} is not valid JSON" in log
        assert "using the defaults instead" in log
        status_proc = runner_cli(created_ws, "daemon", "status")
        assert status_proc.returncode == 0, status_proc.stderr
        answer = json.loads(status_proc.stdout)
        assert answer["running"] is True
        assert answer["systemMetricsSeconds"] == 10.0
        assert "is not valid JSON" in answer["settingsError"]
        assert status_proc.stderr.startswith("runner: warning: daemon settings file")
        assert len(status_proc.stderr.splitlines()) == 1
    finally:
        runner_cli(created_ws, "daemon", "stop")


def test_load_settings_falls_back_per_value_and_strict_refuses(
    created_ws: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from runner.service import settings as daemon

    settings = created_ws / "daemon" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"system_metrics_s": 1e-9, "max_concurrent": 3}')
    ws = Workspace(created_ws)
    loaded = daemon.load_settings(ws)
    assert (loaded.system_metrics_s, loaded.max_concurrent) == (10.0, 3)
    assert "system_metrics_s in" in capfd.readouterr().err
    with pytest.raises(ConfigError, match=r"system_metrics_s in .* is 1e-09, which is not valid"):
        daemon.load_settings(ws, strict=True)
    settings.write_text('{"system_metrics_s": 0, "max_concurrent": 0}')
    loaded = daemon.load_settings(ws, strict=True)
    assert (loaded.system_metrics_s, loaded.max_concurrent) == (0.0, None)


# -- CLI tracebacks ------------------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, str]:
    """A workspace with one finished run holding a file and NaN/infinite metrics."""
    path = tmp_path / "ws"
    run = Experiment(Workspace.create(path), "odd").start_logging()
    src = tmp_path / "f.txt"
    src.write_text("x")
    run.upload_file("outputs/f.txt", str(src))
    run.log("nan", float("nan"))
    run.log("inf", float("inf"))
    run.log_list("both", [float("-inf"), 1.5, float("nan")])
    run.complete()
    return path, run.id


def test_a_run_id_that_is_not_utf8_is_one_line(finished_run: tuple[Path, str]) -> None:
    ws, _ = finished_run
    proc = runner_cli(ws, "run", "show", "-r", b"\xff")
    assert_one_line_error(proc, 2, "argument '\\udcff' is not valid UTF-8 text")


@pytest.mark.parametrize("run_id", ["a\x01b", "a\nb", "x" * 5000])
def test_an_odd_run_id_is_not_found(finished_run: tuple[Path, str], run_id: str) -> None:
    ws, _ = finished_run
    proc = runner_cli(ws, "run", "show", "-r", run_id)
    assert_one_line_error(proc, 2, "no run ")


def test_run_get_of_odd_ids_is_not_found(ws: Workspace) -> None:
    from runner.errors import NotFoundError
    from runner.run import Run

    for run_id in ("\udcff", "a\x00b"):
        with pytest.raises(NotFoundError, match=r"no run .* in workspace"):
            Run.get(ws, run_id)


def test_an_experiment_name_with_a_newline_is_one_line(finished_run: tuple[Path, str]) -> None:
    ws, _ = finished_run
    proc = runner_cli(ws, "run", "list", "-e", "a\nb")
    assert_one_line_error(proc, 2, "no experiment 'a\\nb'")


def test_download_into_something_that_is_not_a_folder(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    ws, run_id = finished_run
    proc = runner_cli(ws, "run", "download", "-r", run_id, "-d", "/dev/null")
    assert_one_line_error(proc, 2, "output_directory '/dev/null' is not a folder")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    proc = runner_cli(ws, "run", "download", "-r", run_id, "-d", str(a_file / "below"))
    assert_one_line_error(proc, 2, f"({str(a_file)!r} is a file)")
    assert a_file.read_text() == "keep me"


def test_download_over_a_file_in_the_way_is_a_config_error(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    from runner.run import Run

    ws, run_id = finished_run
    out = tmp_path / "out"
    out.mkdir()
    (out / "outputs").write_text("a file where the folder goes")
    run = Run.get(Workspace(ws), run_id)
    with pytest.raises(
        ConfigError, match=r"cannot write .*outputs/f\.txt.*move what is in the way"
    ):
        run.download_files(output_directory=str(out))


def test_download_onto_a_device_or_pipe_is_refused_and_it_stays(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    """A download replaces its destination: a pipe (or, for root, /dev/null) must stay."""
    import stat

    from runner.run import Run

    ws, run_id = finished_run
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    run = Run.get(Workspace(ws), run_id)
    with pytest.raises(ConfigError, match=r"cannot write .*pipe'.*not a regular file"):
        run.download_file("outputs/f.txt", output_file_path=str(pipe))
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_tags_with_nul_or_not_utf8_are_refused(exp: Experiment) -> None:
    run = exp.start_logging()
    with pytest.raises(ConfigError, match=r"tag key 'a\\x00' holds a NUL character"):
        run.tag("a\x00", "v")
    with pytest.raises(ConfigError, match=r"tag 'k': value 'v\\x00' holds a NUL"):
        run.tag("k", "v\x00")
    with pytest.raises(ConfigError, match=r"tag key '\\udcff' is not valid UTF-8"):
        run.tag("\udcff")
    with pytest.raises(ConfigError, match=r"metric name '\\udcff' is not valid UTF-8"):
        run.log("\udcff", 1)
    assert run.get_tags() == {}
    run.complete()


# -- keyvault ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "is garbled"),
        (b"\xff\xff", "is garbled"),
        (b'["a"]', "does not hold a JSON object of name -> secret strings"),
        (b'{"a": 1}', "does not hold a JSON object"),
    ],
)
def test_a_garbled_keyvault_is_a_store_error_naming_the_file(
    ws: Workspace, content: bytes, fragment: str
) -> None:
    kv = ws.get_default_keyvault()
    kv.set_secret("db", "hunter2")
    kv.path.write_bytes(content)
    pattern = rf"keyvault file {kv.path}.*{fragment}.*move it away and set the secrets again"
    for call in (kv.list_secrets, lambda: kv.get_secret("db"), lambda: kv.set_secret("x", "y")):
        with pytest.raises(StoreError, match=pattern):
            call()
    assert kv.path.read_bytes() == content  # a write does not replace what it cannot read


def test_a_garbled_keyvault_from_another_process(ws: Workspace) -> None:
    ws.get_default_keyvault().set_secret("db", "hunter2")
    ws.get_default_keyvault().path.write_text("{garbled")
    proc = python(
        "import sys\n"
        "from runner.workspace import Workspace\n"
        "from runner.errors import StoreError\n"
        "try:\n"
        "    Workspace(sys.argv[1]).get_default_keyvault().get_secret('db')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n",
        str(ws.path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "keyvault file" in proc.stdout
    assert "is garbled" in proc.stdout


# -- strict JSON ---------------------------------------------------------------------------


def test_cli_json_is_strict_for_nan_and_infinite_metrics(finished_run: tuple[Path, str]) -> None:
    ws, run_id = finished_run
    proc = runner_cli(ws, "run", "show", "-r", run_id)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout, parse_constant=reject_constant)["metrics"]
    assert metrics["nan"] == "NaN"
    assert metrics["inf"] == "Infinity"
    assert metrics["both"] == ["-Infinity", 1.5, "NaN"]
    assert math.isnan(float(metrics["nan"]))
    assert float(metrics["both"][0]) == -math.inf
    queried = runner_cli(ws, "run", "show", "-r", run_id, "--query", "metrics.both")
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout, parse_constant=reject_constant) == ["-Infinity", 1.5, "NaN"]


def test_every_cli_json_goes_through_the_strict_writer(capsys: pytest.CaptureFixture[str]) -> None:
    value = {"a": float("nan"), "b": [float("inf"), {"c": -float("inf")}], "d": (1.0, "x")}
    assert json.loads(cli.dumps_json(value), parse_constant=reject_constant) == {
        "a": "NaN",
        "b": ["Infinity", {"c": "-Infinity"}],
        "d": [1.0, "x"],
    }
    assert cli.render_tsv([{"m": [float("nan")]}]) == '["NaN"]'
    ctx = cli._Context(cli.build_parser().parse_args(["experiment", "list"]), None)
    ctx.emit({"x": float("inf")})
    assert json.loads(capsys.readouterr().out, parse_constant=reject_constant) == {"x": "Infinity"}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json.dumps(float("nan"), allow_nan=False)  # what dumps_json relies on
