#!/usr/bin/env bash
# Sets up, builds and runs every rfaas test: the CTest suite of a Release build, the Slurm test
# (scripts/slurm/test-slurm.sh: a real local Slurm running the broker, executor daemons and an
# MPI job, then scancel revoking a client's lease), the namespace cluster test
# (scripts/cluster/test-cluster.sh: the MPI job across nodes over tcp under Open MPI and MPICH,
# partitions, packet loss and delay, a client's node powered off), the fabric and executor suites over verbs
# (scripts/verbs-tests.sh: natively on an RDMA device, else in a Soft-RoCE guest), then the same
# suite in a second build under AddressSanitizer + UndefinedBehaviorSanitizer, a bounded
# libFuzzer run over the control-message parsers, then the install check (tiny consumer
# projects find rfaas with find_package, the MPI ones under Open MPI and under MPICH). Exits non-zero on any failure.
#   ./scripts/test.sh            everything
#   RFAAS_SKIP_SANITIZE=1 ...    skip the sanitizer build (local iteration only; CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

"$root/scripts/install-deps.sh"

section() { printf '\n=== %s ===\n' "$*"; }

section "build (Release)"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build" -j "$jobs"

section "tests (Release)"
ctest --test-dir "$root/build" --output-on-failure --timeout 600

section "MPICH: the MPI layer, its tests and the apps built and run against Debian's MPICH"
# The same sources, the MPI layer compiled against MPICH (rfaas_ioffload completes through
# MPIX_Grequest_start poll functions there); the MPI tests run under MPICH's mpiexec.
cmake -S "$root" -B "$root/build-mpich" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPI_C_COMPILER=/usr/bin/mpicc.mpich \
  -DMPI_CXX_COMPILER=/usr/bin/mpicxx.mpich -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich >/dev/null
cmake --build "$root/build-mpich" -j "$jobs" --target test_mpi_offload jacobi gemm \
  rfaas-executord rfaas-executor rfaas-broker rfaas-ctl rfaas_functions_basic rfaas_functions_jacobi rfaas_functions_blas
ctest --test-dir "$root/build-mpich" --output-on-failure --timeout 600 -R '^mpi\.'

section "security: an unprivileged user races 100 cluster starts for the MUNGE key, the secret, journal and logs"
if [ "$(id -u)" -eq 0 ]; then
  timeout --kill-after=10 900 "$root/tests/security/secrets-race.sh" "$root/build" 100
else
  echo "skipped: making the attacking user needs root"
fi

section "Slurm: broker and executor daemons as jobs, an MPI job, scancel revokes (local Slurm)"
if [ "$(id -u)" -eq 0 ]; then
  timeout --kill-after=10 600 "$root/scripts/slurm/test-slurm.sh" "$root/build"
else
  echo "skipped: a local slurmd needs root"
fi

section "cluster: 5 nodes as network namespaces under a multi-node Slurm, rfaas over tcp between them (Open MPI and MPICH jobs), network faults"
if [ "$(id -u)" -eq 0 ]; then
  timeout --kill-after=10 900 "$root/scripts/cluster/test-cluster.sh" "$root/build" "$root/build-mpich"
else
  echo "skipped: network namespaces and slurmd need root"
fi

section "verbs: fabric, fabric setup and executor suites over verbs (scripts/verbs-tests.sh)"
if grep -q '^RFAAS_WITH_VERBS:BOOL=ON' "$root/build/CMakeCache.txt"; then
  # Natively on an RDMA device, else in a Soft-RoCE guest under QEMU.
  timeout --kill-after=10 3300 "$root/scripts/verbs-tests.sh" "$root/build"
else
  echo "skipped: built without the verbs backend"
fi

if [ "${RFAAS_SKIP_SANITIZE:-0}" != 1 ]; then
  section "build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake -S "$root" -B "$root/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRFAAS_SANITIZE=ON
  cmake --build "$root/build-asan" -j "$jobs"
  section "tests (sanitizers)"
  # LeakSanitizer is off: libfabric keeps provider state until exit by design.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure --timeout 900
fi

section "fuzz: control-message parsers (libFuzzer, bounded)"
cmake -S "$root/tests/fuzz" -B "$root/build-fuzz" -G Ninja -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$root/build-fuzz" -j "$jobs"
fuzz_corpus=$(mktemp -d)
# New inputs go to a scratch folder; the seeds in the tree are read only.
"$root/build-fuzz/fuzz_control" -max_total_time="${RFAAS_FUZZ_SECONDS:-30}" -print_final_stats=1 \
  "$fuzz_corpus" "$root/tests/fuzz/corpus" 2>&1 | tail -n 12
rm -rf "$fuzz_corpus"

section "install + find_package(rfaas) consumer"
"$root/scripts/check-install.sh" "$root/build" "$root/build-mpich"

section "all tests passed"
