#!/usr/bin/env bash
# Runs one command against a local rfaas cluster on loopback: a lease broker and an executor
# daemon registered with it, both stopped when the command ends (or after --timeout seconds).
# The command sees RFAAS_BROKER (the broker's host:port), RFAAS_FUNCTIONS (the folder of
# the built function libraries) and RFAAS_MUNGE_SOCKET: users authenticate to the broker with
# MUNGE, and unless RFAAS_MUNGE_SOCKET already names a munged, a munged of the cluster's own
# runs beside it (scripts/munged.sh).
#
#   scripts/local-cluster.sh [--build DIR] [--cores 0,1] [--timeout S] [--host ADDR]
#                            [--daemon-prefix WORDS] -- mpirun -np 2 app ...
#
# --host: the address the broker and the daemon listen on (default 127.0.0.1); --daemon-prefix:
# words run before each of them, e.g. "ip netns exec B env RFAAS_FABRIC_HOST=ADDR" to put them
# in another network namespace (scripts/verbs-tests.sh). The prefix must exec, not fork: the
# pids kept are the daemons'.
#
# From the source tree it runs a build (--build, default build/); installed (cmake --install),
# it is PREFIX/share/rfaas/scripts/local-cluster.sh and runs the installed programs.
#
# The transport is the executor side's and the clients' RFAAS_OFI_PROVIDER (default auto: shm on this host).
set -euo pipefail
# The secret, the journal and the daemons' logs are the caller's alone, from their first byte.
umask 077
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build"
installed=""
[[ -f "$here/installed-layout.sh" ]] && installed=1
cores=""
limit=600
host=127.0.0.1
daemon_prefix=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$(cd "$2" && pwd); installed=""; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --daemon-prefix) read -r -a daemon_prefix <<<"$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "local-cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "usage: local-cluster.sh [--build DIR] [--cores LIST] [--timeout S] -- command..." >&2; exit 2; }

if [[ -n "$installed" ]]; then
  source "$here/installed-layout.sh"
  broker_bin="$bin_dir/rfaas-broker" ctl_bin="$bin_dir/rfaas-ctl" executord_bin="$bin_dir/rfaas-executord"
else
  broker_bin="$build/lease-broker/rfaas-broker" ctl_bin="$build/lease-broker/rfaas-ctl"
  executord_bin="$build/runtime/rfaas-executord" functions_dir="$build/functions"
fi
for f in "$broker_bin" "$ctl_bin" "$executord_bin"; do
  [[ -x "$f" ]] || { echo "local-cluster.sh: $f is missing (build first, or pass --build DIR)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/rfaas-cluster.XXXXXX)
pids=()
cleanup() {
  local p
  if [[ -n "${own_munged:-}" ]]; then bash "$here/munged.sh" stop "$work/munge" >/dev/null 2>&1 || true; fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_file() {  # file, what, pid
  for _ in $(seq 200); do
    [[ -s "$1" ]] && return 0
    kill -0 "$3" 2>/dev/null || { echo "local-cluster.sh: $2 exited during start; log:" >&2; cat "$work/$2.log" >&2; return 1; }
    sleep 0.05
  done
  echo "local-cluster.sh: $2 not ready after 10 s; log:" >&2
  cat "$work/$2.log" >&2
  return 1
}

if [[ -z "${RFAAS_MUNGE_SOCKET:-}" ]]; then
  own_munged=1
  chmod 711 "$work"  # munged (the munge user) and clients pass through to its socket; nobody lists
  munge_env=$(bash "$here/munged.sh" start "$work/munge" | tail -n 1)
  export "$munge_env"
fi

head -c 32 /dev/urandom >"$work/secret"
chmod 600 "$work/secret"

"${daemon_prefix[@]}" "$broker_bin" --listen "$host:0" --secret-file "$work/secret" --journal "$work/journal" \
  --ready-file "$work/broker.addr" >"$work/broker.log" 2>&1 &
pids+=($!)
wait_file "$work/broker.addr" broker "${pids[-1]}"
broker=$(cat "$work/broker.addr")

args=(--listen "$host:0" --node-name "$(hostname)" --secret-file "$work/secret" --broker "$broker"
      --ready-file "$work/executord.addr")
[[ -n "$cores" ]] && args+=(--cores "$cores")
"${daemon_prefix[@]}" "$executord_bin" "${args[@]}" >"$work/executord.log" 2>&1 &
pids+=($!)
wait_file "$work/executord.addr" executord "${pids[-1]}"

# The daemon registers right after it listens; wait until the broker lists it.
for _ in $(seq 100); do
  "$ctl_bin" --broker "$broker" status --json 2>/dev/null | grep -q '"state": "active"' && break
  sleep 0.1
done

export RFAAS_BROKER="$broker"
export RFAAS_FUNCTIONS="$functions_dir"
rc=0
timeout --kill-after=10 "$limit" "$@" || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "local-cluster.sh: command exited with $rc; daemon logs follow" >&2
  tail -n 20 "$work/broker.log" "$work/executord.log" >&2 || true
fi
exit $rc
