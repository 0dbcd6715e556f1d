"""Inside a submitted run: a child process holding MB mebibytes, until released.

argv: MARKERS MB. The child allocates and touches the memory, then records
``<run id>.started``; both wait for ``<run id>.release`` (or ``all.release``).
"""

import subprocess
import sys

from gb_common import gpu_view, record, wait_released

folder, mb = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3:  # the child
    data = b"\x01" * (mb << 20)  # written, so resident
    record(folder, "started", {**gpu_view(), "mb": len(data) >> 20})
    wait_released(folder)
    sys.exit(0)
child = subprocess.Popen([sys.executable, __file__, folder, str(mb), "child"])
wait_released(folder)
sys.exit(child.wait())
