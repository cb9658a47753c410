// An MPI code in C++ on the installed rfaas_mpi.h: each rank offloads the installed echo
// function to a core leased through the broker.
#include <mpi.h>
#include <rfaas/rfaas_mpi.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::string library = std::string(std::getenv("RFAAS_FUNCTIONS")) + "/librfaas_functions_basic.so";
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.library_path = library.c_str();
  cfg.functions = "echo";
  cfg.input_capacity = cfg.output_capacity = 4096;
  int rc = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  std::array<int, 8> in{1, 2, 3, 4, 5, 6, 7, 8}, out{};
  size_t n = 0;
  MPI_Request req;
  if (rc == RFAAS_OK) rc = rfaas_ioffload("echo", in.data(), sizeof in, out.data(), sizeof out, &req);
  MPI_Status st{};
  if (rc == RFAAS_OK) {
    MPI_Wait(&req, &st);
    rc = st.MPI_TAG;  // the rfaas code of the offload
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    n = static_cast<size_t>(count);
  }
  std::printf("consumer_cxx_mpi: ioffload %s, %zu bytes back\n", rfaas_strerror(rc), n);
  if (rc != RFAAS_OK) std::fprintf(stderr, "consumer_cxx_mpi: %s\n", rfaas_mpi_last_error());
  bool ok = rc == RFAAS_OK && n == sizeof in && in == out;
  if (rfaas_mpi_initialized()) rfaas_mpi_finalize();
  MPI_Finalize();
  return ok ? 0 : 1;
}
