#!/usr/bin/env bash
# rfaas under a real Slurm on this machine (local-slurm.sh: munge + slurmctld + slurmd on
# loopback): submits the broker job and an executor-daemon job, runs the example MPI job through
# them, runs a client with srun, scancels the executor job and checks that the client sees its
# lease revoked. Also times sbatch -> RUNNING for a trivial job. Stops everything it started.
#   scripts/slurm/test-slurm.sh [BUILD_DIR]        (root; run by scripts/test.sh)
set -euo pipefail
umask 077  # secrets, journals and logs made here are private from their first byte
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
base=$(mktemp -d /tmp/rfaas-slurm.XXXXXX)
state="$base/rfaas"
jobs_started=()
cleanup() {
  local rc=$?
  for j in "${jobs_started[@]}"; do scancel "$j" 2>/dev/null || true; done
  if [[ $rc -ne 0 ]]; then
    echo "test-slurm: FAILED; logs:" >&2
    tail -n 30 "$state"/*.out "$base/log/slurmctld.log" 2>/dev/null >&2 || true
  fi
  sleep 1
  "$root/scripts/slurm/local-slurm.sh" stop "$base" || true
  rm -rf "$base"
  exit $rc
}
trap cleanup EXIT

export SLURMCTLD_PORT=${SLURMCTLD_PORT:-16817} SLURMD_PORT=${SLURMD_PORT:-16818}
# SLURM_CONF and RFAAS_MUNGE_SOCKET (the jobs, the broker among them, inherit both).
slurm_env=$("$root/scripts/slurm/local-slurm.sh" start "$base" 8)
export $(grep -E '^(SLURM_CONF|RFAAS_MUNGE_SOCKET)=' <<<"$slurm_env")
mkdir -p "$state"
head -c 32 /dev/urandom >"$state/secret"
chmod 600 "$state/secret"
export RFAAS_STATE_DIR="$state" RFAAS_SECRET_FILE="$state/secret"
export RFAAS_BROKER_LISTEN=127.0.0.1:0 RFAAS_EXECUTORD_LISTEN=127.0.0.1:0
export OPENBLAS_NUM_THREADS=1

poll() {  # seconds, command...: until the command succeeds
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}
job_state() { squeue -h -j "$1" -o %T 2>/dev/null; }

# sbatch -> RUNNING for a trivial job: what a user does today to get cores.
t0=$(date +%s%N)
trivial=$(sbatch --parsable -o /dev/null --wrap "sleep 2")
jobs_started+=("$trivial")
poll 30 bash -c "[[ \$(squeue -h -j $trivial -o %T) == RUNNING ]]"
t1=$(date +%s%N)
echo "test-slurm: sbatch -> RUNNING for a trivial job: $(( (t1 - t0) / 1000000 )) ms"
scancel "$trivial"

broker_job=$(RFAAS_BIN="$build/lease-broker" sbatch --parsable -o "$state/broker.out" \
  "$root/scripts/slurm/rfaas-broker.sbatch")
jobs_started+=("$broker_job")
poll 30 test -s "$state/broker.addr"
export RFAAS_BROKER=$(cat "$state/broker.addr")
echo "test-slurm: broker job $broker_job at $RFAAS_BROKER"

# The executor daemon's job: rfaas-executord and rfaas-executor live in build/runtime.
executord_job=$(RFAAS_BIN="$build/runtime" sbatch --parsable -c 2 -o "$state/executord.out" \
  "$root/scripts/slurm/rfaas-executord.sbatch")
jobs_started+=("$executord_job")
poll 30 bash -c "'$build/lease-broker/rfaas-ctl' --broker '$RFAAS_BROKER' status --json | grep -q '\"state\": \"active\"'"
echo "test-slurm: executor daemon job $executord_job registered"

# The example MPI job: 2 ranks lease a core each through the broker and offload.
mpi_job=$(RFAAS_APPS="$build/apps" RFAAS_FUNCTIONS="$build/functions" sbatch --parsable -o "$state/mpi.out" \
  "$root/scripts/slurm/rfaas-mpi-job.sbatch" --n 64 --iterations 30 --hot-timeout-us 0)
jobs_started+=("$mpi_job")
poll 120 bash -c "[[ -z \$(squeue -h -j $mpi_job -o %T) ]]"
cat "$state/mpi.out"
grep -q "verification: PASS" "$state/mpi.out"
echo "test-slurm: MPI job $mpi_job offloaded through the broker: PASS"

# A client as a job step; then the executor job is cancelled under it.
srun -n1 -c1 "$build/tests/slurm/revocation_probe" "$build/functions/librfaas_functions_basic.so" 60 \
  >"$state/probe.out" 2>&1 &
probe=$!
poll 30 grep -q "probe: invoking" "$state/probe.out"
scancel "$executord_job"
rc=0
wait $probe || rc=$?
cat "$state/probe.out"
[[ $rc -eq 0 ]] || { echo "test-slurm: the client did not see lease_revoked (rc $rc)" >&2; exit 1; }
poll 30 bash -c "'$build/lease-broker/rfaas-ctl' --broker '$RFAAS_BROKER' status --json | grep -q '\"leases\": \[\]'"
echo "test-slurm: scancel of the executor job revoked the client's lease: PASS"
