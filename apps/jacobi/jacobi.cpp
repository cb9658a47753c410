// 2-D Jacobi solver for the Poisson problem -lap(u) = 1 on the unit square (u = 1 on the top
// edge, 0 on the others), 5-point stencil, rows of the grid split over MPI ranks with a halo
// exchange per iteration. Each rank offloads a share of its rows to its leased cores with
// rfaas_ioffload, overlapped with the halo exchange and its own rows, and checks that the
// result equals the all-local run: same iteration count, residual and grid within 1e-12.
//
//   mpirun -np 2 jacobi [--n 512] [--iterations 300] [--tolerance 1e-9] [--share 0.5] [--cores 1]
// The broker and the function library come from RFAAS_BROKER and RFAAS_LIBRARY (or
// RFAAS_FUNCTIONS/librfaas_functions_jacobi.so), or --broker / --library.
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

#include "jacobi_kernel.h"
#include "rfaas/rfaas_mpi.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  uint32_t n = 512;  // grid points per side, boundary included
  int iterations = 300;
  double tolerance = 1e-9;
  double share = 0.5;  // of each rank's rows, offloaded
  int cores = 1;  // leased cores per rank; the offloaded rows are split over them
  int64_t hot_timeout_us = 2000;  // executors busy-poll this long after a call
  std::string broker, library;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "jacobi: %s\n", what);
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
    else if (a == "--iterations") o.iterations = std::atoi(value());
    else if (a == "--tolerance") o.tolerance = std::atof(value());
    else if (a == "--share") o.share = std::atof(value());
    else if (a == "--cores") o.cores = std::atoi(value());
    else if (a == "--hot-timeout-us") o.hot_timeout_us = std::atoll(value());
    else if (a == "--broker") o.broker = value();
    else if (a == "--library") o.library = value();
    else die(("unknown option " + a + " (--n --iterations --tolerance --share --cores --hot-timeout-us --broker --library)").c_str());
  }
  if (o.n < 8 || o.iterations < 1 || o.share < 0 || o.share > 1 || o.cores < 1) die("bad option value");
  return o;
}

// One leased core's part of the rank's rows: local rows [first, first + rows), sent as
// [args | u rows first-1 .. first+rows | f rows] from a registered staging buffer; the result
// is written by the executor straight into the (registered) next grid.
struct Chunk {
  uint32_t first = 0, rows = 0;
  std::vector<double> input;  // 1 double of args, then (rows + 2) * n of u, then rows * n of f
};

struct Rank {
  int rank = 0, size = 1;
  uint32_t n = 0;
  uint32_t rows = 0;        // interior rows owned
  uint32_t global_first = 0;  // global index of local row 1
  std::vector<double> u, unew, f;  // (rows + 2) * n; f: rows * n, f[i] for local row i+1
  int up = MPI_PROC_NULL, down = MPI_PROC_NULL;
};

struct RunResult {
  int iterations = 0;
  double residual = 0;
  double seconds = 0;
};

void init_grid(Rank& r) {
  uint32_t n = r.n;
  double h = 1.0 / (n - 1);
  r.u.assign(static_cast<size_t>(r.rows + 2) * n, 0.0);
  if (r.rank == 0)
    for (uint32_t j = 0; j < n; ++j) r.u[j] = 1.0;  // global row 0: the top edge
  r.unew = r.u;
  r.f.assign(static_cast<size_t>(r.rows) * n, h * h);
}

// Halo-free rows are 2 .. rows-1: those are offloaded, from the middle of the block.
std::vector<Chunk> plan_chunks(const Rank& r, double share, int cores) {
  std::vector<Chunk> chunks;
  if (share <= 0 || r.rows < 3) return chunks;
  uint32_t k = std::min<uint32_t>(r.rows - 2, static_cast<uint32_t>(std::lround(share * r.rows)));
  if (k == 0) return chunks;
  uint32_t first = 2 + (r.rows - 2 - k) / 2;
  uint32_t parts = std::min<uint32_t>(static_cast<uint32_t>(cores), k);
  for (uint32_t p = 0; p < parts; ++p) {
    Chunk c;
    c.first = first + k * p / parts;
    c.rows = first + k * (p + 1) / parts - c.first;
    c.input.assign(1 + static_cast<size_t>(2 * c.rows + 2) * r.n, 0.0);
    uint32_t args[2] = {c.rows, r.n};
    std::memcpy(c.input.data(), args, sizeof args);
    std::memcpy(c.input.data() + 1 + static_cast<size_t>(c.rows + 2) * r.n, &r.f[(c.first - 1) * size_t{r.n}],
                sizeof(double) * c.rows * r.n);
    chunks.push_back(std::move(c));
  }
  return chunks;
}

bool offloaded(const std::vector<Chunk>& chunks, uint32_t row) {
  for (auto& c : chunks)
    if (row >= c.first && row < c.first + c.rows) return true;
  return false;
}

void local_rows(Rank& r, uint32_t first, uint32_t count) {
  if (count == 0) return;
  size_t n = r.n;
  jacobi_rows(&r.u[(first - 1) * n], &r.f[(first - 1) * n], &r.unew[first * n], count, r.n);
}

RunResult solve(Rank& r, const Options& o, std::vector<Chunk>& chunks) {
  init_grid(r);
  size_t n = r.n;
  if (!chunks.empty()) {
    for (auto* grid : {&r.u, &r.unew})
      if (int e = rfaas_mpi_register(grid->data(), grid->size() * sizeof(double)))
        die(rfaas_strerror(e));
    for (auto& c : chunks)
      if (int e = rfaas_mpi_register(c.input.data(), c.input.size() * sizeof(double))) die(rfaas_strerror(e));
  }
  std::vector<MPI_Request> reqs(4 + chunks.size());
  std::vector<MPI_Status> statuses(reqs.size());
  RunResult res;
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = Clock::now();
  for (int it = 0; it < o.iterations; ++it) {
    // Halo exchange: rows 1 and `rows` go out, rows 0 and rows+1 come in.
    MPI_Irecv(&r.u[0], r.n, MPI_DOUBLE, r.up, 1, MPI_COMM_WORLD, &reqs[0]);
    MPI_Irecv(&r.u[(r.rows + 1) * n], r.n, MPI_DOUBLE, r.down, 0, MPI_COMM_WORLD, &reqs[1]);
    MPI_Isend(&r.u[1 * n], r.n, MPI_DOUBLE, r.up, 0, MPI_COMM_WORLD, &reqs[2]);
    MPI_Isend(&r.u[r.rows * n], r.n, MPI_DOUBLE, r.down, 1, MPI_COMM_WORLD, &reqs[3]);
    for (size_t c = 0; c < chunks.size(); ++c) {
      Chunk& ch = chunks[c];
      std::memcpy(ch.input.data() + 1, &r.u[(ch.first - 1) * n], sizeof(double) * (ch.rows + 2) * n);
      int e = rfaas_ioffload("jacobi_sweep", ch.input.data(), ch.input.size() * sizeof(double), &r.unew[ch.first * n],
                             sizeof(double) * ch.rows * n, &reqs[4 + c]);
      if (e) die(rfaas_strerror(e));
    }
    // Own rows that need no halo, around the offloaded block.
    for (uint32_t row = 2; row + 1 <= r.rows;) {
      if (offloaded(chunks, row)) {
        ++row;
        continue;
      }
      uint32_t end = row;
      while (end + 1 <= r.rows && !offloaded(chunks, end)) ++end;
      local_rows(r, row, end - row);
      row = end;
    }
    MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), statuses.data());
    for (size_t c = 0; c < chunks.size(); ++c) {
      int count = 0;
      MPI_Get_count(&statuses[4 + c], MPI_BYTE, &count);
      if (statuses[4 + c].MPI_TAG != RFAAS_OK) die(rfaas_strerror(statuses[4 + c].MPI_TAG));
      if (static_cast<size_t>(count) != sizeof(double) * chunks[c].rows * n) die("offload returned a short result");
    }
    local_rows(r, 1, 1);
    if (r.rows > 1) local_rows(r, r.rows, 1);

    double local = 0;
    for (size_t i = n; i < (r.rows + 1) * n; ++i) {
      double d = r.unew[i] - r.u[i];
      local += d * d;
    }
    double global = 0;
    MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    std::swap(r.u, r.unew);
    res.iterations = it + 1;
    res.residual = std::sqrt(global);
    if (res.residual < o.tolerance) break;
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  MPI_Allreduce(&seconds, &res.seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return res;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
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
  Rank r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &r.size);
  r.n = o.n;
  uint32_t interior = o.n - 2;
  if (interior < static_cast<uint32_t>(r.size)) die("grid too small for this many ranks");
  r.global_first = 1 + interior * r.rank / r.size;
  r.rows = 1 + interior * (r.rank + 1) / r.size - r.global_first;
  r.up = r.rank > 0 ? r.rank - 1 : MPI_PROC_NULL;
  r.down = r.rank + 1 < r.size ? r.rank + 1 : MPI_PROC_NULL;

  // The all-local reference run.
  std::vector<Chunk> none;
  RunResult local = solve(r, o, none);
  std::vector<double> reference = r.u;

  // The same with a share of the rows on leased cores.
  std::vector<Chunk> chunks = plan_chunks(r, o.share, o.cores);
  uint64_t in_cap = 0, out_cap = 8;
  for (auto& c : chunks) {
    in_cap = std::max<uint64_t>(in_cap, c.input.size() * sizeof(double));
    out_cap = std::max<uint64_t>(out_cap, sizeof(double) * c.rows * o.n);
  }
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.functions = "jacobi_sweep";
  cfg.cores_per_rank = o.cores;
  cfg.slots = 2;
  cfg.input_capacity = std::max<uint64_t>(in_cap, 4096);
  cfg.output_capacity = out_cap;
  cfg.hot_timeout_us = o.hot_timeout_us;
  std::string library = o.library;
  if (library.empty() && !std::getenv("RFAAS_LIBRARY") && std::getenv("RFAAS_FUNCTIONS"))
    library = std::string(std::getenv("RFAAS_FUNCTIONS")) + "/librfaas_functions_jacobi.so";
  if (!o.broker.empty()) cfg.broker = o.broker.c_str();
  if (!library.empty()) cfg.library_path = library.c_str();
  if (int e = rfaas_mpi_init(MPI_COMM_WORLD, &cfg)) {
    if (r.rank == 0) std::fprintf(stderr, "jacobi: rfaas_mpi_init: %s (%s)\n", rfaas_strerror(e), rfaas_mpi_last_error());
    MPI_Finalize();
    return 1;
  }
  RunResult off = solve(r, o, chunks);

  double diff = 0;
  for (size_t i = 0; i < r.u.size(); ++i) diff = std::max(diff, std::fabs(r.u[i] - reference[i]));
  double max_diff = 0;
  MPI_Allreduce(&diff, &max_diff, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  bool pass = off.iterations == local.iterations && std::fabs(off.residual - local.residual) <= 1e-12 &&
              max_diff <= 1e-12 && !chunks.empty();

  // Offload overhead per call: a blocking offload of the first chunk against the same rows
  // computed here.
  double call_us = 0, compute_us = 0;
  if (r.rank == 0 && !chunks.empty()) {
    Chunk& c = chunks[0];
    std::vector<double> remote_t, local_t;
    for (int i = 0; i < 30; ++i) {
      auto t0 = Clock::now();
      size_t got = 0;
      int e = rfaas_offload("jacobi_sweep", c.input.data(), c.input.size() * sizeof(double),
                            &r.unew[c.first * size_t{r.n}], sizeof(double) * c.rows * r.n, &got);
      auto t1 = Clock::now();
      if (e) die(rfaas_strerror(e));
      jacobi_rows(c.input.data() + 1, c.input.data() + 1 + static_cast<size_t>(c.rows + 2) * r.n,
                  &r.u[c.first * size_t{r.n}], c.rows, r.n);
      auto t2 = Clock::now();
      remote_t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      local_t.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    call_us = median(remote_t);
    compute_us = median(local_t);
  }
  quiet_barrier();
  rfaas_mpi_stats st{};
  rfaas_mpi_get_stats(&st);
  uint32_t offloaded_rows = 0;
  for (auto& c : chunks) offloaded_rows += c.rows;

  if (r.rank == 0) {
    std::printf("jacobi: %d ranks, grid %ux%u, at most %d iterations, tolerance %.1e, offload share %.2f, "
                "%d leased core(s) per rank\n",
                r.size, o.n, o.n, o.iterations, o.tolerance, o.share, o.cores);
    std::printf("  all-local : %4d iterations, residual %.6e, %9.3f ms/iteration\n", local.iterations, local.residual,
                1e3 * local.seconds / local.iterations);
    std::printf("  offloaded : %4d iterations, residual %.6e, %9.3f ms/iteration (%u of %u rows of rank 0 on "
                "leased cores)\n",
                off.iterations, off.residual, 1e3 * off.seconds / off.iterations, offloaded_rows, r.rows);
    std::printf("  offload overhead per call: %.1f us (rfaas_offload of %u rows: %.1f us, the same rows here: %.1f us)\n",
                call_us - compute_us, chunks.empty() ? 0 : chunks[0].rows, call_us, compute_us);
    std::printf("  transfers (rank 0): %llu offloads, inputs zero-copy %llu / copied %llu, results zero-copy %llu / "
                "copied %llu\n",
                static_cast<unsigned long long>(st.offloads), static_cast<unsigned long long>(st.zero_copy_inputs),
                static_cast<unsigned long long>(st.copied_inputs), static_cast<unsigned long long>(st.zero_copy_outputs),
                static_cast<unsigned long long>(st.copied_outputs));
    std::printf("  verification: %s (iterations %d vs %d, |residual difference| %.1e, max |grid difference| %.1e)\n",
                pass ? "PASS" : "FAIL", off.iterations, local.iterations, std::fabs(off.residual - local.residual),
                max_diff);
  }
  int fin = rfaas_mpi_finalize();
  if (fin && r.rank == 0) std::fprintf(stderr, "jacobi: rfaas_mpi_finalize: %s\n", rfaas_strerror(fin));
  MPI_Finalize();
  return pass && fin == 0 ? 0 : 1;
}
