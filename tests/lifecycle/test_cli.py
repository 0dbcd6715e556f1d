"""The CLI life cycle: submit with `runner run submit-script`, then show, logs and
download, each from its own process."""

from __future__ import annotations

from tests.helpers import wait_until
from tests.lifecycle.conftest import TERMINAL, Lifecycle


def test_submit_script_then_show_logs_download(lc: Lifecycle) -> None:
    """`runner run submit-script` returns at once; later `runner run show` sees the run
    Completed with its metric, `runner run logs` prints what the script printed, and
    `runner run download -p outputs` writes the file the script left in ./outputs."""
    src = lc.source("lc_train.py")
    submitted = lc.cli_json(
        "run",
        "submit-script",
        "-e",
        "cli",
        "-d",
        src,
        "lc_train.py",
        "--ledger",
        lc.ledger,
        "--value",
        7,
        "--say",
        "hello from the driver log",
        "--output",
        "trained weights 42",
    )
    run_id = submitted["runId"]

    shown: dict = {}

    def finished() -> bool:
        shown.clear()
        shown.update(lc.cli_json("run", "show", "-r", run_id))
        return shown["status"] in TERMINAL

    try:
        wait_until(finished, 20, interval_s=0.2)
    except AssertionError:
        raise AssertionError(
            f"`runner run show` still says {shown.get('status')} after 20 s; ledger "
            f"{lc.ledger_lines()}\n{lc.daemon_log()}"
        ) from None
    assert shown["status"] == "Completed", shown
    assert shown["metrics"]["value"] == 7, shown["metrics"]
    assert shown["experimentName"] == "cli"

    logs = lc.cli("run", "logs", "-r", run_id).stdout
    assert "hello from the driver log" in logs, logs

    out_dir = lc.tmp / "downloaded"
    written = lc.cli_json("run", "download", "-r", run_id, "-p", "outputs", "-d", out_dir)
    assert any(p.endswith("result.txt") for p in written), written
    assert (out_dir / "outputs" / "result.txt").read_text() == "trained weights 42"
    lc.assert_each_executed_once([run_id])
