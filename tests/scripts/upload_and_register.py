"""At a signal, upload shared and own files into a new run, then register model versions.

usage: upload_and_register.py WORKSPACE EXPERIMENT INDEX COUNT SHARED_FILE READY GO OUT_JSON
"""

import io
import sys
from pathlib import Path

from history_common import wait_for_file, write_json

from runner import Experiment, Workspace

ws_path, exp_name, index, count, shared, ready, go, out = sys.argv[1:]
run = Experiment(Workspace(ws_path), exp_name).start_logging()
Path(ready).touch()
wait_for_file(go)
versions = []
for j in range(int(count)):
    run.upload_file(f"shared/{j}.bin", shared)
    run.upload_file(f"own/{j}.txt", io.BytesIO(f"process {index} file {j}".encode()))
    versions.append(run.register_model("shared-model", f"own/{j}.txt").version)
run.complete()
write_json(out, {"id": run.id, "versions": versions})
