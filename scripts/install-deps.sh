#!/usr/bin/env bash
# Installs the Debian packages rfaas needs to build, test and run. Idempotent: packages that
# are already installed are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  # toolchain (clang + its runtime: the libFuzzer harnesses)
  build-essential cmake ninja-build pkg-config git clang libclang-rt-14-dev
  # the Fortran consumer of the install check (a Fortran program on rfaas.h through bind(C))
  gfortran
  # transports
  libfabric-dev libfabric-bin libibverbs-dev librdmacm-dev rdma-core ibverbs-providers
  # MPI
  libopenmpi-dev openmpi-bin
  # MPICH beside it (Open MPI stays the default mpicc/mpirun; a build picks with MPI_C_COMPILER)
  libmpich-dev mpich
  # libraries
  libboost-program-options-dev nlohmann-json3-dev catch2 libssl-dev libopenblas-dev
  # users authenticate to the broker with MUNGE (munged itself: scripts/munged.sh)
  libmunge-dev munge
  # a local Slurm for the Slurm test (scripts/slurm/local-slurm.sh)
  slurmctld slurmd slurm-client
  # scripts
  iproute2 procps python3
  # the namespace cluster's network faults (scripts/cluster/faults.sh)
  nftables
  # delay on the namespace cluster: packets queued to a userspace delayer (NFQUEUE; no netem here)
  iptables libnetfilter-queue-dev
)

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
  # A fresh machine has no package lists yet: update once, then try again.
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

for p in "${missing[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    echo "install-deps: package $p failed to install" >&2
    exit 1
  fi
done
echo "install-deps: done"
