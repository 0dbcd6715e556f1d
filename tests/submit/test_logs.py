"""Logs: stdout and stderr captured in order with nothing lost (long lines, no final
newline, non-UTF-8 bytes, 100 MB); streamed live by wait_for_completion(show_output=True);
get_details_with_logs() and get_all_logs()."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tests.submit.conftest import Kit

DRIVER = "azureml-logs/70_driver_log.txt"
PREP = "azureml-logs/55_environment_prep_log.txt"


def stored_log(run, name: str = DRIVER) -> Path:
    """The stored (not live) copy of a finished run's log."""
    stored = dict((n, d) for n, d, _ in run._store.list_files(run.id))
    assert name in stored, sorted(stored)
    return Path(run.get_details()["logFiles"][name])


def test_stdout_and_stderr_interleaved_in_order(kit: Kit) -> None:
    run = kit.submit("sr_chatty.py", "interleave", 2000)
    assert run.wait_for_completion()["status"] == "Completed"
    expected = "".join(f"{'out' if i % 2 == 0 else 'err'} {i}\n" for i in range(2000))
    assert stored_log(run).read_text() == expected


def test_long_lines_bad_bytes_and_no_final_newline_kept_byte_for_byte(kit: Kit) -> None:
    run = kit.submit("sr_chatty.py", "edge")
    assert run.wait_for_completion()["status"] == "Completed"
    expected = (
        b"x" * (1 << 20)
        + b"\n"
        + b"bad bytes: \xff\xfe\x80 end\n"
        + "café 日本 on stderr\n".encode()
        + b"no newline at the end"
    )
    assert stored_log(run).read_bytes() == expected
    # the text views replace what is not UTF-8 instead of failing
    text = run.get_details_with_logs()["logFiles"][DRIVER]
    assert text.endswith("café 日本 on stderr\nno newline at the end")
    assert "bad bytes: \ufffd" in text


def test_a_hundred_megabytes_of_output_nothing_lost(kit: Kit) -> None:
    megabytes = 100
    run = kit.submit("sr_chatty.py", "bulk", megabytes)
    assert run.wait_for_completion()["status"] == "Completed"
    expected = hashlib.sha256()
    line = b"%08d " + b"y" * 1014 + b"\n"
    for i in range(megabytes * 1024):
        expected.update(line % i)
    path = stored_log(run)
    assert path.stat().st_size == megabytes << 20
    got = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            got.update(chunk)
    assert got.hexdigest() == expected.hexdigest()


class _Reader:
    """A stdout for wait_for_completion(show_output=True) that tells the script, through
    a marker file, that the first line reached it while the run was still going."""

    def __init__(self, seen: Path) -> None:
        self.seen = seen
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        if "waiting for the reader" in self.text and not self.seen.exists():
            self.seen.touch()
        return len(text)

    def flush(self) -> None:
        pass


def test_show_output_streams_live(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = kit.marker("seen")
    run = kit.submit("sr_stream.py", str(seen))
    reader = _Reader(seen)
    monkeypatch.setattr(sys, "stdout", reader)
    details = run.wait_for_completion(show_output=True)
    monkeypatch.undo()
    # The script only prints its second line after the reader saw the first: had the
    # output not been streamed while the run ran, it would have failed (exit 3).
    assert details["status"] == "Completed"
    text = reader.text
    assert "using " in text  # the preparation log comes first
    first = text.index("first line, waiting for the reader")
    assert text.index("on stderr while waiting") > first
    assert text.index("second line, after the reader saw the first") > first

    # once the run is over, show_output replays the whole log and returns
    replay = _Reader(seen)
    monkeypatch.setattr(sys, "stdout", replay)
    run.wait_for_completion(show_output=True)
    monkeypatch.undo()
    assert replay.text == text


def test_get_details_with_logs_and_get_all_logs(kit: Kit, tmp_path: Path) -> None:
    run = kit.submit("sr_fail.py", "raise")
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"
    logs = run.get_details_with_logs()["logFiles"]
    assert "about to fail on stdout" in logs[DRIVER]
    assert "ZeroDivisionError" in logs[DRIVER]
    assert "user-managed environment" in logs[PREP]
    written = run.get_all_logs(destination=str(tmp_path / "all logs"))
    names = sorted(Path(p).relative_to(tmp_path / "all logs").as_posix() for p in written)
    assert DRIVER in names
    assert PREP in names
    assert (tmp_path / "all logs" / DRIVER).read_text() == logs[DRIVER]
