"""Inside a submitted run: write awkward output to stdout and stderr.

usage: sr_chatty.py interleave N   N lines alternating stdout / stderr, numbered
       sr_chatty.py edge           a 1 MiB line, non-UTF-8 bytes, no final newline
       sr_chatty.py bulk MB        MB mebibytes of numbered lines on stdout
"""

import sys

from sr_common import record_pid

record_pid("chatty")
mode = sys.argv[1]
if mode == "interleave":
    for i in range(int(sys.argv[2])):
        stream = sys.stdout if i % 2 == 0 else sys.stderr
        stream.write(f"{'out' if i % 2 == 0 else 'err'} {i}\n")
        stream.flush()
elif mode == "edge":
    out = sys.stdout.buffer
    out.write(b"x" * (1 << 20) + b"\n")
    out.flush()
    out.write(b"bad bytes: \xff\xfe\x80 end\n")
    out.flush()
    sys.stderr.write("caf\u00e9 \u65e5\u672c on stderr\n")
    sys.stderr.flush()
    out.write(b"no newline at the end")
    out.flush()
elif mode == "bulk":
    out = sys.stdout.buffer
    line = b"%08d " + b"y" * 1014 + b"\n"  # 1024 bytes per line
    for i in range(int(sys.argv[2]) * 1024):
        out.write(line % i)
    out.flush()
