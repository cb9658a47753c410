#!/usr/bin/env bash
# Installs a built rfaas into a scratch prefix and builds the consumers in
# tests/install-consumer (C, C++, C + MPI, C++ + MPI, Fortran: each a fresh project with only
# its own languages, finding rfaas with find_package), then runs them against a local cluster
# started by the installed local-cluster.sh (share/rfaas/scripts), on the installed programs.
# With a second build made against MPICH, its MPI layer is installed beside Open MPI's (its own
# install component) and the MPI consumers are built and run against MPICH too: each must link the
# layer of its own MPI's ABI.
# Usage: scripts/check-install.sh BUILD_DIR [MPICH_BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: check-install.sh BUILD_DIR [MPICH_BUILD_DIR]}
mpich_build=${2:-}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix="$scratch/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
if [[ -n "$mpich_build" ]]; then
  cmake --install "$mpich_build" --prefix "$prefix" --component rfaas_mpi_mpich >/dev/null
fi

consume() {  # consumer folder, build folder, cmake options...
  local c=$1 out=$2; shift 2
  if ! cmake -S "$root/tests/install-consumer/$c" -B "$out" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" "$@" \
         >"$out.log" 2>&1 || ! cmake --build "$out" >>"$out.log" 2>&1; then
    echo "check-install: the $c consumer ($(basename "$out")) does not build:" >&2
    cat "$out.log" >&2
    exit 1
  fi
}
links() {  # program, library soname prefix: the program needs that library
  readelf -d "$1" | grep -q "Shared library: \[$2\.so"
}

consumers=(c cxx fortran)
if compgen -G "$prefix/lib*/cmake/rfaas/rfaasMpiTargets.cmake" >/dev/null; then consumers+=(c-mpi cxx-mpi); fi
for c in "${consumers[@]}"; do consume "$c" "$scratch/$c"; done
mpich_consumers=()
if [[ -n "$mpich_build" ]]; then
  compgen -G "$prefix/lib*/cmake/rfaas/rfaasMpiMpichTargets.cmake" >/dev/null ||
    { echo "check-install: $mpich_build installed no MPICH layer" >&2; exit 1; }
  consume c-mpi "$scratch/c-mpich" -DMPI_C_COMPILER=/usr/bin/mpicc.mpich
  consume cxx-mpi "$scratch/cxx-mpich" -DMPI_CXX_COMPILER=/usr/bin/mpicxx.mpich
  mpich_consumers=(c-mpich cxx-mpich)
  # Each MPI's consumers link the layer built for its ABI, and only that one.
  for p in "$scratch/c-mpich/consumer_c_mpi" "$scratch/cxx-mpich/consumer_cxx_mpi"; do
    links "$p" librfaas_mpi_mpich && ! links "$p" librfaas_mpi && links "$p" libmpich ||
      { echo "check-install: $p does not link librfaas_mpi_mpich and MPICH alone" >&2; readelf -d "$p" >&2; exit 1; }
  done
  for p in "$scratch/c-mpi/consumer_c_mpi" "$scratch/cxx-mpi/consumer_cxx_mpi"; do
    links "$p" librfaas_mpi && ! links "$p" librfaas_mpi_mpich ||
      { echo "check-install: $p does not link librfaas_mpi alone" >&2; readelf -d "$p" >&2; exit 1; }
  done
fi

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
if [[ -x "$scratch/c-mpich/consumer_c_mpi" ]]; then
  mpiexec.mpich -n 1 "$scratch/c-mpich/consumer_c_mpi"
  mpiexec.mpich -n 1 "$scratch/cxx-mpich/consumer_cxx_mpi"
fi
RUN
"$prefix/share/rfaas/scripts/local-cluster.sh" --cores 1 --timeout 300 -- bash "$scratch/run.sh"
echo "check-install: ok (${consumers[*]} ${mpich_consumers[*]})"
