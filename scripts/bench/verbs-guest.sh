#!/usr/bin/env bash
# The verbs figures, all in one Soft-RoCE guest boot (scripts/softroce-guest.sh), so they share
# the same emulated machine: perftest's ib_write_lat (8 B, 4 KiB) and ib_write_bw (1 MiB)
# interleaved over $ROUNDS rounds with rfaas-fabric-bench --provider verbs (our write-with-
# immediate ping-pong beside raw libibverbs), then rfaas-bench invoke --provider verbs (hot
# invocations beside the raw write round trip). Prints a summary with the ratios.
#   scripts/bench/verbs-guest.sh [BUILD_DIR]      (ROUNDS=3 by default; MTU=9000 for a RoCE MTU
#                                                 of 4096 instead of 1024)
# ib_write_lat reports half a round trip (t_typical); the summary doubles it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(readlink -f "${1:-$root/build}")
rounds=${ROUNDS:-3}
for f in scripts/bench/rfaas-fabric-bench scripts/bench/rfaas-bench runtime/rfaas-executord runtime/rfaas-executor \
         functions/librfaas_functions_basic.so; do
  [[ -e "$build/$f" ]] || { echo "verbs-guest.sh: missing $build/$f (build first)" >&2; exit 2; }
done
if ! command -v ib_write_lat >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends perftest >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends perftest >/dev/null; }
fi
lat=$(command -v ib_write_lat) bw=$(command -v ib_write_bw)

# perftest: a server in the background, then the client; the guest's only address is 10.0.2.15.
perf='pt() { tool=$1; shift; ($tool -d rxe0 -x 1 "$@" >/dev/null 2>&1 &); sleep 3; $tool -d rxe0 -x 1 "$@" 10.0.2.15; sleep 1; }'
cmd="$perf; export RFAAS_FABRIC_HOST=10.0.2.15; i=0; while [ \$i -lt $rounds ]; do i=\$((i + 1));
echo MARK-LAT-8; pt $lat -s 8 -n 3000
echo MARK-LAT-4096; pt $lat -s 4096 -n 1000
echo MARK-FABRIC; $build/scripts/bench/rfaas-fabric-bench --provider verbs --sizes 8 64 1024 4096 --repeats 3 --stream-count 200
done
echo MARK-BW; pt $bw -s 1048576 -n 200
echo MARK-INVOKE; $build/scripts/bench/rfaas-bench invoke --provider verbs --sizes 8 64 1024 4096 --repeats 15 --seconds 0.1"
log=$(mktemp)
"$root/scripts/softroce-guest.sh" --timeout 1800 --memory 2G --mtu "${MTU:-1500}" --file "$lat" --file "$bw" \
  --file "$build/scripts/bench/rfaas-fabric-bench" --file "$build/scripts/bench/rfaas-bench" \
  --file "$build/runtime/rfaas-executord" --file "$build/runtime/rfaas-executor" \
  --file "$build/functions/librfaas_functions_basic.so" -- "$cmd" 2>&1 | tee "$log"

# Medians over the rounds of: ib_write_lat t_typical x2; raw verbs and rfaas fabric round trips.
# Ratios are taken within a round (perftest and our run back to back), then the median over
# rounds: the emulated machine's speed drifts between rounds far more than within one.
tr -d '\r' <"$log" | awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " "); for (i = 1; i <= n; ++i) for (j = i + 1; j <= n; ++j) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  /MARK-/ { mode = $1; if (mode == "MARK-LAT-8") ++round; next }
  mode ~ /MARK-LAT/ && $1 ~ /^[0-9]+$/ && NF >= 5 && $2 ~ /^[0-9]+$/ { ib[round, $1] = 2 * $5; next }
  mode == "MARK-FABRIC" && $1 ~ /^[0-9]+$/ && NF == 7 {
    s = $1; sizes[s] = 1; raw[s] = raw[s] " " $2; ours[s] = ours[s] " " $4; vs_raw[s] = vs_raw[s] " " $4 / $2
    if ((round, s) in ib) { lat[s] = lat[s] " " ib[round, s]; vs_ib[s] = vs_ib[s] " " $4 / ib[round, s] }
    next
  }
  mode == "MARK-BW" && $1 == "1048576" { bw = $4 }
  mode == "MARK-FABRIC" && $1 == "1" && $2 == "MiB" { sbw = sbw " " $4 }
  END {
    printf "\n=== verbs in one Soft-RoCE guest boot (%d rounds): round trips in us and ratios, medians over rounds\n", round
    printf "%-6s %16s %11s %13s %15s %12s\n", "size", "ib_write_lat x2", "raw verbs", "rfaas fabric", "rfaas / ib_lat", "rfaas / raw"
    for (s = 8; s <= 4096; s *= 2) if (s in sizes)
      printf "%-6d %16s %11.2f %13.2f %15s %12.3f\n", s, (s in lat) ? sprintf("%.2f", median(lat[s])) : "-", median(raw[s]),
             median(ours[s]), (s in vs_ib) ? sprintf("%.3f", median(vs_ib[s])) : "-", median(vs_raw[s])
    if (bw != "") printf "1 MiB writes: ib_write_bw %.1f MiB/s, rfaas fabric stream %.1f MiB/s, ratio %.3f\n", bw, median(sbw) * 1e9 / 1048576, median(sbw) * 1e9 / 1048576 / bw
  }'
rm -f "$log"
