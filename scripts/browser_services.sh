#!/usr/bin/env bash
# The browser of tests/studio: Debian's chromium, driven by Playwright for Python through
# executable_path (Playwright cannot download its own browser here). Run as root; quick
# when chromium is already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
command -v chromium
