"""Inside a submitted run: print, wait for the reader to have seen it, print again.

usage: sr_stream.py SEEN   (the test creates SEEN once the first line reached it)
"""

import sys

from sr_common import wait_for

print("first line, waiting for the reader")
print("on stderr while waiting", file=sys.stderr)
wait_for(sys.argv[1], timeout_s=30)
print("second line, after the reader saw the first")
