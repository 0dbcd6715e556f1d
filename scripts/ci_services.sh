#!/usr/bin/env bash
# The services the test suite needs, set up as root (CI runs scripts/test.sh as root).
# Idempotent, and about a second when everything is already there:
#   - docker.io installed (apt) if dockerd is missing; dockerd started if no engine answers;
#   - the base test image $RUNNER_TEST_IMAGE (default runner-test/python:3.11-bookworm) built
#     with debootstrap (python3, venv, pip, ca-certificates) when missing: no image registry
#     is needed, so `FROM python:...` is never pulled. First time about 90 s.
#   - openmpi-bin (a real mpirun) when mpirun is missing;
#   - the Slurm cluster of tests/slurm, by scripts/slurm_services.sh;
#   - the SSH test hosts of tests/ssh, by scripts/ssh_services.sh (last, so that its failure
#     still lets the docker line above print; the exit status then says it failed).
# The host CA bundle is copied into the image: package indexes here may be reached through a
# TLS-inspecting proxy. Adapted from ../shared/recipes/docker_local.sh.
set -euo pipefail
IMAGE=${RUNNER_TEST_IMAGE:-runner-test/python:3.11-bookworm}
ST=${RUNNER_DOCKER_STATE:-/tmp/runner-docker}
DOCKER=$(command -v docker || echo /usr/bin/docker)
if [ "$(id -u)" != 0 ]; then
  echo "ci_services.sh: must run as root (it installs and starts dockerd)" >&2
  exit 1
fi
mkdir -p "$ST"
t0=$(date +%s.%N)
apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! [ -x /usr/sbin/dockerd ] && ! command -v dockerd >/dev/null; then
  apt_install docker.io
  DOCKER=$(command -v docker)
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  DOCKERD=$(command -v dockerd || echo /usr/sbin/dockerd)
  setsid "$DOCKERD" --pidfile "$ST/dockerd.pid" >"$ST/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 150); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
  "$DOCKER" info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 "$ST/dockerd.log" >&2; exit 1; }
fi
if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || apt_install debootstrap
  rm -rf "$ST/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ST/rootfs" >"$ST/debootstrap.log" 2>&1 || { tail -20 "$ST/debootstrap.log" >&2; exit 1; }
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$ST/rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  rm -rf "$ST/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$ST/rootfs" -c . | "$DOCKER" import -c 'CMD ["python3"]' - "$IMAGE" >/dev/null
  rm -rf "$ST/rootfs"
fi
# A real mpirun for MpiConfiguration jobs (tests/v1/test_distributed.py); about 8 s once.
command -v mpirun >/dev/null || apt_install openmpi-bin \
  || echo "ci_services.sh: could not install openmpi-bin: the real-mpirun test will fail" >&2
echo "ci_services.sh: docker engine and $IMAGE ready in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"
bash "$(dirname "${BASH_SOURCE[0]}")/slurm_services.sh" \
  || echo "ci_services.sh: scripts/slurm_services.sh failed: tests/slurm will fail" >&2
bash "$(dirname "${BASH_SOURCE[0]}")/ssh_services.sh"
