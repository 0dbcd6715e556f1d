"""The README's two commands, as a new user types them: the quickstart, twice."""

from __future__ import annotations

import re

from tests.helpers import REPO
from tests.lifecycle.conftest import Lifecycle

QUICKSTART = REPO / "examples" / "quickstart" / "submit.py"


def test_quickstart_twice_in_a_row(lc: Lifecycle) -> None:
    """`python examples/quickstart/submit.py` twice, each a fresh process: both end
    Completed, and a third process sees both runs with their metrics."""
    for attempt in (1, 2):
        proc = lc.py(QUICKSTART, timeout_s=30)
        assert re.search(r"^status:\s+Completed$", proc.stdout, re.M), (
            f"quickstart #{attempt} did not print status Completed:\n{proc.stdout}"
        )

    runs = lc.read(experiment="quickstart")
    assert [r["status"] for r in runs.values()] == ["Completed", "Completed"], runs
    for run in runs.values():
        metrics = run["metrics"]
        assert len(metrics["loss"]) == 5, metrics
        assert metrics["final_loss"] == metrics["loss"][-1], metrics
        assert metrics["progress"]["epoch"] == [0, 1, 2, 3, 4], metrics
        assert run["properties"]["dataset"] == "synthetic-v1", run["properties"]
