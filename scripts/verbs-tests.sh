#!/usr/bin/env bash
# The suites over the verbs backend: test_fabric, test_fabric_setup and test_executor (real
# rfaas-executord / rfaas-executor processes, function libraries, the C API client).
# Natively when this machine has an active RDMA device with an IPv4 address (or
# RFAAS_VERBS_HOST names one), else inside the Soft-RoCE guest (scripts/softroce-guest.sh).
# Prints one line per suite and exits non-zero when any failed.
#   scripts/verbs-tests.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(readlink -f "${1:?usage: verbs-tests.sh BUILD_DIR}")
suites=("$build/tests/fabric/test_fabric" "$build/tests/fabric/test_fabric_setup" "$build/tests/executor/test_executor")
support=("$build/tests/fabric/fabric_peer" "$build/runtime/rfaas-executord" "$build/runtime/rfaas-executor"
         "$build/functions/librfaas_functions_basic.so" "$build/tests/executor/c_api_client")
for f in "${suites[@]}" "${support[@]}"; do [[ -e "$f" ]] || { echo "verbs-tests.sh: missing $f (build first)" >&2; exit 2; }; done

# An IPv4 address on the netdev of an active RDMA port of this machine, if there is one.
native_host() {
  [[ -n "${RFAAS_VERBS_HOST:-}" ]] && { echo "$RFAAS_VERBS_HOST"; return; }
  command -v rdma >/dev/null || return 0
  local netdev
  for netdev in $(rdma link show 2>/dev/null | awk '/state ACTIVE/ {for (i = 1; i < NF; ++i) if ($i == "netdev") print $(i + 1)}'); do
    ip -4 -o addr show dev "$netdev" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}'
    return
  done
}

# The same script runs here or in the guest: each suite, its result, the number that failed.
body='failed=0
for t in '"${suites[*]}"'; do
  echo "=== verbs: $(basename $t)"
  if "$t"; then echo "VERBS-SUITE $(basename $t) PASS"; else echo "VERBS-SUITE $(basename $t) FAIL"; failed=$((failed + 1)); fi
done
exit $failed'

host=$(native_host)
if [[ -n "$host" ]]; then
  echo "verbs-tests.sh: running natively over the RDMA device holding $host"
  log=$(mktemp)
  RFAAS_FABRIC=verbs RFAAS_FABRIC_HOST=$host bash -c "$body" 2>&1 | tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
else
  echo "verbs-tests.sh: no RDMA device here; running in the Soft-RoCE guest"
  log=$(mktemp)
  args=()
  for f in "${suites[@]}" "${support[@]}"; do args+=(--file "$f"); done
  rc=0
  "$root/scripts/softroce-guest.sh" --timeout 1500 --memory 2G "${args[@]}" -- \
    "export RFAAS_FABRIC=verbs RFAAS_FABRIC_HOST=10.0.2.15; $body" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
fi
echo "--- verbs suites:"
grep -a -o 'VERBS-SUITE .*' "$log" | sed 's/^VERBS-SUITE /  /' || true
rm -f "$log"
[[ $rc -eq 0 ]] && echo "verbs-tests.sh: all passed" || echo "verbs-tests.sh: failed (status $rc)"
exit "$rc"
