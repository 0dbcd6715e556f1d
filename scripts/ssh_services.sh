#!/usr/bin/env bash
# The SSH hosts tests/ssh needs, set up as root (scripts/ci_services.sh calls this).
# Idempotent, and about a second when everything is already there (it then only checks):
#   - 127.0.0.1:2222, user jobrunner: sshd with key-only auth and its own host key.
#     State /tmp/infra-ssh: client_key, known_hosts ("[127.0.0.1]:2222 <key>"), sshd_config.
#   - h1=10.213.0.11, h2=10.213.0.12: one network namespace per "remote host", joined to the
#     root namespace by the bridge brjx0 (10.213.0.1/24) and a veth pair each (veth-h1 is the
#     root end: `ip link set veth-h1 down` cuts h1 off), sshd on port 22 of each, user jobrunner.
#     State /tmp/infra-netns: client_key, known_hosts (by address and by name), ssh_config
#     (`ssh -F /tmp/infra-netns/ssh_config h1`).
#   - 127.0.0.3:2222, user jobrunner-nopy: a host without python. Its sessions get
#     PATH=/tmp/infra-ssh-nopy/bin (sshd's SetEnv, which overrides sshd's default PATH), a
#     folder of symlinks to a few tools (sh, cat, mkdir, tar, ...), and /bin/sh (dash, which
#     reads no start-up file) as login shell, so `command -v python3` finds nothing. A PATH of
#     /bin would not do: with Debian's usrmerge /bin is /usr/bin. State /tmp/infra-ssh-nopy:
#     client_key, known_hosts, sshd_config, bin/.
#   - 127.0.0.4:2222, user jobrunner-pw: password login only (PubkeyAuthentication no,
#     KbdInteractiveAuthentication no, UsePAM no: sshd itself checks the password against
#     /etc/shadow with crypt(3), which takes chpasswd's yescrypt hashes). The password is made
#     once per machine: random, then a fixed tail with a space, quotes, '$', '\' and ';'.
#     State /tmp/infra-ssh-pw: password (0600, no newline), askpass (prints it), known_hosts,
#     sshd_config, password.hash (the shadow hash set from it; a different one is reset).
# openssh-server, openssh-client and iproute2 are installed (apt) when missing. A sshd whose
# config changed is sent SIGHUP (it re-reads it); a link left down (a cut) is brought up.
# Adapted from ../shared/recipes/ssh_local.sh and ../shared/recipes/ssh_netns_hosts.sh.
set -euo pipefail
trap 'echo "ssh_services.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
if [ "$(id -u)" != 0 ]; then
  echo "ssh_services.sh: must run as root (it adds users, network namespaces, sshds)" >&2
  exit 1
fi
t0=$(date +%s.%N)
USER_MAIN=jobrunner
USER_NOPY=jobrunner-nopy
USER_PW=jobrunner-pw
NET=10.213.0
BR=brjx0
NETNS_HOSTS=(h1 h2)
# What the host without python has on its PATH (each only if this machine has it).
NOPY_TOOLS="sh bash cat mkdir rm rmdir mv cp ln ls chmod touch test [ echo printf env id uname
  true false sleep kill ps nohup setsid timeout tar gzip base64 sha256sum head tail wc tr sed grep
  find xargs sort date dirname basename readlink realpath mktemp stat du df hostname whoami"

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v ip >/dev/null || missing+=(iproute2)
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
mkdir -p /run/sshd && chmod 0755 /run/sshd

# ensure_user NAME SHELL: exists, login shell SHELL, no password but not locked (useradd
# leaves '!', and with UsePAM no sshd then refuses even key logins: "account is locked").
ensure_user() {
  id "$1" >/dev/null 2>&1 || useradd --create-home --shell "$2" "$1"
  [ "$(getent passwd "$1" | cut -d: -f7)" = "$2" ] || usermod --shell "$2" "$1"
  [ "$(getent shadow "$1" | cut -d: -f2)" = '*' ] || usermod -p '*' "$1"
}

# authorize USER PUBKEYFILE: append the key to USER's authorized_keys once.
authorize() {
  local h
  h=$(getent passwd "$1" | cut -d: -f6)
  install -d -m 700 -o "$1" -g "$1" "$h/.ssh"
  touch "$h/.ssh/authorized_keys"
  grep -qF "$(cut -d' ' -f2 "$2")" "$h/.ssh/authorized_keys" || cat "$2" >>"$h/.ssh/authorized_keys"
  chown "$1:$1" "$h/.ssh/authorized_keys"
  chmod 600 "$h/.ssh/authorized_keys"
}

keygen() { [ -f "$1" ] || ssh-keygen -q -t ed25519 -N '' -C "${2:-}" -f "$1"; }

# write_if_changed FILE: stdin to FILE unless FILE already has exactly that; 0 when written.
write_if_changed() {
  local new
  new=$(cat)
  if [ -f "$1" ] && [ "$(cat "$1")" = "$new" ]; then return 1; fi
  printf '%s\n' "$new" >"$1"
}

# sshd_alive PIDFILE CONFIG [NETNS]: the sshd of that pid file still runs, from that config,
# in that namespace (a pid file can outlive its process; a netns can be deleted under it).
sshd_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-f $2 " || return 1
  [ -z "${3:-}" ] || [ "$(ip netns identify "$pid")" = "$3" ]
}

# run_sshd CONFIG PIDFILE LOG CHANGED [NETNS]: start it, or SIGHUP it when its config changed.
run_sshd() {
  local cfg=$1 pidf=$2 log=$3 changed=$4 ns=${5:-}
  if sshd_alive "$pidf" "$cfg" "$ns"; then
    [ "$changed" = 0 ] || kill -HUP "$(cat "$pidf")"
    return 0
  fi
  [ ! -s "$pidf" ] || kill "$(cat "$pidf")" 2>/dev/null || true
  rm -f "$pidf"
  /usr/sbin/sshd -t -f "$cfg"
  if [ -n "$ns" ]; then
    ip netns exec "$ns" /usr/sbin/sshd -f "$cfg" -E "$log"
  else
    /usr/sbin/sshd -f "$cfg" -E "$log"
  fi
  for _ in $(seq 50); do [ -s "$pidf" ] && return 0; sleep 0.1; done
  echo "sshd ($cfg) did not start:" >&2
  tail -5 "$log" >&2
  return 1
}

# loopback_host STATE ADDR PORT USER AUTH [EXTRA_SSHD_CONFIG]: a sshd on ADDR:PORT (all of
# 127/8 answers on lo) for USER, with its own host key. AUTH "key": key-only, with a client
# key in STATE authorized for USER; "password": USER's password only.
loopback_host() {
  local st=$1 addr=$2 port=$3 u=$4 auth=$5 extra=${6:-} changed=0 pubkey=yes password=no
  mkdir -p "$st"
  keygen "$st/ssh_host_ed25519_key"
  if [ "$auth" = key ]; then
    keygen "$st/client_key" test-client
    authorize "$u" "$st/client_key.pub"
  else
    pubkey=no password=yes
  fi
  # known_hosts written from the host key we generated (no TOFU, no ssh-keyscan)
  echo "[$addr]:$port $(cut -d' ' -f1,2 "$st/ssh_host_ed25519_key.pub")" >"$st/known_hosts"
  write_if_changed "$st/sshd_config" <<EOF && changed=1
Port $port
ListenAddress $addr
HostKey $st/ssh_host_ed25519_key
PidFile $st/sshd.pid
PubkeyAuthentication $pubkey
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication $password
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers $u
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
$extra
EOF
  run_sshd "$st/sshd_config" "$st/sshd.pid" "$st/sshd.log" "$changed"
}

# --- 127.0.0.1:2222 ---------------------------------------------------------------------------
ensure_user "$USER_MAIN" /bin/bash
# Runs with a docker environment on the main host use this machine's engine as that user.
if getent group docker >/dev/null && ! id -nG "$USER_MAIN" | grep -qw docker; then
  usermod -aG docker "$USER_MAIN"
fi
loopback_host /tmp/infra-ssh 127.0.0.1 2222 "$USER_MAIN" key

# --- 127.0.0.3:2222, no python ---------------------------------------------------------------
NOPY=/tmp/infra-ssh-nopy
ensure_user "$USER_NOPY" /bin/sh
mkdir -p "$NOPY/bin"
for t in $NOPY_TOOLS; do
  p=$(command -v "$t" 2>/dev/null) || continue
  case $p in /*) ;; *) p=/usr/bin/$t; [ -x "$p" ] || continue ;; esac  # builtins: [, echo, ...
  [ "$(readlink "$NOPY/bin/$t" 2>/dev/null)" = "$p" ] || ln -sfn "$p" "$NOPY/bin/$t"
done
loopback_host "$NOPY" 127.0.0.3 2222 "$USER_NOPY" key "SetEnv PATH=$NOPY/bin"

# --- 127.0.0.4:2222, password only -----------------------------------------------------------
PW=/tmp/infra-ssh-pw
mkdir -p "$PW"
chmod 700 "$PW"
id "$USER_PW" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_PW"
[ "$(getent passwd "$USER_PW" | cut -d: -f7)" = /bin/bash ] || usermod --shell /bin/bash "$USER_PW"
if [ ! -s "$PW/password" ]; then
  (umask 077 && printf '%s' "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_') \$x'\"\\;" \
    >"$PW/password")
  rm -f "$PW/password.hash"
fi
chmod 600 "$PW/password"
# (Re)set the password when the shadow hash is not the one set from this password file.
if [ ! -s "$PW/password.hash" ] ||
  [ "$(getent shadow "$USER_PW" | cut -d: -f2)" != "$(cat "$PW/password.hash")" ]; then
  { printf '%s:' "$USER_PW"; cat "$PW/password"; echo; } | chpasswd
  (umask 077 && getent shadow "$USER_PW" | cut -d: -f2 >"$PW/password.hash")
fi
printf '#!/bin/sh\nexec cat %s/password\n' "$PW" | write_if_changed "$PW/askpass" || true
chmod 700 "$PW/askpass"
loopback_host "$PW" 127.0.0.4 2222 "$USER_PW" password

# --- h1, h2: network namespaces --------------------------------------------------------------
NS=/tmp/infra-netns
mkdir -p "$NS"
keygen "$NS/client_key"
authorize "$USER_MAIN" "$NS/client_key.pub"
if ! ip link show "$BR" >/dev/null 2>&1; then ip link add "$BR" type bridge; fi
ip addr replace "$NET.1/24" dev "$BR"
ip link set "$BR" up
# host<->host traffic is bridged; with dockerd running, br_netfilter + iptables FORWARD policy
# DROP silently drops it (root<->host still works). Allow traffic within our bridge.
if command -v iptables >/dev/null && sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null | grep -q 1; then
  iptables -C FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 -i "$BR" -o "$BR" -j ACCEPT
fi
known=""
sshconf=""
i=0
for h in "${NETNS_HOSTS[@]}"; do
  i=$((i + 1))
  a="$NET.$((10 + i))"
  [ -e "/run/netns/$h" ] || ip netns add "$h"
  # veth-$h must be the peer of $h's eth0. After `ip netns del` the old namespace can linger
  # a while (sockets still closing) with its end of the old pair: then start over.
  peer=$(ip -n "$h" -o link show eth0 2>/dev/null | sed -n 's/^[0-9]*: eth0@if\([0-9]*\):.*/\1/p' || true)
  if [ -z "$peer" ] || [ "$peer" != "$(cat "/sys/class/net/veth-$h/ifindex" 2>/dev/null)" ]; then
    ip link del "veth-$h" 2>/dev/null || true
    ip -n "$h" link del eth0 2>/dev/null || true
    ip link add "veth-$h" type veth peer name eth0 netns "$h"
  fi
  ip -n "$h" addr replace "$a/24" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" link set lo up
  ip link set "veth-$h" master "$BR" up  # also undoes a cut (link down) a test left behind
  keygen "$NS/$h.key"
  known+="$a $(cut -d' ' -f1,2 "$NS/$h.key.pub")"$'\n'
  known+="$h $(cut -d' ' -f1,2 "$NS/$h.key.pub")"$'\n'
  sshconf+="Host $h
  HostName $a
  HostKeyAlias $h
  User $USER_MAIN
  IdentityFile $NS/client_key
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking yes
  UserKnownHostsFile $NS/known_hosts
  GlobalKnownHostsFile /dev/null
  ConnectTimeout 5
"
  changed=0
  write_if_changed "$NS/$h.sshd_config" <<EOF && changed=1
Port 22
ListenAddress $a
HostKey $NS/$h.key
PidFile $NS/$h.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers $USER_MAIN
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  run_sshd "$NS/$h.sshd_config" "$NS/$h.pid" "$NS/$h.log" "$changed" "$h"
done
printf '%s' "$known" >"$NS/known_hosts"
printf '%s' "$sshconf" >"$NS/ssh_config"

# --- verify: a login on each, in parallel ------------------------------------------------------
# check NAME EXPECTED STATE_KEY KNOWN_HOSTS PORT USER@ADDR COMMAND
check() {
  local out
  out=$(ssh -F none -i "$3" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$4" -o GlobalKnownHostsFile=/dev/null \
    -p "$5" "$6" "$7" 2>&1) || true
  [ "$out" = "$2" ] || { echo "ssh_services.sh: $1: expected '$2', got: $out" >&2; return 1; }
}
# check_pw NAME EXPECTED STATE PORT USER@ADDR COMMAND: the same, with STATE's password
check_pw() {
  local out
  out=$(SSH_ASKPASS="$3/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh -F none \
    -o PubkeyAuthentication=no -o PreferredAuthentications=password \
    -o NumberOfPasswordPrompts=1 -o ConnectTimeout=5 -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$3/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -p "$4" "$5" "$6" 2>&1 </dev/null) || true
  [ "$out" = "$2" ] || { echo "ssh_services.sh: $1: expected '$2', got: $out" >&2; return 1; }
}
pids=()
check 127.0.0.1:2222 "$USER_MAIN" /tmp/infra-ssh/client_key /tmp/infra-ssh/known_hosts 2222 \
  "$USER_MAIN@127.0.0.1" 'id -un' & pids+=($!)
check "127.0.0.3:2222 (no python)" "$USER_NOPY nopython" "$NOPY/client_key" "$NOPY/known_hosts" \
  2222 "$USER_NOPY@127.0.0.3" \
  'echo "$(id -un) $(command -v python3 || command -v python || echo nopython)"' & pids+=($!)
check_pw "127.0.0.4:2222 (password)" "$USER_PW /usr/bin/python3" "$PW" 2222 \
  "$USER_PW@127.0.0.4" 'echo "$(id -un) $(command -v python3)"' & pids+=($!)
i=0
for h in "${NETNS_HOSTS[@]}"; do
  i=$((i + 1))
  check "$h" "$USER_MAIN" "$NS/client_key" "$NS/known_hosts" 22 "$USER_MAIN@$NET.$((10 + i))" \
    'id -un' & pids+=($!)
done
ok=1
for p in "${pids[@]}"; do wait "$p" || ok=0; done
[ "$ok" = 1 ] || exit 1
echo "ssh_services.sh: sshd 127.0.0.1:2222 ($USER_MAIN), 127.0.0.3:2222 ($USER_NOPY, no python)," \
  "127.0.0.4:2222 ($USER_PW, password only)," \
  "netns h1=$NET.11 h2=$NET.12 ready in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"
