/* An MPI code in C on the installed rfaas_mpi.h: each rank leases a core through the broker,
 * offloads the installed echo function, and finalizes. A call before rfaas_mpi_init is refused
 * with RFAAS_ERR_NOT_INITIALIZED. */
#include <mpi.h>
#include <rfaas/rfaas_mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  double x = 1;
  int early = rfaas_offload("echo", &x, sizeof x, &x, sizeof x, NULL);
  char library[4096];
  snprintf(library, sizeof library, "%s/librfaas_functions_basic.so", getenv("RFAAS_FUNCTIONS"));
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.library_path = library;
  cfg.functions = "echo";
  cfg.input_capacity = cfg.output_capacity = 4096;
  int rc = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  double in[4] = {1, 2, 3, 4}, out[4] = {0};
  size_t n = 0;
  if (rc == RFAAS_OK) rc = rfaas_offload("echo", in, sizeof in, out, sizeof out, &n);
  printf("consumer_c_mpi: before init %s; offload %s, %zu bytes back\n", rfaas_strerror(early), rfaas_strerror(rc), n);
  if (rc != RFAAS_OK) fprintf(stderr, "consumer_c_mpi: %s\n", rfaas_mpi_last_error());
  int ok = early == RFAAS_ERR_NOT_INITIALIZED && rc == RFAAS_OK && n == sizeof in && memcmp(in, out, n) == 0;
  if (rfaas_mpi_initialized()) rfaas_mpi_finalize();
  MPI_Finalize();
  return ok ? 0 : 1;
}
