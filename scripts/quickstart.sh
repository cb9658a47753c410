#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, and run what rfaas can do so
# far on the portable transport (libfabric on loopback, no RDMA hardware needed).
# Today: the transport ping-pong (rfaas-fabric-bench over shm and tcp;ofi_rxm) and the
# invocation benchmark (rfaas-bench invoke: a local rfaas-executord, a direct-mode lease,
# invocations beside the raw transport). As the lease broker and the MPI apps land, this
# script grows into broker + executor + mpirun jacobi.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)"

bench="$root/build/scripts/bench/rfaas-fabric-bench"
for provider in shm tcp; do
  "$bench" --provider "$provider" --repeats 3
done
# A local executor daemon, a lease in direct mode, and invocations through it.
"$root/build/scripts/bench/rfaas-bench" invoke --provider shm --repeats 3
echo
echo "quickstart: done. Full benchmark: scripts/bench/fabric.sh; tests: scripts/test.sh"
