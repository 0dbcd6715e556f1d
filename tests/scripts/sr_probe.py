"""Inside a submitted run: report what the run looks like from the inside, then end.

Controlled by environment variables (set through RunConfiguration.environment_variables):
  SR_OUT      write a JSON report here (argv, cwd, files, session, interpreter, run identity)
  SR_LOG_N    log this many values of metric 'v' before reporting (default 3)
  SR_SCRATCH  if set, write a file named so into the working folder
  SR_STARTED  touch this marker once the report is written
  SR_GO       then wait for this marker before ending
  SR_EXIT     exit with this code at the end (default 0)
"""

import os
import sys

FDS = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))  # before anything opens more

from sr_common import record_pid, touch, wait_for, write_json  # noqa: E402

import runner  # noqa: E402
from runner import Run  # noqa: E402

record_pid("probe")
run = Run.get_context(allow_offline=False)
for i in range(int(os.environ.get("SR_LOG_N", "3"))):
    run.log("v", i)
run.tag("probe", "yes")
files = sorted(os.path.relpath(os.path.join(d, f), ".") for d, _, fs in os.walk(".") for f in fs)
if os.environ.get("SR_SCRATCH"):
    with open(os.environ["SR_SCRATCH"], "w") as f:
        f.write("written by the run")
parent = run.parent
report = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "files": files,
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "sid": os.getsid(0),
    "pgid": os.getpgid(0),
    "executable": sys.executable,
    "version": list(sys.version_info[:2]),
    "env": {k: v for k, v in os.environ.items() if k.startswith("SR_VAR")},
    "run_id": run.id,
    "run_type": type(run).__name__,
    "parent": None if parent is None else parent.id,
    "runner_file": runner.__file__,
    "stdin": sys.stdin.read() if sys.stdin is not None else None,
    "fds": FDS,
}
if os.environ.get("SR_OUT"):
    write_json(os.environ["SR_OUT"], report)
print("probe reported", flush=True)
if os.environ.get("SR_STARTED"):
    touch(os.environ["SR_STARTED"])
if os.environ.get("SR_GO"):
    wait_for(os.environ["SR_GO"])
run.log("after_go", 1)
os.makedirs("outputs", exist_ok=True)
with open("outputs/probe.txt", "w") as f:
    f.write("probe output")
sys.exit(int(os.environ.get("SR_EXIT", "0")))
