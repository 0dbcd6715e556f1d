#!/usr/bin/env bash
# Install runner with its test dependencies and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
# No service is needed yet: script runs use real processes and the workspace daemon
# that runner starts itself. Docker and sshd set-up will be added here as root when
# the targets that need them land.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; }
exec python3 -m pytest -q "$@"
