#!/usr/bin/env bash
# The apps the way rfaas is meant to be used, beside what the job would otherwise get, in one
# run per provider: one MPI rank pinned to core 0 alone (all-local), the same rank with core 1
# leased through the broker (rfaas, resident data), and `mpirun -np 2` of the same app without
# rfaas (the job with that core from the start). Medians of REPEATS (default 5) of each, all
# three measured in the same run; OpenBLAS one thread per core throughout.
#   scripts/bench/apps.sh                 PROVIDERS="shm tcp", sizes below
#   REPEATS=5 GEMM_SIZES="512 1024 2048" JACOBI_SIZES="512 1024 2048" JACOBI_ITERATIONS=500
# Prints and appends to $OUT (default build/bench/apps.jsonl) one line per app, size, provider:
#   {"bench":"apps","app":"gemm","size":2048,"provider":"shm","local_s":..,"rfaas_s":..,"mpi2_s":..,
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
for provider in ${PROVIDERS:-shm tcp}; do
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
  python3 "$root/scripts/apps-report.py" --bench "$raw" "$provider" | tee -a "$out"
  rm -f "$raw"
done
echo "JSON lines appended to $out"
"$root/scripts/bench/plot.sh" || echo "apps.sh: plots not drawn (see plot.sh)"
