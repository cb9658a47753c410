#!/usr/bin/env bash
# The lease broker under load (rfaas-bench broker: 1,000 and 10,000 simulated executor daemons,
# 1-64 concurrent clients, memory per lease) and, in the same run, a real local Slurm's
# sbatch -> RUNNING for a trivial job (scripts/slurm/local-slurm.sh; needs root, else skipped).
# Usage: scripts/bench/broker.sh [extra rfaas-bench broker flags]
set -euo pipefail
umask 077  # secrets, journals and logs made here are private from their first byte
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/build/scripts/bench/rfaas-bench"
[ -x "$bench" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
samples=0
if [ "$(id -u)" -eq 0 ] && command -v slurmctld >/dev/null; then
  base=$(mktemp -d /tmp/rfaas-bench-slurm.XXXXXX)
  trap '"$root/scripts/slurm/local-slurm.sh" stop "$base"; rm -rf "$base"' EXIT
  export SLURMCTLD_PORT=${SLURMCTLD_PORT:-16827} SLURMD_PORT=${SLURMD_PORT:-16828}
  slurm_env=$("$root/scripts/slurm/local-slurm.sh" start "$base" 4)
  export $(grep -E '^(SLURM_CONF|RFAAS_MUNGE_SOCKET)=' <<<"$slurm_env")
  samples=5
fi
# Clients authenticate with MUNGE: the local Slurm's munged, else one of the bench's own.
if [ -z "${RFAAS_MUNGE_SOCKET:-}" ]; then
  mdir=$(mktemp -d /tmp/rfaas-bench-munge.XXXXXX)
  chmod 755 "$mdir"
  trap '"$root/scripts/munged.sh" stop "$mdir"; rm -rf "$mdir"; [ -n "${base:-}" ] && { "$root/scripts/slurm/local-slurm.sh" stop "$base"; rm -rf "$base"; }' EXIT
  export "$("$root/scripts/munged.sh" start "$mdir" | tail -n 1)"
fi
"$bench" broker --nodes 1000,10000 --clients 1,4,16,64 --seconds 2 --hold 10000 --sbatch-samples "$samples" "$@"
