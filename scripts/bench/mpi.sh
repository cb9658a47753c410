#!/usr/bin/env bash
# rfaas from MPI codes, in one run against a local broker + executor daemon (local-cluster.sh):
#   1. rfaas-mpi-bench: rfaas_offload and rfaas_ioffload + MPI_Wait per call vs the raw fabric
#      round trip, echo of 8 B .. 64 KiB;
#   2. (OVERSUBSCRIBED=1) apps/jacobi and apps/gemm with 2 ranks and 2 leased cores sharing the
#      machine's 2 cores: what offloading costs where no core is idle.
# The apps as rfaas is meant to be used (a rank + a leased idle core): scripts/bench/apps.sh.
# Usage: scripts/bench/mpi.sh   (PROVIDER=shm|tcp; HOT_US = executors' hot timeout for step 2,
# default 0)
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
[ "${OVERSUBSCRIBED:-0}" = 1 ] || exit 0
for n in 256 1024; do
  "${cluster[@]}" "${mpirun[@]}" -np 2 "$b/apps/jacobi" --n "$n" --iterations 200 --tolerance 0 --hot-timeout-us "$hot"
done
"${cluster[@]}" "${mpirun[@]}" -np 2 "$b/apps/gemm" --n 1024 --repeats 5 --hot-timeout-us "$hot"
