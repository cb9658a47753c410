// Catch2's runner for MPI tests: every rank runs the same test cases; the job fails if any rank
// failed.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (!std::getenv("RFAAS_BROKER") || !std::getenv("RFAAS_FUNCTIONS")) {
    std::fprintf(stderr, "test_mpi_offload: run under scripts/local-cluster.sh (RFAAS_BROKER, RFAAS_FUNCTIONS)\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int failed = Catch::Session().run(argc, argv);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any ? 1 : 0;
}
