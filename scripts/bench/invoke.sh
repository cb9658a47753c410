#!/usr/bin/env bash
# The invocation path beside the raw transport: rfaas-bench invoke over each libfabric
# provider, JSON lines appended to $OUT (default build/bench/invoke.jsonl).
# Usage: scripts/bench/invoke.sh [extra rfaas-bench flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/build/scripts/bench/rfaas-bench"
[ -x "$bench" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
out=${OUT:-$root/build/bench/invoke.jsonl}
mkdir -p "$(dirname "$out")"
for provider in ${PROVIDERS:-shm tcp}; do
  "$bench" invoke --provider "$provider" --repeats 5 --json "$out" "$@"
done
echo "JSON lines appended to $out"
