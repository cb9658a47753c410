#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, start a lease broker and an
# executor daemon on loopback (libfabric, no RDMA hardware needed), and run each app the way
# rfaas is meant to be used: one MPI rank (pinned to core 0) that leases an idle core (core 1,
# served by the executor daemon) through the broker and keeps part of its data resident there.
# Beside it, from the same run: the rank alone, and `mpirun -np 2` of the same app without
# rfaas (what the job would have had with the core from the start). Each app checks its result
# against the all-local run. Everything started here is stopped at the end.
#   RFAAS_OFI_PROVIDER=tcp ./scripts/quickstart.sh      over tcp;ofi_rxm instead of shm
#   QUICKSTART_OVERSUBSCRIBED=1 ./scripts/quickstart.sh also 2 ranks + 2 leased cores on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)"

export RFAAS_OFI_PROVIDER=${RFAAS_OFI_PROVIDER:-shm}
export OPENBLAS_NUM_THREADS=1  # one thread per core in every run
cores=$(nproc)
if [ "$cores" -lt 2 ]; then
  echo "quickstart: needs 2 cores (one for the rank, one to lease); this machine has $cores" >&2
  exit 1
fi
apps="$root/build/apps"
figures=$(mktemp /tmp/rfaas-quickstart.XXXXXX.jsonl)
trap 'rm -f "$figures"' EXIT
mpirun=(mpirun --allow-run-as-root -x OPENBLAS_NUM_THREADS)
alone=("${mpirun[@]}" --bind-to core --cpu-set 0 -np 1)  # the rank; core 1 is the daemon's
two=("${mpirun[@]}" --bind-to core -np 2)                # the same job with both cores as ranks
jacobi=(--n 2048 --iterations 500 --repeats 3 --json-out "$figures")
gemm=(--n 2048 --repeats 5 --json-out "$figures")

# The executor daemon lends core 1; its executors busy-poll there (the core is theirs).
"$root/scripts/local-cluster.sh" --cores 1 --timeout 900 -- bash -c "
  set -e
  echo \"quickstart: broker at \$RFAAS_BROKER, one executor daemon lending core 1, transport ofi/\$RFAAS_OFI_PROVIDER\"
  echo
  ${alone[*]} '$apps/jacobi' ${jacobi[*]} --share 0.5
  ${two[*]} '$apps/jacobi' ${jacobi[*]} --mode local
  echo
  ${alone[*]} '$apps/gemm' ${gemm[*]} --share auto
  ${two[*]} '$apps/gemm' ${gemm[*]} --mode local
"
echo
echo "=== side by side ==="
python3 "$root/scripts/apps-report.py" "$figures"

if [ "${QUICKSTART_OVERSUBSCRIBED:-0}" = 1 ]; then
  # Two ranks and their two leased cores share the machine's two cores: the cost of offloading
  # where no core is idle (executors block when idle: --hot-timeout-us 0).
  over=("${mpirun[@]}" --oversubscribe --bind-to none -np 2)
  "$root/scripts/local-cluster.sh" --timeout 600 -- bash -c "
    set -e
    echo 'quickstart: oversubscribed: 2 ranks + 2 leased cores on 2 cores'
    ${over[*]} '$apps/jacobi' --n 256 --iterations 200 --share 0.5 --hot-timeout-us 0
    ${over[*]} '$apps/gemm' --n 512 --share 0.5 --hot-timeout-us 0
  "
fi
echo "quickstart: done. Benchmarks: scripts/bench/{apps,fabric,invoke,mpi}.sh; tests: scripts/test.sh"
