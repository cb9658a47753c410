#!/usr/bin/env bash
# rfaas from MPI codes, in one run against a local broker + executor daemon (local-cluster.sh):
#   1. rfaas-mpi-bench: rfaas_offload and rfaas_ioffload + MPI_Wait per call vs the raw fabric
#      round trip, echo of 8 B .. 64 KiB;
#   2. apps/jacobi, offloaded vs all-local, at two grid sizes (2 ranks);
#   3. apps/gemm, GFLOP/s offloaded vs local (2 ranks).
# Usage: scripts/bench/mpi.sh   (PROVIDER=shm|tcp; HOT_US = executors' hot timeout, default 0:
# on a 2-core machine the ranks and the executors share the cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
b="$root/build"
[ -x "$b/scripts/bench/rfaas-mpi-bench" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
export RFAAS_OFI_PROVIDER=${PROVIDER:-shm}
hot=${HOT_US:-0}
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)
export OPENBLAS_NUM_THREADS=1
cluster=("$root/scripts/local-cluster.sh" --timeout 900 --)
"$root/scripts/local-cluster.sh" --cores 1 --timeout 900 -- "${mpirun[@]}" -np 1 "$b/scripts/bench/rfaas-mpi-bench" --repeats 5
for n in 256 1024; do
  "${cluster[@]}" "${mpirun[@]}" -np 2 "$b/apps/jacobi" --n "$n" --iterations 200 --tolerance 0 --hot-timeout-us "$hot"
done
"${cluster[@]}" "${mpirun[@]}" -np 2 "$b/apps/gemm" --n 1024 --tile 128 --repeats 5 --hot-timeout-us "$hot"
