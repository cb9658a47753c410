#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, and run what rfaas can do so
# far on the portable transport (libfabric on loopback, no RDMA hardware needed).
# Today that is the transport ping-pong demo: rfaas-fabric-bench over shm and tcp;ofi_rxm,
# with the direct-libfabric reference measured in the same run. As the executor daemon, the
# lease broker and the MPI apps land, this script grows into broker + executor + mpirun jacobi.
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
echo
echo "quickstart: done. Full benchmark: scripts/bench/fabric.sh; tests: scripts/test.sh"
