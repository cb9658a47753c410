#!/usr/bin/env bash
# The hot invocation over verbs against the raw write round trip, over several Soft-RoCE guest
# boots (scripts/softroce-guest.sh): each boot runs rfaas-bench invoke --provider verbs --hot-only
# $RUNS times, and the summary gives, per size, every run's paired ratio (median over its repeats
# of echo / raw), their median and range, and how many runs were within the 1.05x target.
# Emulation noise moves a single run's ratio by several per cent, so the figure to quote is the
# median over runs and boots, with the range beside it.
#   scripts/bench/verbs-invoke.sh [BUILD_DIR]   (BOOTS=3, RUNS=2, REPEATS=21, SIZES="8 64 1024 4096")
# Every run's JSON lines are appended to $OUT (default BUILD_DIR/bench/verbs-invoke.jsonl), with
# the provider "verbs (Soft-RoCE guest)", for scripts/bench/plot.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(readlink -f "${1:-$root/build}")
boots=${BOOTS:-3} runs=${RUNS:-2} repeats=${REPEATS:-21} sizes=${SIZES:-8 64 1024 4096}
for f in scripts/bench/rfaas-bench runtime/rfaas-executord runtime/rfaas-executor functions/librfaas_functions_basic.so; do
  [[ -e "$build/$f" ]] || { echo "verbs-invoke.sh: missing $build/$f (build first)" >&2; exit 2; }
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for ((b = 1; b <= boots; ++b)); do
  echo "=== boot $b of $boots" >&2
  "$root/scripts/softroce-guest.sh" --timeout 1500 --memory 2G --mtu "${MTU:-1500}" \
    --file "$build/scripts/bench/rfaas-bench" --file "$build/runtime/rfaas-executord" \
    --file "$build/runtime/rfaas-executor" --file "$build/functions/librfaas_functions_basic.so" -- \
    "export RFAAS_FABRIC_HOST=10.0.2.15; i=0; while [ \$i -lt $runs ]; do i=\$((i + 1));
     $build/scripts/bench/rfaas-bench invoke --provider verbs --sizes $sizes --repeats $repeats --seconds 0.1 \
       --hot-only --json -; done" 2>&1 | tee -a "$log" >&2 || true
done
# The JSON lines (one per size and run) came back on the guest's console with the tables.
out=${OUT:-$build/bench/verbs-invoke.jsonl}
mkdir -p "$(dirname "$out")"
tr -d '\r' <"$log" | grep -o '{"bench":"invoke","metric":"hot_rtt_us".*}' |
  sed 's/"provider":"verbs"/"provider":"verbs (Soft-RoCE guest)"/' >>"$out" || true
echo "verbs-invoke.sh: JSON lines appended to $out" >&2
tr -d '\r' <"$log" | grep -o '{"bench":"invoke","metric":"hot_rtt_us".*}' | awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " "); for (i = 1; i <= n; ++i) for (j = i + 1; j <= n; ++j) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function field(name,   m) { if (match($0, "\"" name "\":[-0-9.e+]+")) return substr($0, RSTART + length(name) + 3, RLENGTH - length(name) - 3); return "" }
  {
    s = field("size"); r = field("ratio"); sizes[s] = 1; ratios[s] = ratios[s] " " sprintf("%.3f", r); ++n[s]
    if (r + 0 <= 1.05) ++within[s]
    if (!(s in lo) || r + 0 < lo[s]) lo[s] = r + 0
    if (!(s in hi) || r + 0 > hi[s]) hi[s] = r + 0
    raw[s] = raw[s] " " field("raw_median"); echo[s] = echo[s] " " field("echo_median")
  }
  END {
    printf "\n=== rfaas-bench invoke --provider verbs --hot-only: echo / raw write round trip, per run\n"
    printf "%-6s %5s %10s %10s %8s %13s %11s  %s\n", "size", "runs", "raw (us)", "echo (us)", "ratio", "range", "<= 1.05", "every run"
    for (s = 1; s <= 1048576; s *= 2) if (s in sizes)
      printf "%-6d %5d %10.2f %10.2f %8.3f %6.3f-%-6.3f %5d of %-3d %s\n", s, n[s], median(raw[s]), median(echo[s]),
             median(ratios[s]), lo[s], hi[s], within[s], n[s], ratios[s]
  }'
