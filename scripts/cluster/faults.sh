#!/usr/bin/env bash
# Network faults on a namespace cluster (cluster.sh up BASE): nftables rules inside the nodes'
# namespaces (table inet rfaas_faults, which `clear` deletes), links taken down, power cuts.
#
#   faults.sh BASE partition A B    A and B no longer reach each other (both directions, silently:
#                                   packets dropped, no reset, as a failed switch port or cable)
#   faults.sh BASE heal A B
#   faults.sh BASE loss NODE PCT    NODE loses PCT % of the packets it sends and of those it receives
#   faults.sh BASE delay NODE MS    every packet NODE sends to the network waits MS ms (0: no delay)
#   faults.sh BASE link NODE down|up
#   faults.sh BASE poweroff NODE    power cut: NODE's link goes down first (nothing it says after
#                                   that leaves: no FIN, no RST), then all of its processes are killed
#   faults.sh BASE clear [NODE]     removes the rules (of NODE, or of every node)
#
# This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off), so a delay is made in userspace: an
# iptables NFQUEUE rule in the node hands its outgoing packets (on eth0, not its loopback) to
# rfaas-nfq-delay (tests/cluster/nfq_delay.c, built into BUILD/tests/cluster; $RFAAS_NFQ_DELAY names it), which holds
# each for MS ms and gives it back in order. The rule has --queue-bypass: if the delayer is gone,
# packets pass undelayed, never dropped. Delay on every node is delay on every link, each way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${1:?usage: faults.sh BASE partition|heal|loss|delay|link|poweroff|clear ...}
fault=${2:?usage: faults.sh BASE partition|heal|loss|delay|link|poweroff|clear ...}
shift 2
on() { "$here/cluster.sh" exec "$base" "$@"; }
addr() { cat "$base/nodes/$1/addr"; }

table() {  # node: the fault table and its two chains, made once
  on "$1" -- nft -f - <<'EOF'
table inet rfaas_faults {
  chain input { type filter hook input priority -10; policy accept; }
  chain output { type filter hook output priority -10; policy accept; }
}
EOF
}

drop_rules() {  # node tag: deletes the node's rules carrying the comment tag
  local h
  for chain in input output; do
    for h in $(on "$1" -- nft -a list chain inet rfaas_faults "$chain" 2>/dev/null |
      sed -n "s/.*comment \"$2\" # handle \([0-9]*\).*/\1/p"); do
      on "$1" -- nft delete rule inet rfaas_faults "$chain" handle "$h"
    done
  done
}

undelay() {  # node: its delay rule and delayer gone (the delayer only if it is still the one started)
  local f="$base/nodes/$1/delay.pid" pid
  while on "$1" -- iptables -t mangle -D POSTROUTING -o eth0 -m comment --comment rfaas-delay \
    -j NFQUEUE --queue-num 0 --queue-bypass 2>/dev/null; do :; done
  if [[ -s "$f" ]]; then
    pid=$(cat "$f")
    if [[ "$pid" =~ ^[0-9]+$ && "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *rfaas-nfq-delay* ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  fi
}

cut_off() {  # node peer
  table "$1"
  drop_rules "$1" "partition-$2"
  on "$1" -- nft add rule inet rfaas_faults input ip saddr "$(addr "$2")" drop comment "\"partition-$2\""
  on "$1" -- nft add rule inet rfaas_faults output ip daddr "$(addr "$2")" drop comment "\"partition-$2\""
}

case "$fault" in
  partition)
    a=${1:?partition A B}; b=${2:?partition A B}
    cut_off "$a" "$b"
    cut_off "$b" "$a"
    ;;
  heal)
    a=${1:?heal A B}; b=${2:?heal A B}
    drop_rules "$a" "partition-$b"
    drop_rules "$b" "partition-$a"
    ;;
  loss)
    node=${1:?loss NODE PCT}; pct=${2:?loss NODE PCT}
    [[ "$pct" =~ ^[0-9]+$ && $pct -le 100 ]] || { echo "faults.sh: PCT is 0..100" >&2; exit 2; }
    table "$node"
    drop_rules "$node" loss
    if [[ $pct -gt 0 ]]; then
      on "$node" -- nft add rule inet rfaas_faults input numgen random mod 100 '<' "$pct" drop comment '"loss"'
      on "$node" -- nft add rule inet rfaas_faults output numgen random mod 100 '<' "$pct" drop comment '"loss"'
    fi
    ;;
  delay)
    node=${1:?delay NODE MS}; ms=${2:?delay NODE MS}
    [[ "$ms" =~ ^[0-9]+$ && $ms -le 10000 ]] || { echo "faults.sh: MS is 0..10000" >&2; exit 2; }
    undelay "$node"
    if [[ $ms -gt 0 ]]; then
      delayer=${RFAAS_NFQ_DELAY:-}
      [[ -x "$delayer" ]] || { echo "faults.sh: set RFAAS_NFQ_DELAY to the built rfaas-nfq-delay" >&2; exit 2; }
      on "$node" -- sh -c 'exec "$0" 0 "$1" >"$2" 2>&1 </dev/null & echo $! >"$3"' \
        "$delayer" "$ms" "$base/nodes/$node/delay.log" "$base/nodes/$node/delay.pid"
      for _ in $(seq 50); do grep -q "rfaas-nfq-delay: queue" "$base/nodes/$node/delay.log" 2>/dev/null && break; sleep 0.1; done
      grep -q "rfaas-nfq-delay: queue" "$base/nodes/$node/delay.log" ||
        { cat "$base/nodes/$node/delay.log" >&2; echo "faults.sh: $node's delayer did not start" >&2; exit 1; }
      on "$node" -- iptables -t mangle -A POSTROUTING -o eth0 -m comment --comment rfaas-delay \
        -j NFQUEUE --queue-num 0 --queue-bypass
    fi
    ;;
  link)
    node=${1:?link NODE down|up}; state=${2:?link NODE down|up}
    [[ "$state" == up || "$state" == down ]] || { echo "faults.sh: link NODE down|up" >&2; exit 2; }
    on "$node" -- ip link set eth0 "$state"
    ;;
  poweroff)
    node=${1:?poweroff NODE}
    on "$node" -- ip link set eth0 down
    anchor=$("$here/cluster.sh" exec "$base" "$node" -- sh -c 'echo $PPID' >/dev/null && cat "$base/nodes/$node/anchor.pid")
    ns=$(readlink "/proc/$anchor/ns/uts")
    [[ "$ns" != "$(readlink /proc/self/ns/uts)" ]] || { echo "faults.sh: $node's anchor is not $node's" >&2; exit 1; }
    # Everything in the node's UTS namespace but the anchor (which keeps the namespaces for `down`).
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [[ "$pid" != "$anchor" && "$(readlink "$p/ns/uts" 2>/dev/null)" == "$ns" ]] && { kill -KILL "$pid" 2>/dev/null || true; }
    done
    echo "poweroff" >"$base/nodes/$node/state"
    ;;
  clear)
    if [[ $# -gt 0 ]]; then nodes=("$1"); else mapfile -t nodes < <(ls "$base/nodes"); fi
    for n in "${nodes[@]}"; do
      on "$n" -- nft delete table inet rfaas_faults 2>/dev/null || true
      undelay "$n"
    done
    ;;
  *) echo "faults.sh: unknown fault $fault" >&2; exit 2 ;;
esac
