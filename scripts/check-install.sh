#!/usr/bin/env bash
# Installs a built rfaas into a scratch prefix and builds the consumers in
# tests/install-consumer (C, C++, C + MPI, C++ + MPI, Fortran: each a fresh project with only
# its own languages, finding rfaas with find_package), then runs them against a local cluster
# started by the installed local-cluster.sh (share/rfaas/scripts), on the installed programs.
# Usage: scripts/check-install.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: check-install.sh BUILD_DIR}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

consumers=(c cxx fortran)
if compgen -G "$prefix/lib*/cmake/rfaas/rfaasMpiTargets.cmake" >/dev/null; then consumers+=(c-mpi cxx-mpi); fi
for c in "${consumers[@]}"; do
  if ! cmake -S "$root/tests/install-consumer/$c" -B "$scratch/$c" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
         >"$scratch/$c.log" 2>&1 || ! cmake --build "$scratch/$c" >>"$scratch/$c.log" 2>&1; then
    echo "check-install: the $c consumer does not build:" >&2
    cat "$scratch/$c.log" >&2
    exit 1
  fi
done

# Every program the consumers run comes from the prefix, not the build tree.
cat >"$scratch/run.sh" <<RUN
set -e
"$scratch/c/consumer_c"
"$scratch/cxx/consumer_cxx"
"$scratch/cxx/consumer_fabric"
"$scratch/fortran/consumer_fortran"
if [[ -x "$scratch/c-mpi/consumer_c_mpi" ]]; then
  mpirun --allow-run-as-root -np 1 "$scratch/c-mpi/consumer_c_mpi"
  mpirun --allow-run-as-root -np 1 "$scratch/cxx-mpi/consumer_cxx_mpi"
fi
RUN
"$prefix/share/rfaas/scripts/local-cluster.sh" --cores 1 --timeout 300 -- bash "$scratch/run.sh"
echo "check-install: ok (${consumers[*]})"
