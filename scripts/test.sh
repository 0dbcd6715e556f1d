#!/usr/bin/env bash
# Install runner with its test dependencies and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
# Script runs use real processes and the workspace daemon that runner starts itself.
# As root, scripts/ci_services.sh first installs and starts what tests/docker needs (the
# Docker engine and a base image built without a registry), the Slurm cluster of tests/slurm
# and the sshd hosts of tests/ssh; it is quick when all is there. scripts/browser_services.sh installs chromium for
# tests/studio's browser tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]" 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; }
if [ "$(id -u)" = 0 ]; then
  # The Docker engine and the base test image (tests/docker), the Slurm cluster (tests/slurm),
  # the SSH hosts (tests/ssh). A failure does not stop the other tests; with CI=true the
  # tests that need what is missing then fail, saying why.
  bash scripts/ci_services.sh || echo "scripts/ci_services.sh failed: tests/docker, tests/slurm or tests/ssh will fail" >&2
  bash scripts/browser_services.sh || echo "scripts/browser_services.sh failed: tests/studio will fail" >&2
fi
exec python3 -m pytest -q "$@"
