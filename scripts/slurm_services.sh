#!/usr/bin/env bash
# A single-node Slurm 22.05 cluster for tests/slurm (root only; idempotent, ~3 s when installed).
# Adapted from ../shared/recipes/slurm_local.sh: munge, slurmctld and slurmd on this machine,
# proctrack/cgroup (scancel reaches every process of a job), no slurmdbd (so `sacct` fails and
# `sacct -c` reads the job completion log: runner must cope with both, as real sites vary).
# What the tests need beyond the recipe:
#   - two fake GPUs (gres gpu, character devices made with mknod; nothing uses them: Slurm
#     only hands their indices to jobs as CUDA_VISIBLE_DEVICES);
#   - partition `debug` (default, this node, 2 GPUs), partition `nogpu`, whose only node is
#     a FUTURE one without GPUs (a request for GPUs there is impossible: sbatch --test-only
#     refuses it), and partition `short` (this node, at most 1 minute a job: a job asking
#     for more waits with reason PartitionTimeLimit, which never clears);
#   - memory as a consumable resource held by cgroups (CR_Core_Memory, task/cgroup with
#     ConstrainRAMSpace; 1 GB per CPU unless a job asks): a job over its --mem is OOM-killed;
#   - the login node is the test sshd (scripts/ssh_services.sh, user jobrunner), whose jobs
#     run as jobrunner; shared folders live under /tmp/runner-slurm-shared.
# Usage: slurm_services.sh [up|down]   Env: RUNNER_SLURM_STATE (/tmp/runner-slurm)
set -euo pipefail
ST=${RUNNER_SLURM_STATE:-/tmp/runner-slurm}
HN=$(hostname -s)
export SLURM_CONF=$ST/slurm.conf
t0=$(date +%s.%N)
if [ "$(id -u)" != 0 ]; then
  echo "slurm_services.sh: must run as root (it installs and starts slurmctld, slurmd, munged)" >&2
  exit 1
fi
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

down() {
  local d p
  for d in slurmd slurmctld; do
    if [ -f "$ST/$d.pid" ]; then
      p=$(cat "$ST/$d.pid"); kill "$p" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      rm -f "$ST/$d.pid"
    fi
  done
  echo "slurm_services.sh: slurmctld and slurmd stopped"
}
[ "${1:-up}" = down ] && { down; exit 0; }

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$ST"/{state,spool,log,dev} /tmp/runner-slurm-shared
chmod 1777 /tmp/runner-slurm-shared

# munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# fake GPUs: character devices of the nvidia major number
for i in 0 1; do [ -e "$ST/dev/nvidia$i" ] || mknod -m 666 "$ST/dev/nvidia$i" c 195 "$i"; done
mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
cpus=$(nproc)
conf=$(cat <<CONF
ClusterName=runnertest
SlurmctldHost=$HN
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$ST/slurmctld.pid
SlurmdPidFile=$ST/slurmd.pid
SlurmctldLogFile=$ST/log/slurmctld.log
SlurmdLogFile=$ST/log/slurmd.log
SlurmdSpoolDir=$ST/spool
StateSaveLocation=$ST/state
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$ST/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/linux
GresTypes=gpu
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName=$HN CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
NodeName=nogpu-node CPUs=1 RealMemory=1000 State=FUTURE
PartitionName=debug Nodes=$HN Default=YES MaxTime=INFINITE State=UP
PartitionName=nogpu Nodes=nogpu-node MaxTime=INFINITE State=UP
PartitionName=short Nodes=$HN MaxTime=1 State=UP
CONF
)
changed=0
if [ "$(cat "$ST/slurm.conf" 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" > "$ST/slurm.conf"; changed=1
fi
printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/dev/nvidia[0-1]\n' "$HN" "$ST" > "$ST/gres.conf"
cat > "$ST/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainDevices=no
CONF
mkdir -p /etc/slurm
ln -sfn "$ST/slurm.conf" /etc/slurm/slurm.conf
# Another cluster on the default ports (the recipe's) would take the jobs: stop it first.
for other in /tmp/infra-slurm; do
  for d in slurmd slurmctld; do
    [ -f "$other/$d.pid" ] && [ "$other" != "$ST" ] && kill "$(cat "$other/$d.pid")" 2>/dev/null || true
  done
done
if [ "$changed" = 1 ]; then
  for d in slurmd slurmctld; do running "$ST/$d.pid" && kill "$(cat "$ST/$d.pid")" && sleep 0.5; done
fi
running "$ST/slurmctld.pid" || /usr/sbin/slurmctld -f "$ST/slurm.conf"
running "$ST/slurmd.pid" || /usr/sbin/slurmd -f "$ST/slurm.conf"
st=""
for _ in $(seq 100); do
  st=$(sinfo -h -N -n "$HN" -o '%t' 2>/dev/null | head -1)
  case $st in idle|mix|alloc) break;; esac; sleep 0.2
done
case $st in idle|mix|alloc) ;; *) scontrol update nodename="$HN" state=resume 2>/dev/null || true;; esac
st=$(sinfo -h -N -n "$HN" -o '%t' 2>/dev/null | head -1)
echo "slurm_services.sh: node $HN $st (2 fake GPUs), partitions debug, nogpu and short, ready in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"
case $st in idle|mix|alloc) ;; *) exit 1;; esac
