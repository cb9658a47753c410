#!/usr/bin/env bash
# The suites over the verbs backend: test_fabric, test_fabric_setup and test_executor (real
# rfaas-executord / rfaas-executor processes, function libraries, the C API client), then the
# apps (jacobi, gemm) at small sizes in the configuration rfaas is for: one MPI rank on core 0,
# core 1 leased through a real broker (scripts/local-cluster.sh), verified against all-local.
# Natively when this machine has an active RDMA device with an IPv4 address (or
# RFAAS_VERBS_HOST names one), else inside the Soft-RoCE guest (scripts/softroce-guest.sh).
# In the guest, a second boot (a kernel whose rxe knows network namespaces) runs test_fabric,
# test_executor and the apps between two namespaces, each with its own rxe device on a veth
# pair: the suite in one, its peers, daemons and broker in the other (scripts/verbs-netns.sh).
# RFAAS_VERBS_NETNS=0 skips that boot, =only runs nothing else.
# Prints one line per suite and exits non-zero when any failed.
#   scripts/verbs-tests.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(readlink -f "${1:?usage: verbs-tests.sh BUILD_DIR}")
suites=("$build/tests/fabric/test_fabric" "$build/tests/fabric/test_fabric_setup" "$build/tests/executor/test_executor")
support=("$build/tests/fabric/fabric_peer" "$build/runtime/rfaas-executord" "$build/runtime/rfaas-executor"
         "$build/functions/librfaas_functions_basic.so" "$build/tests/executor/c_api_client"
         "$build/tests/executor/librfaas_test_needs_dep.so" "$build/tests/executor/librfaas_test_dep.so"
         "$build/tests/executor/librfaas_test_overrun.so")
for f in "${suites[@]}" "${support[@]}"; do [[ -e "$f" ]] || { echo "verbs-tests.sh: missing $f (build first)" >&2; exit 2; }; done

# The apps, when they were built (MPI found): what they run on, and Open MPI's runtime with the
# components it loads at run time (ldd does not see those) for the guest.
mpirun=$(command -v orterun || command -v mpirun || true)
apps=()
netns_apps=()  # the same runs, without the cluster: verbs-netns.sh puts it in the other namespace
app_files=()
if [[ -x "$build/apps/jacobi" && -n "$mpirun" ]]; then
  alone="$mpirun --allow-run-as-root --bind-to core --cpu-set 0 -x OPENBLAS_NUM_THREADS=1 -np 1"
  cluster="bash $root/scripts/local-cluster.sh --build $build --cores 1 --timeout 600 --"
  netns_apps+=("jacobi|$alone $build/apps/jacobi --n 64 --iterations 20 --share 0.5 --repeats 1")
  [[ -x "$build/apps/gemm" ]] &&
    netns_apps+=("gemm|$alone $build/apps/gemm --n 64 --tile 8 --share 0.5 --repeats 1")
  for a in "${netns_apps[@]}"; do apps+=("${a%%|*}|$cluster ${a#*|}"); done
  app_files=("$build/lease-broker/rfaas-broker" "$build/lease-broker/rfaas-ctl" "$build/functions/"*.so
             "$build/apps/jacobi" "$root/scripts/local-cluster.sh" "$(readlink -f "$mpirun")" /bin/bash /usr/bin/timeout
             "$root/scripts/munged.sh" /usr/sbin/munged /usr/bin/munge /usr/bin/unmunge)
  [[ -x "$build/apps/gemm" ]] && app_files+=("$build/apps/gemm")
  command -v orted >/dev/null && app_files+=("$(readlink -f "$(command -v orted)")")
  for d in /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix /usr/share/openmpi /etc/openmpi; do
    [[ -d "$d" ]] && while IFS= read -r f; do app_files+=("$f"); done < <(find "$d" -type f)
  done
else
  echo "verbs-tests.sh: apps not built or no mpirun; the app runs are skipped"
fi

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
'
for a in "${apps[@]}"; do
  name=${a%%|*}
  body+="echo '=== verbs: app $name'
if ${a#*|}; then echo 'VERBS-SUITE app.$name PASS'; else echo 'VERBS-SUITE app.$name FAIL'; failed=\$((failed + 1)); fi
"
done
body+='exit $failed'

host=$(native_host)
if [[ -n "$host" ]]; then
  echo "verbs-tests.sh: running natively over the RDMA device holding $host (the namespace suites run only in the guest)"
  log=$(mktemp)
  RFAAS_FABRIC=verbs RFAAS_FABRIC_HOST=$host bash -c "$body" 2>&1 | tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
else
  log=$(mktemp)
  rc=0
  args=()
  for f in "${suites[@]}" "${support[@]}" "${app_files[@]}"; do args+=(--file "$f"); done
  # Open MPI in the guest: one rank needs only the self BTL; no ssh for a local launch; a
  # hostname that resolves; coreutils' timeout (local-cluster.sh) before busybox's.
  guest_env='export PATH=/usr/bin:$PATH HOME=/tmp OMPI_MCA_btl=self OMPI_MCA_pml=ob1 OMPI_MCA_plm_rsh_agent=/bin/false
hostname guest; echo "127.0.0.1 localhost guest" >/etc/hosts'
  if [[ "${RFAAS_VERBS_NETNS:-1}" != only ]]; then
    echo "verbs-tests.sh: no RDMA device here; running in the Soft-RoCE guest"
    "$root/scripts/softroce-guest.sh" --timeout 1800 --memory 2G "${args[@]}" -- \
      "export RFAAS_FABRIC=verbs RFAAS_FABRIC_HOST=10.0.2.15; $guest_env
$body" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
  fi
  if [[ "${RFAAS_VERBS_NETNS:-1}" != 0 ]]; then
    # test_fabric_setup spawns no peer (its connectors are in-process): not run here.
    echo "verbs-tests.sh: between two network namespaces, in a guest with trixie-backports' kernel"
    netns_args=("$root" "$build" "$build/tests/fabric/test_fabric" "$build/tests/executor/test_executor")
    [[ ${#netns_apps[@]} -gt 0 ]] && netns_args+=(--apps "${netns_apps[@]}")
    quoted=$(printf "'%s' " "${netns_args[@]}")
    nrc=0
    "$root/scripts/softroce-guest.sh" --kernel-suite trixie-backports --timeout 1200 --memory 2G "${args[@]}" \
      --file "$root/scripts/verbs-netns.sh" -- "export RFAAS_FABRIC=verbs; $guest_env
sh $root/scripts/verbs-netns.sh $quoted" 2>&1 | tee -a "$log" || nrc=${PIPESTATUS[0]}
    [[ $rc -eq 0 ]] && rc=$nrc
  fi
fi
echo "--- verbs suites:"
grep -a -o 'VERBS-SUITE .*' "$log" | sed 's/^VERBS-SUITE /  /' || true
rm -f "$log"
[[ $rc -eq 0 ]] && echo "verbs-tests.sh: all passed" || echo "verbs-tests.sh: failed (status $rc)"
exit "$rc"
