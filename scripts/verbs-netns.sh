#!/bin/sh
# Runs inside the Soft-RoCE guest (scripts/verbs-tests.sh boots it with a kernel whose rxe knows
# network namespaces): namespaces A (10.0.3.1) and B (10.0.3.2) joined by a veth pair, rxeA on
# vethA, rxeB on vethB. Each suite runs in A with its peers, daemons and broker in B, so every
# verbs packet goes between the two rxe devices. A suite passes when it passed and, while it
# ran, rxeA and rxeB both sent and received packets and rxe0 (the guest's own, on eth0) none.
#   sh scripts/verbs-netns.sh ROOT BUILD SUITE_BINARY... [--apps NAME|COMMAND...]
# Prints "VERBS-SUITE netns.NAME PASS|FAIL" per suite; exits with the number that failed.
root=$1 build=$2
shift 2
ipx=/usr/bin/ip  # iproute2's: busybox's ip applet knows no netns
A=10.0.3.1 B=10.0.3.2
in_a="$ipx netns exec A /bin/env RFAAS_FABRIC_HOST=$A"
in_b="$ipx netns exec B /bin/env RFAAS_FABRIC_HOST=$B"

setup() {
  $ipx netns add A && $ipx netns add B &&
    $ipx link add vethA netns A type veth peer name vethB netns B &&
    $ipx -n A link set lo up && $ipx -n B link set lo up &&
    $ipx -n A addr add $A/24 dev vethA && $ipx -n B addr add $B/24 dev vethB &&
    $ipx -n A link set vethA up && $ipx -n B link set vethB up &&
    $ipx netns exec A rdma link add rxeA type rxe netdev vethA &&
    $ipx netns exec B rdma link add rxeB type rxe netdev vethB || return 1
  i=0
  while [ $i -lt 200 ]; do
    grep -q ACTIVE /sys/class/infiniband/rxeA/ports/1/state && grep -q ACTIVE /sys/class/infiniband/rxeB/ports/1/state &&
      return 0
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

# "sentA rcvdA sentB rcvdB sent0 rcvd0": the devices' packet counters.
counters() {
  for d in rxeA rxeB rxe0; do
    for c in sent_pkts rcvd_pkts; do printf '%s ' "$(cat /sys/class/infiniband/$d/ports/1/hw_counters/$c)"; done
  done
}

failed=0
# name, command...: the command's status, and the traffic it made on each device.
suite() {
  name=$1; shift
  echo "=== verbs between namespaces: $name"
  before=$(counters)
  "$@"; rc=$?
  after=$(counters)
  set -- $before $after
  dA_s=$(($7 - $1)) dA_r=$(($8 - $2)) dB_s=$(($9 - $3)) dB_r=$((${10} - $4)) d0=$((${11} + ${12} - $5 - $6))
  echo "  packets: rxeA sent $dA_s received $dA_r, rxeB sent $dB_s received $dB_r, rxe0 $d0"
  if [ $rc -ne 0 ]; then
    echo "VERBS-SUITE netns.$name FAIL"; failed=$((failed + 1))
  elif [ $dA_s -le 0 ] || [ $dA_r -le 0 ] || [ $dB_s -le 0 ] || [ $dB_r -le 0 ] || [ $d0 -ne 0 ]; then
    echo "  the traffic did not go between rxeA and rxeB"
    echo "VERBS-SUITE netns.$name FAIL"; failed=$((failed + 1))
  else
    echo "VERBS-SUITE netns.$name PASS"
  fi
}

if ! setup; then
  echo "VERBS-SUITE netns.setup FAIL"
  rdma link; $ipx netns list
  exit 1
fi
rdma link
# The first rdma_cm connection over a fresh veth lost its connect request (the accept timed out
# after 10 s, once per boot, under TCG): resolve the neighbours both ways first.
$ipx netns exec A ping -c 1 -W 5 $B >/dev/null && $ipx netns exec B ping -c 1 -W 5 $A >/dev/null ||
  echo "verbs-netns.sh: ping between the namespaces failed"
# Peers (fabric_peer, rfaas-executord, the C API client) go to B; the daemons' control ports too.
peer_prefix="$in_b"
while [ $# -gt 0 ] && [ "$1" != --apps ]; do
  suite "$(basename "$1")" $in_a RFAAS_TEST_PEER_PREFIX="$peer_prefix" RFAAS_TEST_DAEMON_HOST=$B "$1"
  shift
done
[ "$1" = --apps ] && shift
for app in "$@"; do
  # The rank (mpirun) in A; the broker and rfaas-executord in B, reached at B's address.
  suite "app.${app%%|*}" $in_a bash "$root/scripts/local-cluster.sh" --build "$build" --cores 1 --timeout 600 \
    --host $B --daemon-prefix "$in_b" -- ${app#*|}
done
echo "  vethA over the whole run: sent $($ipx netns exec A cat /sys/class/net/vethA/statistics/tx_packets)," \
  "received $($ipx netns exec A cat /sys/class/net/vethA/statistics/rx_packets) packets"
exit $failed
