"""A test module run by an inner pytest to check the suite's process leak check."""

import os
import subprocess
import sys
from pathlib import Path


def test_leaves_a_sleeper_behind():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    Path(os.environ["LEAK_PID_FILE"]).write_text(str(proc.pid), encoding="utf-8")


def test_a_child_that_exits_soon_is_not_a_leak():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])


def test_clean():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
