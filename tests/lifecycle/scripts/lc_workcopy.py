"""A training script for tests/lifecycle/test_workcopy.py, run in a working folder.

lc_workcopy.py hashes        write outputs/hashes.json: sha256 and mode of every file
lc_workcopy.py vandal OUT    hash first, then change the folder every way a script can
                             (OUT: a folder outside, for a hard link out)
"""

import hashlib
import json
import os
import sys


def hashes():
    seen = {}
    for folder, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not (folder == "." and d in ("outputs", "logs"))]
        for name in files:
            path = os.path.join(folder, name)[2:]
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            seen[path] = [digest, bool(os.stat(path).st_mode & 0o100)]
    with open("outputs/hashes.json", "w") as f:
        json.dump(seen, f, sort_keys=True)


def vandal(outside):
    with open("config.txt", "r+b") as f:  # same size, in place
        f.write(b"X" * len(f.read()))
    with open("data/big.bin", "ab") as f:
        f.write(b"appended")
    os.truncate("data/small.bin", 0)
    os.chmod("tool.sh", 0)
    with open("replacement.tmp", "w") as f:
        f.write("replaced")
    os.replace("replacement.tmp", "pkg/mod.py")
    os.remove("pkg/gone.py")
    os.link("pkg/linked.py", os.path.join(outside, "linked.py"))  # written after the run
    os.makedirs("new/deeper", exist_ok=True)
    with open("new/deeper/file.txt", "w") as f:
        f.write("new")
    with open("pkg/extra.py", "w") as f:
        f.write("extra")
    os.chmod("pkg", 0o500)


if __name__ == "__main__":
    hashes()
    if sys.argv[1] == "vandal":
        vandal(sys.argv[2])
