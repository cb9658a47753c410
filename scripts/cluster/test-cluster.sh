#!/usr/bin/env bash
# rfaas across nodes, on a namespace cluster (cluster.sh) under a real multi-node Slurm, over
# libfabric tcp;ofi_rxm between the nodes. Five nodes: node1 the head (slurmctld, the broker as a
# job, the login node), node2 and node3 for the MPI job's ranks, node4 and node5 lending their cores
# (rfaas-executord as a job step on each). Then, each timed against its bound:
#   1. jacobi with one rank on node2 and one on node3, leasing cores on the executor nodes, verifies;
#   2. 1 % packet loss and 5 ms delay on every node: the same job still verifies (its per-call time
#      reported, and at least the 10 ms round trip the delay makes);
#   3. a partition between a client and its executor's node: the client's offloads end with
#      executor_lost within the keepalive bound; after rfaas_mpi_recover it goes on on the other
#      executor node and verifies;
#   4. a partition between the broker and a daemon, longer than the lost-node limit: the node is
#      lost at the broker, its lease stays held there and served (every offload answered), nothing
#      else is granted on it, and after the heal the node is active again and has free cores;
#   5. a client's node powered off (link down, then every process on it killed): its lease ends at
#      the broker within a bound, long before its expiry.
# Stops everything it started.
# With MPICH_BUILD_DIR (a build against Debian's MPICH), step 1 also runs that build's jacobi,
# launched by srun through Slurm's PMI-2 plugin.
#   scripts/cluster/test-cluster.sh [BUILD_DIR [MPICH_BUILD_DIR]]   (root; run by scripts/test.sh)
set -euo pipefail
umask 077
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
mpich=${2:+$(cd "$2" && pwd)}  # a build against MPICH: its jacobi runs across the nodes too
base=$(mktemp -d /tmp/rfaas-cluster.XXXXXX)
state="$base/rfaas"
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "test-cluster: FAILED; logs:" >&2
    tail -n 25 "$state"/*.out "$base/log/slurmctld.log" 2>/dev/null >&2 || true
  fi
  "$here/cluster.sh" down "$base" || true
  rm -rf "$base"
  exit $rc
}
trap cleanup EXIT

# Cores: the head and node2 on core 0, node3 on core 1, the executor nodes on both (this
# machine has two; the test is about correctness and bounds across nodes, not speed).
"$here/cluster.sh" up "$base" --nodes 5 --cpus 0:0:1:0,1:0,1 >/dev/null
set -a
source "$base/env"
set +a
on() { "$here/cluster.sh" exec "$base" "$@"; }
fault() { "$here/faults.sh" "$base" "$@"; }
mkdir -p "$state"
chmod 755 "$base"
head -c 32 /dev/urandom >"$state/secret"
chmod 600 "$state/secret"
export RFAAS_STATE_DIR="$state" RFAAS_SECRET_FILE="$state/secret"
# The transport is left to rfaas (RFAAS_OFI_PROVIDER=auto): tcp;ofi_rxm between the nodes.
export RFAAS_FABRIC=ofi OPENBLAS_NUM_THREADS=1
unset RFAAS_OFI_PROVIDER
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export RFAAS_FUNCTIONS="$build/functions"
basic="$build/functions/librfaas_functions_basic.so"  # the probe's library

now_ms() { date +%s%3N; }
poll() {  # seconds, command...: until the command succeeds
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}
status_json() { on node1 -- "$build/lease-broker/rfaas-ctl" --broker "$RFAAS_BROKER" status --json; }
broker() {  # python expression over the broker's status `s` (nodes by name: `n`)
  status_json | python3 -c "import json,sys; s=json.load(sys.stdin); n={x['node']: x for x in s['nodes']}; print($1)"
}
node_state() { broker "n.get('$1', {}).get('state', '')"; }
leases_on() { broker "sum(1 for l in s['leases'] if l['node'] == '$1')"; }
lease_count() { broker "len(s['leases'])"; }
only_lease_node() { broker "s['leases'][0]['node'] if len(s['leases']) == 1 else ''"; }
free_on() { broker "n['$1']['free_cores']"; }
is_state() { [[ $(node_state "$1") == "$2" ]]; }
no_leases() { [[ $(lease_count) -eq 0 ]]; }
active_nodes() { [[ $(broker "sum(1 for x in s['nodes'] if x['state'] == 'active')") -eq $1 ]]; }
has_free() { [[ $(free_on "$1") -eq $2 ]]; }
probe_t() { sed -n "s/.*$2.*(t=\([0-9]*\)).*/\1/p" "$1" | head -n1; }

broker_job=$(RFAAS_BIN="$build/lease-broker" on node1 -- sbatch --parsable -w node1 -o "$state/broker.out" \
  "$root/scripts/slurm/rfaas-broker.sbatch")
poll 30 test -s "$state/broker.addr"
export RFAAS_BROKER=$(cat "$state/broker.addr")
executord_job=$(RFAAS_BIN="$build/runtime" on node1 -- sbatch --parsable -N 2 -w node4,node5 -c 2 \
  -o "$state/executord.out" "$root/scripts/slurm/rfaas-executord.sbatch")
poll 30 active_nodes 2
echo "test-cluster: $(on node1 -- sinfo -h -N -o '%N %t' | tr '\n' ' ')"
echo "test-cluster: broker job $broker_job at $RFAAS_BROKER; executor daemons (job $executord_job) on node4 and node5, active"

jacobi() {  # output file: jacobi with a rank on node2 and one on node3, each leasing a core
  on node1 -- timeout 300 srun --mpi=pmix -N 2 -n 2 -w node2,node3 "$build/apps/jacobi" --n 512 --iterations 100 \
    --repeats 1 >"$1" 2>&1
}

# 1. The main job across nodes.
jacobi "$state/jacobi.out" || { cat "$state/jacobi.out"; exit 1; }
grep -E "rfaas  |offload call|verification" "$state/jacobi.out"
grep -q "verification: PASS" "$state/jacobi.out"
# Picked per peer: clients on other nodes than their executors get tcp, never shm.
grep -q "over tcp" "$state/executord.out" && ! grep -q "over shm" "$state/executord.out" ||
  { echo "test-cluster: the leases did not go over tcp" >&2; exit 1; }
echo "test-cluster: jacobi on node2 + node3, cores leased on the executor nodes, tcp chosen per peer: PASS"
if [[ -n "$mpich" ]]; then
  on node1 -- timeout 300 srun --mpi=pmi2 -N 2 -n 2 -w node2,node3 "$mpich/apps/jacobi" --n 512 --iterations 100 \
    --repeats 1 >"$state/jacobi-mpich.out" 2>&1 || { cat "$state/jacobi-mpich.out"; exit 1; }
  grep -E "rfaas  |offload call|verification" "$state/jacobi-mpich.out"
  grep -q "verification: PASS" "$state/jacobi-mpich.out"
  ldd "$mpich/apps/jacobi" | grep -q libmpich || { echo "test-cluster: $mpich/apps/jacobi is not an MPICH program" >&2; exit 1; }
  echo "test-cluster: the same job built against MPICH, launched by srun --mpi=pmi2: PASS"
fi

# 2. 1 % loss and a 5 ms delay on every node's packets (every link: 5 ms each way, 10 ms a round
#    trip between nodes): the job still verifies; its per-call time is reported and must show the
#    delay (an offload's round trip crosses a link twice).
export RFAAS_NFQ_DELAY="$build/tests/cluster/rfaas-nfq-delay"
[[ -x "$RFAAS_NFQ_DELAY" ]] ||
  { echo "test-cluster: $RFAAS_NFQ_DELAY was not built (libnetfilter-queue-dev missing? scripts/install-deps.sh)" >&2; exit 1; }
call_us() { sed -n 's/.*offload call: \([0-9.]*\) us round trip.*/\1/p' "$1" | head -n1; }
for n in node1 node2 node3 node4 node5; do fault loss "$n" 1; fault delay "$n" 5; done
jacobi "$state/jacobi-faults.out" || { cat "$state/jacobi-faults.out"; exit 1; }
grep -E "rfaas  |offload call|verification" "$state/jacobi-faults.out"
grep -q "verification: PASS" "$state/jacobi-faults.out"
fault clear
clean_us=$(call_us "$state/jacobi.out"); faulty_us=$(call_us "$state/jacobi-faults.out")
[[ -n "$clean_us" && -n "$faulty_us" ]] || { echo "test-cluster: jacobi printed no per-call time" >&2; exit 1; }
echo "test-cluster: offload call round trip (median) $clean_us us clean, $faulty_us us with 1 % loss and 5 ms delay"
python3 -c "import sys; sys.exit(0 if float('$faulty_us') >= 10000 else 1)" ||
  { echo "test-cluster: the per-call time ($faulty_us us) does not show a 10 ms round trip: no delay applied" >&2; exit 1; }
echo "test-cluster: the same job with 1 % packet loss and 5 ms delay on every node: PASS"

# 3. Client <-> executor partition: executor_lost within the bound, then recovery elsewhere.
RFAAS_LIBRARY="$basic" on node1 -- timeout 180 srun --mpi=pmix -N 1 -n 1 -w node2 "$build/tests/cluster/cluster_probe" 120 recover \
  >"$state/probe-partition.out" 2>&1 &
probe=$!
poll 60 grep -q "probe: invoking" "$state/probe-partition.out"
lost=$(only_lease_node)
[[ -n "$lost" ]] || { echo "test-cluster: the probe's lease is not at the broker" >&2; exit 1; }
t0=$(now_ms)
fault partition node2 "$lost"
rc=0
wait $probe || rc=$?
cat "$state/probe-partition.out"
[[ $rc -eq 0 ]] || { echo "test-cluster: the probe did not recover (rc $rc)" >&2; exit 1; }
grep -q "probe: executor lost after" "$state/probe-partition.out" || { echo "test-cluster: not executor_lost" >&2; exit 1; }
t_err=$(probe_t "$state/probe-partition.out" "executor lost")
took=$((t_err - t0))
echo "test-cluster: partition node2 <-> $lost: executor_lost $took ms after it began (bound 8000: keepalive 5 s + the wait's slices)"
[[ $took -le 8000 ]] || { echo "test-cluster: executor_lost came too late" >&2; exit 1; }
grep -q "verified 50 offloads after recovering" "$state/probe-partition.out"
fault heal node2 "$lost"
poll 20 no_leases ||
  { echo "test-cluster: leases left after the probe" >&2; status_json >&2; exit 1; }
echo "test-cluster: after rfaas_mpi_recover the probe went on on another node than $lost and verified: PASS"

# 4. Broker <-> daemon partition longer than the lost-node limit (the broker's default 5 s).
RFAAS_LIBRARY="$basic" on node1 -- timeout 180 srun --mpi=pmix -N 1 -n 1 -w node3 "$build/tests/cluster/cluster_probe" 25 \
  >"$state/probe-broker.out" 2>&1 &
probe=$!
poll 60 grep -q "probe: invoking" "$state/probe-broker.out"
cut=$(only_lease_node)
[[ -n "$cut" ]] || { echo "test-cluster: the probe's lease is not at the broker" >&2; exit 1; }
cores=$(broker "n['$cut']['cores']")
fault partition node1 "$cut"
t0=$(now_ms)
poll 15 is_state "$cut" lost ||
  { echo "test-cluster: $cut never became lost" >&2; exit 1; }
echo "test-cluster: partition node1 <-> $cut: lost at the broker after $(( $(now_ms) - t0 )) ms"
[[ $(leases_on "$cut") -eq 1 ]] || { echo "test-cluster: the lost node's lease is not held at the broker" >&2; exit 1; }
sleep 3  # well past the limit
fault heal node1 "$cut"
poll 15 is_state "$cut" active ||
  { echo "test-cluster: $cut did not come back" >&2; exit 1; }
[[ $(leases_on "$cut") -eq 1 ]] || { echo "test-cluster: the lease was dropped at the heal" >&2; exit 1; }
rc=0
wait $probe || rc=$?
cat "$state/probe-broker.out"
[[ $rc -eq 0 ]] || { echo "test-cluster: the probe's offloads failed across the broker's partition (rc $rc)" >&2; exit 1; }
poll 20 has_free "$cut" "$cores" ||
  { echo "test-cluster: $cut has not got its cores back" >&2; exit 1; }
echo "test-cluster: partition broker <-> daemon: the lease held and served at both ends throughout, $cut active with $cores free cores after the heal: PASS"

# 5. A client's node powered off: its lease ends within a bound, not at its expiry (10 min).
RFAAS_LIBRARY="$basic" on node1 -- timeout 180 srun --mpi=pmix -N 1 -n 1 -w node3 "$build/tests/cluster/cluster_probe" 300 \
  >"$state/probe-poweroff.out" 2>&1 &
probe=$!
poll 60 grep -q "probe: invoking" "$state/probe-poweroff.out"
[[ $(lease_count) -eq 1 ]]
fault poweroff node3
t0=$(now_ms)
poll 20 no_leases ||
  { echo "test-cluster: the powered-off client's lease is still held" >&2; status_json >&2; exit 1; }
echo "test-cluster: node3 powered off: its client's lease ended at the broker after $(( $(now_ms) - t0 )) ms (bound 20000; expiry was 10 min away): PASS"
kill $probe 2>/dev/null || true  # its srun waits for Slurm to declare node3 down
wait $probe 2>/dev/null || true
echo "test-cluster: all passed"
