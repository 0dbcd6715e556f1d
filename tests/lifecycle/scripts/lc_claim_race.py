"""Two would-be daemons racing for the same runs, through the store's claim protocol.

lc_claim_race.py setup N        create N runs waiting for a daemon (status Starting)
lc_claim_race.py race NAME GO   wait for the file GO, then claim and begin the launch
                                of every waiting run, as a daemon does; print the ids
                                this process may start (one JSON line)
"""

import json
import os
import sys
import time

from runner import Experiment, Workspace
from runner.store import NewRun


def main():
    ws = Workspace.from_config()
    store = ws._store
    if sys.argv[1] == "setup":
        exp = Experiment(ws, "race")
        spec = NewRun(type="azureml.scriptrun", status="Starting", target="local")
        ids = store.create_runs(exp._id, [spec] * int(sys.argv[2]))
        print(json.dumps(ids))
        return
    me, go = sys.argv[2], sys.argv[3]
    while not os.path.exists(go):
        time.sleep(0.001)
    rows = store.query("SELECT id, supervisor FROM runs WHERE status = 'Starting'")
    won = []
    for run_id, supervisor in rows:
        if not store.claim_run(run_id, me, supervisor):
            continue
        launching = json.dumps({"kind": "launching", "daemon": me})
        if store.begin_launch(run_id, me, launching, {"Starting"}):
            won.append(run_id)
    print(json.dumps(won))


if __name__ == "__main__":
    main()
