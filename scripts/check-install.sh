#!/usr/bin/env bash
# Installs a built rfaas into a scratch prefix and builds + runs a consumer project against it
# with find_package(rfaas). Usage: scripts/check-install.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: check-install.sh BUILD_DIR}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$root/tests/install-consumer" -B "$scratch/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/consumer" >/dev/null
"$scratch/consumer/consumer"
"$scratch/consumer/consumer_c"
if [[ -x "$scratch/consumer/consumer_mpi" ]]; then
  mpirun --allow-run-as-root -np 1 "$scratch/consumer/consumer_mpi"
fi
echo "check-install: ok"
