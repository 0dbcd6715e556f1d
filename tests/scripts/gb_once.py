"""A trivial run that proves it ran exactly once: creates MARKERS/<run id> exclusively."""

import os
import sys

os.close(os.open(os.path.join(sys.argv[1], os.environ["RUNNER_RUN_ID"]), os.O_CREAT | os.O_EXCL))
