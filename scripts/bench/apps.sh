#!/usr/bin/env bash
# The apps the way rfaas is meant to be used, beside what the job would otherwise get, in one
# run per provider: one MPI rank pinned to core 0 alone (all-local), the same rank with core 1
# leased through the broker (rfaas, resident data), and `mpirun -np 2` of the same app without
# rfaas (the job with that core from the start). Medians of REPEATS (default 5) of each, all
# three measured in the same run; OpenBLAS one thread per core throughout.
#   scripts/bench/apps.sh                 PROVIDERS="shm tcp", sizes below
#   REPEATS=5 GEMM_SIZES="512 1024 2048" JACOBI_SIZES="512 1024 2048" JACOBI_ITERATIONS=500
#   PLACEMENTS="one_node across_nodes"   across_nodes: rank on node A, core leased on node B of a
#                                        namespace cluster (root), beside srun -N 2 across A and B
# Prints and appends to $OUT (default build/bench/apps.jsonl) one line per app, size, provider:
#   {"bench":"apps","app":"gemm","size":2048,"provider":"shm","placement":"one_node","local_s":..,"rfaas_s":..,"mpi2_s":..,
#    "speedup":..,"of_ideal":..,"call_us":..,"compute_us":..,"transfer_us":..,...}
# speedup = local_s / rfaas_s, of_ideal = mpi2_s / rfaas_s. Then draws the plots (plot.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
b="$root/build"
[ -x "$b/apps/jacobi" ] && [ -x "$b/apps/gemm" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "apps.sh: needs 2 cores" >&2; exit 1; }
out=${OUT:-$b/bench/apps.jsonl}
mkdir -p "$(dirname "$out")"
repeats=${REPEATS:-5}
export OPENBLAS_NUM_THREADS=1
mpirun=(mpirun --allow-run-as-root -x OPENBLAS_NUM_THREADS)
alone="${mpirun[*]} --bind-to core --cpu-set 0 -np 1"
two="${mpirun[*]} --bind-to core -np 2"
iters=${JACOBI_ITERATIONS:-500}
placements=${PLACEMENTS:-one_node across_nodes}
for provider in ${PROVIDERS:-shm tcp}; do
  [[ " $placements " == *" one_node "* ]] || break
  raw=$(mktemp /tmp/rfaas-apps.XXXXXX.jsonl)
  RFAAS_OFI_PROVIDER=$provider "$root/scripts/local-cluster.sh" --cores 1 --timeout 1800 -- bash -c "
    set -e
    for n in ${JACOBI_SIZES:-512 1024 2048}; do
      $alone '$b/apps/jacobi' --n \$n --iterations $iters --tolerance 0 --repeats $repeats --json-out '$raw' >/dev/null
      $two '$b/apps/jacobi' --n \$n --iterations $iters --tolerance 0 --repeats $repeats --mode local --json-out '$raw' >/dev/null
    done
    for n in ${GEMM_SIZES:-512 1024 2048}; do
      $alone '$b/apps/gemm' --n \$n --share auto --repeats $repeats --json-out '$raw' >/dev/null
      $two '$b/apps/gemm' --n \$n --repeats $repeats --mode local --json-out '$raw' >/dev/null
    done
  "
  python3 "$root/scripts/apps-report.py" --bench "$raw" "$provider" one_node | tee -a "$out"
  rm -f "$raw"
done

# Across nodes (root: a namespace cluster, scripts/cluster/): node A (node2) has core 0, node B
# (node3) core 1, the head (node1, the broker job) shares core 0 and is idle but for heartbeats.
# `srun -N 2` of the app without rfaas across A and B first (one rank each), then the executor
# daemon's job takes B's core and the rank on A leases it through the broker, over tcp;ofi_rxm
# (picked per peer); the all-local figure is the rfaas run's own. Same sizes and repeats.
if [[ " $placements " == *" across_nodes "* ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "apps.sh: across_nodes skipped: the namespace cluster needs root"
  else
    cbase=$(mktemp -d /tmp/rfaas-apps-cluster.XXXXXX)
    raw=$(mktemp /tmp/rfaas-apps.XXXXXX.jsonl)
    chmod 644 "$raw"
    trap '"$root/scripts/cluster/cluster.sh" down "$cbase"; rm -rf "$cbase" "$raw"' EXIT
    "$root/scripts/cluster/cluster.sh" up "$cbase" --nodes 3 --cpus 0:0:1 >/dev/null
    set -a; source "$cbase/env"; set +a
    on() { "$root/scripts/cluster/cluster.sh" exec "$cbase" "$@"; }
    state="$cbase/rfaas"
    mkdir -p "$state"
    (umask 077 && head -c 32 /dev/urandom >"$state/secret")  # private from its first byte
    chmod 600 "$state/secret"
    export RFAAS_STATE_DIR="$state" RFAAS_SECRET_FILE="$state/secret" RFAAS_FUNCTIONS="$b/functions"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    unset RFAAS_OFI_PROVIDER  # auto: tcp between the nodes
    RFAAS_BIN="$b/lease-broker" on node1 -- sbatch --parsable -w node1 -o "$state/broker.out" \
      "$root/scripts/slurm/rfaas-broker.sbatch" >/dev/null
    for _ in $(seq 300); do [[ -s "$state/broker.addr" ]] && break; sleep 0.1; done
    [[ -s "$state/broker.addr" ]] || { echo "apps.sh: the broker job did not start" >&2; exit 1; }
    RFAAS_BROKER=$(cat "$state/broker.addr")
    export RFAAS_BROKER
    two_nodes="srun --mpi=pmix -N 2 -n 2 -w node2,node3"
    for n in ${JACOBI_SIZES:-512 1024 2048}; do
      on node1 -- $two_nodes "$b/apps/jacobi" --n "$n" --iterations "$iters" --tolerance 0 --repeats "$repeats" \
        --mode local --json-out "$raw" >/dev/null
    done
    for n in ${GEMM_SIZES:-512 1024 2048}; do
      on node1 -- $two_nodes "$b/apps/gemm" --n "$n" --repeats "$repeats" --mode local --json-out "$raw" >/dev/null
    done
    RFAAS_BIN="$b/runtime" on node1 -- sbatch --parsable -w node3 -N 1 -c 1 -o "$state/executord.out" \
      "$root/scripts/slurm/rfaas-executord.sbatch" >/dev/null
    for _ in $(seq 300); do grep -q "registered with the broker" "$state/executord.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "registered with the broker" "$state/executord.out" ||
      { echo "apps.sh: the executor daemon did not register" >&2; exit 1; }
    one_rank="srun --mpi=pmix -N 1 -n 1 -w node2"
    for n in ${JACOBI_SIZES:-512 1024 2048}; do
      on node1 -- $one_rank "$b/apps/jacobi" --n "$n" --iterations "$iters" --tolerance 0 --repeats "$repeats" \
        --json-out "$raw" >/dev/null
    done
    for n in ${GEMM_SIZES:-512 1024 2048}; do
      on node1 -- $one_rank "$b/apps/gemm" --n "$n" --share auto --repeats "$repeats" --json-out "$raw" >/dev/null
    done
    grep -q "over tcp" "$state/executord.out" || echo "apps.sh: warning: the leases did not go over tcp" >&2
    python3 "$root/scripts/apps-report.py" --bench "$raw" tcp across_nodes | tee -a "$out"
  fi
fi
echo "JSON lines appended to $out"
"$root/scripts/bench/plot.sh" || echo "apps.sh: plots not drawn (see plot.sh)"
