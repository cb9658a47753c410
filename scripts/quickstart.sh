#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, start a lease broker and an
# executor daemon on loopback (libfabric, no RDMA hardware needed), and run the Jacobi solver
# with 2 MPI ranks that lease cores through the broker and offload half of their rows to them,
# then the distributed GEMM the same way. Each app checks its result against an all-local run.
# Everything started here is stopped at the end (scripts/local-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)"

# Two ranks and their two leased cores share this machine's cores: the executors block as
# soon as a call is done (--hot-timeout-us 0) rather than busy-poll against the ranks.
export RFAAS_OFI_PROVIDER=${RFAAS_OFI_PROVIDER:-shm}
export OPENBLAS_NUM_THREADS=1
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS -np 2)
"$root/scripts/local-cluster.sh" --timeout 600 -- bash -c "
  set -e
  echo \"quickstart: broker at \$RFAAS_BROKER, one executor daemon, transport ofi/\$RFAAS_OFI_PROVIDER\"
  ${mpirun[*]} '$root/build/apps/jacobi' --n 256 --iterations 200 --share 0.5 --hot-timeout-us 0
  echo
  ${mpirun[*]} '$root/build/apps/gemm' --n 512 --tile 64 --share 0.5 --hot-timeout-us 0
"
echo
echo "quickstart: done. Benchmarks: scripts/bench/{fabric,invoke,mpi}.sh; tests: scripts/test.sh"
