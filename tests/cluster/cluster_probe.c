/* The cluster test's client (scripts/cluster/test-cluster.sh runs it with srun on one node of the
 * namespace cluster): one MPI rank leases a core through the broker, offloads echo every 20 ms
 * and checks every answer. It prints a line per event, with the wall clock in ms, for the test
 * to time faults by:
 *   probe: invoking (t=...)                       the first answer came back
 *   probe: <error> after <ms> ms without an answer (t=...)
 *   probe: recovered (t=...) / probe: verified <n> offloads (t=...)
 *   cluster_probe SECONDS [recover]
 * Without `recover` it offloads for SECONDS and exits 0 if every offload was answered and right;
 * with it, after the first failure it calls rfaas_mpi_recover and exits 0 once 50 more offloads
 * are answered and right. Exit 3: an offload failed (or a wrong answer), 2: setup failed. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rfaas/rfaas_mpi.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int seconds = argc > 1 ? atoi(argv[1]) : 60;
  const int recover = argc > 2 && strcmp(argv[2], "recover") == 0;
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.functions = "echo";
  cfg.input_capacity = cfg.output_capacity = 4096;
  cfg.duration_ms = 600000;
  cfg.hot_timeout_us = 0;
  int rc = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  if (rc != RFAAS_OK) {
    printf("probe: setup failed: %s: %s\n", rfaas_strerror(rc), rfaas_mpi_last_error());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  uint64_t value = 1, answer = 0, verified = 0;
  int failed = 0, announced = 0;
  int64_t last_answer = now_ms();
  const int64_t end = now_ms() + (int64_t)seconds * 1000;
  while (now_ms() < end) {
    size_t n = 0;
    answer = 0;
    rc = rfaas_offload("echo", &value, sizeof value, &answer, sizeof answer, &n);
    if (rc == RFAAS_OK && (n != sizeof answer || answer != value)) {
      printf("probe: wrong answer %llu for %llu (t=%lld)\n", (unsigned long long)answer, (unsigned long long)value,
             (long long)now_ms());
      fflush(stdout);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    if (rc != RFAAS_OK) {
      printf("probe: %s after %lld ms without an answer (t=%lld)\n", rfaas_strerror(rc),
             (long long)(now_ms() - last_answer), (long long)now_ms());
      fflush(stdout);
      if (!recover || failed) MPI_Abort(MPI_COMM_WORLD, 3);
      failed = 1;
      rc = rfaas_mpi_recover();
      if (rc != RFAAS_OK) {
        printf("probe: recover failed: %s: %s\n", rfaas_strerror(rc), rfaas_mpi_last_error());
        fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
      printf("probe: recovered (t=%lld)\n", (long long)now_ms());
      fflush(stdout);
      verified = 0;
      continue;
    }
    last_answer = now_ms();
    ++verified;
    ++value;
    if (!announced) {
      printf("probe: invoking (t=%lld)\n", (long long)now_ms());
      fflush(stdout);
      announced = 1;
    }
    if (failed && verified == 50) break;
    pause_ms(20);
  }
  printf("probe: verified %llu offloads%s (t=%lld)\n", (unsigned long long)verified,
         failed ? " after recovering" : "", (long long)now_ms());
  fflush(stdout);
  rc = recover && !failed ? 3 : 0;
  rfaas_mpi_finalize();
  MPI_Finalize();
  return rc;
}
