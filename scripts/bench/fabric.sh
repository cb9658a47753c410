#!/usr/bin/env bash
# The transport baseline every later figure is compared with: rfaas-fabric-bench over each
# libfabric provider, 7 interleaved repeats, JSON lines appended to $OUT (default
# build/bench/fabric.jsonl). Usage: scripts/bench/fabric.sh [extra rfaas-fabric-bench flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/build/scripts/bench/rfaas-fabric-bench"
[ -x "$bench" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
out=${OUT:-$root/build/bench/fabric.jsonl}
mkdir -p "$(dirname "$out")"
for provider in ${PROVIDERS:-shm tcp}; do
  "$bench" --provider "$provider" --repeats 7 --json "$out" "$@"
done
echo "JSON lines appended to $out"
