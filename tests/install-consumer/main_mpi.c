/* An MPI code in C against the installed rfaas_mpi.h: calls before rfaas_mpi_init are refused
 * with RFAAS_ERR_NOT_INITIALIZED and MPI goes on. */
#include <mpi.h>
#include <rfaas/rfaas_mpi.h>
#include <stdio.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  double x = 1;
  int rc = rfaas_offload("f", &x, sizeof x, &x, sizeof x, NULL);
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  printf("consumer_mpi: %s; default cores per rank %d\n", rfaas_strerror(rc), (int)cfg.cores_per_rank);
  MPI_Finalize();
  return rc == RFAAS_ERR_NOT_INITIALIZED && cfg.cores_per_rank == 1 ? 0 : 1;
}
