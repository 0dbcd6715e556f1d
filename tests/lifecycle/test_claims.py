"""Two daemons racing for one workspace cannot both start a run.

The daemon lock keeps a second daemon from serving a workspace; underneath it, every run
is claimed by compare-and-set and its launch recorded once (runner.lifecycle). Two
processes that both play daemon on the same 300 waiting runs at the same moment: each run
may be launched by exactly one of them.
"""

from __future__ import annotations

import json

from tests.lifecycle.conftest import Lifecycle


def test_two_claimants_never_launch_the_same_run(lc: Lifecycle) -> None:
    ids = json.loads(lc.py("lc_claim_race.py", "setup", 300).stdout)
    go = lc.tmp / "go"
    racers = [lc.start("lc_claim_race.py", "race", name, go) for name in ("d1", "d2")]
    go.touch()
    won = []
    for proc in racers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        won.append(set(json.loads(out.splitlines()[-1])))
    assert not won[0] & won[1], f"launched by both: {sorted(won[0] & won[1])[:5]}"
    assert won[0] | won[1] == set(ids)
