#!/usr/bin/env bash
# What reading a clock costs here and in the Soft-RoCE guest (scripts/softroce-guest.sh): the
# guest's clocksource, clock_gettime(CLOCK_MONOTONIC), rdtsc and a bare system call, in ns per
# call, on each of the guest's two CPUs. Why hot loops keep time with the cycle counter
# (runtime/clock/cycle_clock.hpp): a kernel without a stable TSC serves clock_gettime from the HPET.
#   scripts/bench/guest-clock.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/clock_cost.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(void) {
  enum { N = 200000 };
  volatile uint64_t sink = 0;
  double t0 = now_ns();
  for (int i = 0; i < N; i++) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); sink += t.tv_nsec; }
  printf("clock_gettime %8.1f ns\n", (now_ns() - t0) / N);
  t0 = now_ns();
  for (int i = 0; i < N; i++) sink += __rdtsc();
  printf("rdtsc         %8.1f ns\n", (now_ns() - t0) / N);
  t0 = now_ns();
  for (int i = 0; i < N / 10; i++) sink += syscall(SYS_getppid);
  printf("system call   %8.1f ns\n", (now_ns() - t0) / (N / 10));
  return 0;
}
C
cc -O2 -o "$dir/clock_cost" "$dir/clock_cost.c"
echo "--- this machine"
"$dir/clock_cost"
echo "--- the guest"
"$root/scripts/softroce-guest.sh" --timeout 300 --file "$dir/clock_cost" -- \
  "echo clocksource: \$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); for c in 0 1; do echo cpu \$c; taskset -c \$c $dir/clock_cost; done"
