// Distributed DGEMM, C = A * B (N x N, row-major): rows of A and C split over MPI ranks, B
// broadcast. Each rank offloads a share of its rows, in tiles, to its leased cores
// (function dgemm_block of the blas library) with rfaas_ioffload and multiplies the rest itself
// with OpenBLAS, then checks its C against a local cblas_dgemm of all its rows.
//
//   mpirun -np 2 gemm [--n 512] [--tile 64] [--share 0.5] [--cores 1] [--repeats 5]
// The broker and the library come from RFAAS_BROKER and RFAAS_LIBRARY (or
// RFAAS_FUNCTIONS/librfaas_functions_blas.so), or --broker / --library.
#include <cblas.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "rfaas/rfaas_mpi.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  uint32_t n = 512;
  uint32_t tile = 64;  // rows of C per offload
  double share = 0.5;
  int cores = 1;
  int64_t hot_timeout_us = 2000;  // executors busy-poll this long after a call
  int repeats = 5;
  std::string broker, library;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "gemm: %s\n", what);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::abort();
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) die(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--n") o.n = static_cast<uint32_t>(std::atoi(value()));
    else if (a == "--tile") o.tile = static_cast<uint32_t>(std::atoi(value()));
    else if (a == "--share") o.share = std::atof(value());
    else if (a == "--cores") o.cores = std::atoi(value());
    else if (a == "--hot-timeout-us") o.hot_timeout_us = std::atoll(value());
    else if (a == "--repeats") o.repeats = std::atoi(value());
    else if (a == "--broker") o.broker = value();
    else if (a == "--library") o.library = value();
    else die(("unknown option " + a + " (--n --tile --share --cores --hot-timeout-us --repeats --broker --library)").c_str());
  }
  if (o.n < 2 || o.tile < 1 || o.share < 0 || o.share > 1 || o.cores < 1 || o.repeats < 1) die("bad option value");
  return o;
}

// The function's input layout: struct { uint32 m, n, k, pad; double alpha, beta; } = 4 doubles.
constexpr size_t kArgsDoubles = 4;

struct Tile {
  uint32_t first = 0, rows = 0;  // rows of this rank's C
  std::vector<double> input;     // args | A rows | B | C rows (zeros, beta = 0)
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void local_gemm(const double* A, const double* B, double* C, uint32_t rows, uint32_t n) {
  if (rows)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(n),
                static_cast<int>(n), 1.0, A, static_cast<int>(n), B, static_cast<int>(n), 0.0, C, static_cast<int>(n));
}

// Ranks other than 0 wait here while rank 0 measures alone: a sleeping wait, so that on a node
// whose cores are shared with the executors the measurement is not competing with spinners.
void quiet_barrier() {
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  int done = 0;
  while (!done) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Options o = parse(argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const uint32_t n = o.n;
  const size_t N = n;
  uint32_t first_row = static_cast<uint32_t>(N * rank / size);
  uint32_t m = static_cast<uint32_t>(N * (rank + 1) / size) - first_row;

  // A's rows from a formula (every rank its own), B from rank 0.
  std::vector<double> A(m * N), B(N * N), C(m * N), reference(m * N);
  for (uint32_t i = 0; i < m; ++i)
    for (uint32_t j = 0; j < n; ++j) A[i * N + j] = std::sin(0.001 * (first_row + i) + 0.01 * j) + 0.5;
  if (rank == 0)
    for (size_t i = 0; i < N * N; ++i) B[i] = std::cos(0.0007 * static_cast<double>(i)) - 0.25;
  MPI_Bcast(B.data(), static_cast<int>(N * N), MPI_DOUBLE, 0, MPI_COMM_WORLD);

  // All-local reference and timing.
  std::vector<double> local_t;
  for (int rep = 0; rep < o.repeats; ++rep) {
    MPI_Barrier(MPI_COMM_WORLD);
    auto t0 = Clock::now();
    local_gemm(A.data(), B.data(), reference.data(), m, n);
    double s = std::chrono::duration<double>(Clock::now() - t0).count(), all = 0;
    MPI_Allreduce(&s, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    local_t.push_back(all);
  }

  // Tiles to offload: the first share of this rank's rows.
  uint32_t off_rows = std::min<uint32_t>(m, static_cast<uint32_t>(std::lround(o.share * m)));
  std::vector<Tile> tiles;
  for (uint32_t r0 = 0; r0 < off_rows; r0 += o.tile) {
    Tile t;
    t.first = r0;
    t.rows = std::min(o.tile, off_rows - r0);
    t.input.assign(kArgsDoubles + t.rows * N + N * N + t.rows * N, 0.0);
    struct {
      uint32_t m, n, k, pad;
      double alpha, beta;
    } args{t.rows, n, n, 0, 1.0, 0.0};
    static_assert(sizeof args == kArgsDoubles * sizeof(double));
    std::memcpy(t.input.data(), &args, sizeof args);
    std::memcpy(t.input.data() + kArgsDoubles, &A[t.first * N], sizeof(double) * t.rows * N);
    std::memcpy(t.input.data() + kArgsDoubles + t.rows * N, B.data(), sizeof(double) * N * N);
    tiles.push_back(std::move(t));
  }
  int most_tiles = static_cast<int>(tiles.size()), max_tiles = 0;
  MPI_Allreduce(&most_tiles, &max_tiles, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.functions = "dgemm_block";
  cfg.cores_per_rank = o.cores;
  cfg.slots = std::clamp((max_tiles + o.cores - 1) / o.cores, 1, 64);
  cfg.input_capacity = sizeof(double) * (kArgsDoubles + 2 * o.tile * N + N * N);
  cfg.output_capacity = std::max<uint64_t>(sizeof(double) * o.tile * N, 8);
  cfg.hot_timeout_us = o.hot_timeout_us;
  std::string library = o.library;
  if (library.empty() && !std::getenv("RFAAS_LIBRARY") && std::getenv("RFAAS_FUNCTIONS"))
    library = std::string(std::getenv("RFAAS_FUNCTIONS")) + "/librfaas_functions_blas.so";
  if (!o.broker.empty()) cfg.broker = o.broker.c_str();
  if (!library.empty()) cfg.library_path = library.c_str();
  if (max_tiles > 64 * o.cores) die("too many tiles for the leased slots: raise --tile or --cores");
  if (int e = rfaas_mpi_init(MPI_COMM_WORLD, &cfg)) {
    if (rank == 0) std::fprintf(stderr, "gemm: rfaas_mpi_init: %s (%s)\n", rfaas_strerror(e), rfaas_mpi_last_error());
    MPI_Finalize();
    return 1;
  }
  if (int e = rfaas_mpi_register(C.data(), C.size() * sizeof(double))) die(rfaas_strerror(e));
  for (auto& t : tiles)
    if (int e = rfaas_mpi_register(t.input.data(), t.input.size() * sizeof(double))) die(rfaas_strerror(e));

  std::vector<MPI_Request> reqs(tiles.size());
  std::vector<MPI_Status> statuses(tiles.size());
  std::vector<double> off_t;
  for (int rep = 0; rep < o.repeats; ++rep) {
    std::fill(C.begin(), C.end(), 0.0);
    MPI_Barrier(MPI_COMM_WORLD);
    auto t0 = Clock::now();
    for (size_t i = 0; i < tiles.size(); ++i) {
      Tile& t = tiles[i];
      int e = rfaas_ioffload("dgemm_block", t.input.data(), t.input.size() * sizeof(double), &C[t.first * N],
                             sizeof(double) * t.rows * N, &reqs[i]);
      if (e) die(rfaas_strerror(e));
    }
    local_gemm(&A[off_rows * N], B.data(), &C[off_rows * N], m - off_rows, n);
    MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), statuses.data());
    for (auto& st : statuses)
      if (st.MPI_TAG != RFAAS_OK) die(rfaas_strerror(st.MPI_TAG));
    double s = std::chrono::duration<double>(Clock::now() - t0).count(), all = 0;
    MPI_Allreduce(&s, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    off_t.push_back(all);
  }

  double diff = 0, scale = 0;
  for (size_t i = 0; i < C.size(); ++i) {
    diff = std::max(diff, std::fabs(C[i] - reference[i]));
    scale = std::max(scale, std::fabs(reference[i]));
  }
  double rel = scale > 0 ? diff / scale : diff, max_rel = 0;
  MPI_Allreduce(&rel, &max_rel, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  int have_tiles = tiles.empty() ? 0 : 1, all_tiles = 0;
  MPI_Allreduce(&have_tiles, &all_tiles, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  bool pass = max_rel <= 1e-12 && all_tiles == 1;

  // Overhead per call: a blocking offload of the first tile against the same tile here.
  double call_us = 0, compute_us = 0;
  if (rank == 0 && !tiles.empty()) {
    Tile& t = tiles[0];
    std::vector<double> remote, here;
    std::vector<double> scratch(t.rows * N);
    for (int i = 0; i < 20; ++i) {
      auto t0 = Clock::now();
      int e = rfaas_offload("dgemm_block", t.input.data(), t.input.size() * sizeof(double), &C[t.first * N],
                            sizeof(double) * t.rows * N, nullptr);
      auto t1 = Clock::now();
      if (e) die(rfaas_strerror(e));
      local_gemm(&A[t.first * N], B.data(), scratch.data(), t.rows, n);
      auto t2 = Clock::now();
      remote.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      here.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    call_us = median(remote);
    compute_us = median(here);
  }
  quiet_barrier();
  rfaas_mpi_stats st{};
  rfaas_mpi_get_stats(&st);
  if (rank == 0) {
    double flops = 2.0 * N * N * N;
    std::printf("gemm: %d ranks, C = A*B with N = %u, tiles of %u rows, offload share %.2f, %d leased core(s) per rank\n",
                size, n, o.tile, o.share, o.cores);
    std::printf("  all-local : %8.3f ms, %7.2f GFLOP/s (median of %d)\n", 1e3 * median(local_t),
                flops / median(local_t) * 1e-9, o.repeats);
    std::printf("  offloaded : %8.3f ms, %7.2f GFLOP/s (median of %d; %zu tiles of rank 0 on leased cores)\n",
                1e3 * median(off_t), flops / median(off_t) * 1e-9, o.repeats, tiles.size());
    std::printf("  offload overhead per call: %.1f us (rfaas_offload of a %ux%u tile: %.1f us, the same tile here: %.1f us)\n",
                call_us - compute_us, tiles.empty() ? 0 : tiles[0].rows, n, call_us, compute_us);
    std::printf("  transfers (rank 0): %llu offloads, inputs zero-copy %llu / copied %llu, results zero-copy %llu / "
                "copied %llu\n",
                static_cast<unsigned long long>(st.offloads), static_cast<unsigned long long>(st.zero_copy_inputs),
                static_cast<unsigned long long>(st.copied_inputs), static_cast<unsigned long long>(st.zero_copy_outputs),
                static_cast<unsigned long long>(st.copied_outputs));
    std::printf("  verification: %s (max |C - C_local| / max |C_local| = %.1e)\n", pass ? "PASS" : "FAIL", max_rel);
  }
  int fin = rfaas_mpi_finalize();
  MPI_Finalize();
  return pass && fin == 0 ? 0 : 1;
}
