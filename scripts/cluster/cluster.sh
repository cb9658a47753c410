#!/usr/bin/env bash
# A cluster of N nodes on this one machine, for tests and demonstrations of rfaas across nodes:
# each node a network namespace with its own address on a bridge (veth pairs, the bridge in a
# switch namespace of its own, so the host's network is never touched) and its own hostname (a UTS
# namespace), pinned to chosen cores; a real multi-node Slurm on it (slurmctld on node1, one
# slurmd per node with its own NodeAddr, spool and pid files) and one munged every node shares
# (one key on every node, as on a real cluster). Everything lives under BASE and is torn down by
# what BASE records (pid and namespace name files), never by a broad name.
#
#   cluster.sh up BASE [--nodes N] [--cpus 0:1:1] [--prefix 10.42.0]
#                                   --cpus: each node's cores (lists separated by ':'; default: the
#                                   machine's cores round robin); prints the environment (SLURM_CONF,
#                                   RFAAS_MUNGE_SOCKET) and writes it to BASE/env
#   cluster.sh down BASE
#   cluster.sh exec BASE NODE -- CMD...    runs CMD on NODE (its network, hostname and /etc/hosts)
#   cluster.sh addr BASE NODE              NODE's address
#   cluster.sh fault BASE FAULT...         faults.sh: partition, heal, loss, delay, link, poweroff, clear
#
# Needs root. Nodes are named node1..nodeN; node1 is the head node (slurmctld) and the login node
# the scripts submit from.
set -euo pipefail
umask 077
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../slurm/slurm-conf.sh"
cmd=${1:?usage: cluster.sh up|down|exec|addr|fault BASE ...}
base=${2:?usage: cluster.sh $cmd BASE ...}
shift 2

alive() {  # pid: running and not a zombie
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ') || return 1
  [[ -n "$st" && "$st" != Z* ]]
}

stop_pid() {  # pid: TERM, then KILL after 5 s
  local pid=$1
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

anchor_of() {  # node: the pid whose namespaces are the node's, checked to be the node's still
  local f="$base/nodes/$1/anchor.pid" pid ns
  [[ -s "$f" ]] || { echo "cluster.sh: no node $1 under $base" >&2; return 1; }
  pid=$(cat "$f")
  ns=$(cat "$base/nodes/$1/netns" 2>/dev/null || true)
  # A pid file outlives its process (a reboot, a kill): a reused pid must never make this act
  # on the host's own namespaces.
  if [[ ! "$pid" =~ ^[0-9]+$ ]] || [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" != "sleep infinity " ]] ||
     [[ "$(readlink "/proc/$pid/ns/uts" 2>/dev/null)" == "$(readlink /proc/self/ns/uts)" ]] ||
     [[ -z "$ns" || "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" != "$(stat -L -c %i "/run/netns/$ns" 2>/dev/null)" ]]; then
    echo "cluster.sh: $1's anchor (pid $pid) is gone or not $1's" >&2
    return 1
  fi
  echo "$pid"
}

in_node() {  # node cmd...: in the node's network, UTS and mount namespaces, on its cores
  local node=$1; shift
  local pid
  pid=$(anchor_of "$node")
  nsenter -t "$pid" -n -u -m --wd="$PWD" -- taskset -c "$(cat "$base/nodes/$node/cpus")" "$@"
}

node_pids() {  # node: every process in the node's UTS namespace (the anchor included)
  local ns pid
  ns=$(readlink "/proc/$(anchor_of "$1")/ns/uts") || return 0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ "$(readlink "$p/ns/uts" 2>/dev/null)" == "$ns" ]] && echo "$pid"
  done
  return 0
}

case "$cmd" in
  exec)
    node=${1:?usage: cluster.sh exec BASE NODE -- CMD...}; shift
    [[ "${1:-}" == -- ]] && shift
    in_node "$node" "$@"
    exit $?
    ;;
  addr)
    cat "$base/nodes/${1:?usage: cluster.sh addr BASE NODE}/addr"
    exit 0
    ;;
  fault)
    exec "$here/faults.sh" "$base" "$@"
    ;;
  down)
    [[ -d "$base" ]] || exit 0
    # Slurm's daemons first (their jobs' steps end with them), then every process left on a
    # node (jobs' leftovers), then the namespaces and files this cluster made.
    for f in "$base"/run/slurmd-*.pid "$base"/run/slurmctld.pid; do
      [[ -s "$f" ]] && stop_pid "$(cat "$f")"
      rm -f "$f"
    done
    for d in "$base"/nodes/*/; do
      [[ -d "$d" ]] || continue
      node=$(basename "$d")
      if [[ -s "$d/anchor.pid" ]] && anchor_of "$node" >/dev/null 2>&1; then
        for pid in $(node_pids "$node"); do kill -KILL "$pid" 2>/dev/null || true; done
      fi
      rm -f "$d/anchor.pid"
    done
    "$here/../munged.sh" stop "$base/munge" || true
    if [[ -s "$base/netns" ]]; then
      while read -r ns; do
        [[ "$ns" =~ ^rfaas-[0-9a-f]{8}-(sw|node[0-9]+)$ ]] || continue  # only names up made
        ip netns del "$ns" 2>/dev/null || true
        [[ -d "/etc/netns/$ns" ]] && rm -rf "/etc/netns/$ns"
      done <"$base/netns"
      rm -f "$base/netns"
    fi
    exit 0
    ;;
  up) ;;
  *) echo "cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac

[[ $(id -u) -eq 0 ]] || { echo "cluster.sh: needs root (namespaces, slurmd)" >&2; exit 1; }
nodes=3
cpus=""
prefix=10.42.0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "$nodes" =~ ^[0-9]+$ && $nodes -ge 1 && $nodes -le 16 ]] || { echo "cluster.sh: --nodes 1..16" >&2; exit 2; }
for b in ip nsenter unshare munged slurmctld slurmd sinfo nft; do
  command -v "$b" >/dev/null || { echo "cluster.sh: $b missing (run scripts/install-deps.sh)" >&2; exit 1; }
done
[[ -e "$base/netns" ]] && { echo "cluster.sh: $base already holds a cluster (cluster.sh down $base)" >&2; exit 1; }
mkdir -p "$base"/{state,run,log,tmp,nodes}
chmod 755 "$base"
base=$(cd "$base" && pwd)
up_ok=""
trap '[[ -n "$up_ok" ]] || "$0" down "$base"' EXIT

# Cores: node i gets the i-th ':'-separated list, or core (i-1) mod ncores.
mapfile -t machine_cores < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
IFS=: read -r -a cpu_lists <<<"$cpus"

# Names: unique to this cluster (a random tag recorded in BASE), so that down removes only these.
tag=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
ns_switch="rfaas-$tag-sw"
: >"$base/netns"
ip netns add "$ns_switch"
echo "$ns_switch" >>"$base/netns"
ip -n "$ns_switch" link add br0 type bridge
ip -n "$ns_switch" link set br0 up

hosts="127.0.0.1 localhost"$'\n'
for i in $(seq "$nodes"); do hosts+="$prefix.$i node$i"$'\n'; done

for i in $(seq "$nodes"); do
  node=node$i
  ns="rfaas-$tag-$node"
  ip netns add "$ns"
  echo "$ns" >>"$base/netns"
  # The node's /etc/hosts (bind-mounted in its mount namespace below): node names resolve.
  mkdir -p "/etc/netns/$ns"
  printf '%s' "$hosts" >"/etc/netns/$ns/hosts"
  chmod 755 "/etc/netns/$ns"
  chmod 644 "/etc/netns/$ns/hosts"
  ip link add "v$tag$i" type veth peer name "p$i" netns "$ns_switch"
  ip link set "v$tag$i" netns "$ns"
  ip -n "$ns" link set "v$tag$i" name eth0
  ip -n "$ns" addr add "$prefix.$i/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns_switch" link set "p$i" master br0 up
  cores=${cpu_lists[$((i - 1))]:-${machine_cores[$(((i - 1) % ${#machine_cores[@]}))]}}
  mkdir -p "$base/nodes/$node" "$base/tmp/$node" "$base/spool/$node"
  echo "$prefix.$i" >"$base/nodes/$node/addr"
  echo "$cores" >"$base/nodes/$node/cpus"
  echo "$ns" >"$base/nodes/$node/netns"
  # The anchor holds the node's namespaces (network, UTS, and the mount namespace in which
  # /etc/hosts is the node's); everything on the node enters them, and runs on the node's cores.
  # (Not `ip netns exec`: it mounts a fresh /sys, which hides the cgroup file system slurmd and
  # the executor daemon use.)
  nsenter --net="/run/netns/$ns" -- unshare --uts --mount --propagation slave --fork -- taskset -c "$cores" \
    sh -c "mount --bind /etc/netns/$ns/hosts /etc/hosts && hostname $node && exec sleep infinity" \
    </dev/null >/dev/null 2>&1 &
  # The anchor is unshare's child (sleep): wait until it runs under the node's hostname.
  anchor=""
  for _ in $(seq 100); do
    anchor=$(pgrep -P $! 2>/dev/null | head -n1 || true)
    [[ -n "$anchor" ]] && [[ "$(nsenter -t "$anchor" -u hostname 2>/dev/null)" == "$node" ]] &&
      [[ "$(tr '\0' ' ' <"/proc/$anchor/cmdline" 2>/dev/null)" == "sleep infinity " ]] && break
    anchor=""
    sleep 0.05
  done
  [[ -n "$anchor" ]] || { echo "cluster.sh: $node's namespaces did not come up" >&2; exit 1; }
  echo "$anchor" >"$base/nodes/$node/anchor.pid"
done

# munge: one key for every node, one munged whose socket every node reaches (a path, not an
# address). Users and daemons of every node authenticate with it.
"$here/../munged.sh" start "$base/munge" >/dev/null
socket="$base/munge/munge.socket"

conf="$base/slurm.conf"
{
  cat <<EOF
ClusterName=rfaasns
SlurmctldHost=node1($prefix.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool/%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd-%n.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd-%n.log
TmpFS=$base/tmp/%n
SlurmdTimeout=30
EOF
  slurm_conf_common
  for i in $(seq "$nodes"); do
    n=$(tr ',' '\n' <"$base/nodes/node$i/cpus" | wc -l)
    echo "NodeName=node$i NodeAddr=$prefix.$i CPUs=$n RealMemory=4096 State=UNKNOWN"
  done
  echo "PartitionName=nodes Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
} >"$conf"
chmod 644 "$conf"
export SLURM_CONF="$conf"
in_node node1 slurmctld -i -f "$conf"
for i in $(seq "$nodes"); do
  in_node "node$i" slurmd -N "node$i" -f "$conf"
done
for _ in $(seq 300); do
  [[ $(in_node node1 sinfo -h -N -o %t 2>/dev/null | grep -c idle) -eq $nodes ]] && break
  sleep 0.1
done
if [[ $(in_node node1 sinfo -h -N -o %t 2>/dev/null | grep -c idle) -ne $nodes ]]; then
  echo "cluster.sh: not every node became idle; logs:" >&2
  in_node node1 sinfo -N >&2 || true
  tail -n 20 "$base/log/"*.log >&2 || true
  exit 1
fi
{
  echo "SLURM_CONF=$conf"
  echo "RFAAS_MUNGE_SOCKET=$socket"
} >"$base/env"
chmod 644 "$base/env"
up_ok=1
cat "$base/env"
