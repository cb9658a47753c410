#!/usr/bin/env bash
# A real Slurm on this one machine, for tests and demos: munge, slurmctld and one slurmd on
# loopback, no systemd, no cgroups, no accounting. Everything lives under BASE; `stop` ends only
# the daemons `start` started (by their pid files).
#
#   scripts/slurm/local-slurm.sh start BASE [CPUS]   # prints the environment to use (SLURM_CONF=...)
#   scripts/slurm/local-slurm.sh stop BASE
#
# Needs root (slurmd), and the packages scripts/install-deps.sh installs.
set -euo pipefail
umask 077  # secrets, journals and logs made here are private from their first byte
cmd=${1:?usage: local-slurm.sh start|stop BASE [CPUS]}
base=${2:?usage: local-slurm.sh start|stop BASE [CPUS]}
cpus=${3:-4}
source "$(dirname "$0")/slurm-conf.sh"
node=$(hostname)

alive() {  # pid: running and not a zombie
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ') || return 1
  [[ -n "$st" && "$st" != Z* ]]
}

stop_pidfile() {
  local f=$1 pid
  [[ -s "$f" ]] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [[ "$cmd" == stop ]]; then
  stop_pidfile "$base/run/slurmd.pid"
  stop_pidfile "$base/run/slurmctld.pid"
  stop_pidfile "$base/munge/munged.pid"
  exit 0
fi
[[ "$cmd" == start ]] || { echo "local-slurm.sh: unknown command $cmd" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "local-slurm.sh: needs root (slurmd)" >&2; exit 1; }
for b in munged slurmctld slurmd sinfo; do
  command -v "$b" >/dev/null || { echo "local-slurm.sh: $b missing (run scripts/install-deps.sh)" >&2; exit 1; }
done

mkdir -p "$base"/{state,spool,run,log,tmp}
chmod 755 "$base"
base=$(cd "$base" && pwd)

# munge, as the munge user, with its own socket and key under BASE (also the broker's: users
# authenticate to it with MUNGE).
"$(dirname "$0")/../munged.sh" start "$base/munge" >/dev/null
socket="$base/munge/munge.socket"

{
  cat <<EOF
ClusterName=rfaasci
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
TmpFS=$base/tmp
EOF
  slurm_conf_common
  cat <<EOF
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
} >"$base/slurm.conf"
chmod 644 "$base/slurm.conf"  # not secret: every user of this Slurm reads it
export SLURM_CONF="$base/slurm.conf"
slurmctld -i -f "$SLURM_CONF"
slurmd -N "$node" -f "$SLURM_CONF"
for _ in $(seq 200); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.1
done
if ! sinfo -h -o %t 2>/dev/null | grep -q idle; then
  echo "local-slurm.sh: the node did not become idle; logs:" >&2
  tail -n 20 "$base/log/slurmctld.log" "$base/log/slurmd.log" >&2 || true
  exit 1
fi
echo "SLURM_CONF=$SLURM_CONF"
echo "RFAAS_MUNGE_SOCKET=$socket"
