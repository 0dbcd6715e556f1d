"""At a signal, set N secrets PREFIX-0..PREFIX-N-1 in the workspace keyvault, one by one.

usage: keyvault_writer.py WORKSPACE PREFIX N READY_FILE GO_FILE
"""

import sys
from pathlib import Path

from history_common import wait_for_file

from runner import Workspace

ws_path, prefix, n, ready, go = sys.argv[1:]
kv = Workspace(ws_path).get_default_keyvault()
Path(ready).touch()
wait_for_file(go)
for i in range(int(n)):
    kv.set_secret(f"{prefix}-{i}", f"value of {prefix} {i}")
