"""Create (or open) a workspace; prints its access.

lc_create.py PATH [--shared-group GROUP] [--secret NAME=VALUE]
"""

import argparse
import json

from runner import Workspace


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--shared-group")
    parser.add_argument("--secret")
    opts = parser.parse_args()
    ws = Workspace.create(opts.path, exist_ok=True, shared_group=opts.shared_group)
    if opts.secret:
        name, value = opts.secret.split("=", 1)
        ws.get_default_keyvault().set_secret(name, value)
    print(json.dumps(ws._access.describe()))


if __name__ == "__main__":
    main()
