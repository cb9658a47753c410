// 2-D Jacobi solver for the Poisson problem -lap(u) = 1 on the unit square (u = 1 on the top
// edge, 0 on the others), 5-point stencil, rows of the grid split over MPI ranks with a halo
// exchange per iteration.
//
// With rfaas (--mode rfaas, the default), each rank keeps a block of its rows resident on its
// leased core(s): the block, a second copy of it and its right-hand side are put once into a
// resident region, and every iteration only the block's boundary rows travel: its two halo rows
// in (the input of jacobi_resident), its new edge rows and its share of the residual back,
// overlapped with the rank's own rows and halo exchange in one MPI_Waitall. It checks that the
// result equals the all-local run: same iteration count, the same grid (bit for bit: the same
// kernel), the residual within 1e-10 relative (its sum is added up in another order).
// --mode local runs the all-local solver alone (what `mpirun -np N` without rfaas gives).
//
//   mpirun -np 1 jacobi [--n 512] [--iterations 300] [--tolerance 1e-9] [--share 0.5] [--cores 1]
//                       [--repeats 1] [--mode rfaas|local] [--json-out FILE]
// The broker and the function library come from RFAAS_BROKER and RFAAS_LIBRARY (or
// RFAAS_FUNCTIONS/librfaas_functions_jacobi.so), or --broker / --library.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "app_memory.hpp"
#include "app_support.hpp"
#include "jacobi_kernel.h"
#include "rfaas/rfaas_mpi.h"

namespace {

using Clock = std::chrono::steady_clock;
using rfaas_apps::append_json;
using rfaas_apps::median;
using rfaas_apps::quiet_barrier;

struct Options {
  uint32_t n = 512;  // grid points per side, boundary included
  int iterations = 300;
  double tolerance = 1e-9;
  double share = 0.5;  // of each rank's rows, resident on leased cores
  int cores = 1;  // leased cores per rank; the resident rows are split over them
  int64_t hot_timeout_us = -1;  // executors busy-poll this long after a call; -1: always (a dedicated core)
  int repeats = 1;  // solves of each kind; medians are printed
  bool rfaas = true;
  std::string json_out;  // appends one JSON line of the figures here
  std::string broker, library;
};

[[noreturn]] void die(const char* what) { rfaas_apps::die("jacobi", what); }

void check(int code, const char* what) {
  if (code == RFAAS_OK) return;
  std::string m = std::string(what) + ": " + rfaas_strerror(code) + " (" + rfaas_mpi_last_error() + ")";
  die(m.c_str());
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
    else if (a == "--repeats") o.repeats = std::atoi(value());
    else if (a == "--mode") {
      std::string m = value();
      if (m != "rfaas" && m != "local") die("--mode is rfaas or local");
      o.rfaas = m == "rfaas";
    } else if (a == "--json-out") o.json_out = value();
    else if (a == "--broker") o.broker = value();
    else if (a == "--library") o.library = value();
    else
      die(("unknown option " + a +
           " (--n --iterations --tolerance --share --cores --hot-timeout-us --repeats --mode --json-out --broker --library)")
              .c_str());
  }
  if (o.n < 8 || o.iterations < 1 || o.share < 0 || o.share > 1 || o.cores < 1 || o.repeats < 1)
    die("bad option value");
  return o;
}

struct Rank {
  int rank = 0, size = 1;
  uint32_t n = 0;
  uint32_t rows = 0;          // interior rows owned
  uint32_t global_first = 0;  // global index of local row 1
  rfaas_apps::Array<double> u, unew, f;  // (rows + 2) * n; f: rows * n, f[i] for local row i+1
  int up = MPI_PROC_NULL, down = MPI_PROC_NULL;
};

// A block of the rank's rows kept on one leased core: local rows [first, first + rows), in
// resident region `region` as u0 | u1 | f (see functions/jacobi.c). Per iteration `input` carries
// [args | halo above | halo below] and `output` gets [residual part | new first row | new last row].
struct Block {
  uint32_t first = 0, rows = 0;
  uint32_t region = 0;
  std::vector<double> input, output;
};

struct RunResult {
  int iterations = 0;
  double residual = 0;
  double seconds = 0;      // the whole solve
  double put_seconds = 0;  // of which: putting the blocks on the leased cores
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

// Rows 2 .. rows-1 need no halo from another rank: the blocks come from the middle of those.
std::vector<Block> plan_blocks(const Rank& r, double share, int cores) {
  std::vector<Block> blocks;
  if (share <= 0 || r.rows < 3) return blocks;
  uint32_t k = std::min<uint32_t>(r.rows - 2, static_cast<uint32_t>(std::lround(share * r.rows)));
  if (k == 0) return blocks;
  uint32_t first = 2 + (r.rows - 2 - k) / 2;
  uint32_t parts = std::min<uint32_t>(static_cast<uint32_t>(cores), k);
  for (uint32_t p = 0; p < parts; ++p) {
    Block b;
    b.first = first + k * p / parts;
    b.rows = first + k * (p + 1) / parts - b.first;
    b.input.assign(2 + 2 * size_t{r.n}, 0.0);
    b.output.assign(1 + 2 * size_t{r.n}, 0.0);
    blocks.push_back(std::move(b));
  }
  return blocks;
}

size_t region_bytes(const Block& b, uint32_t n) {
  return sizeof(double) * (2 * size_t{b.rows + 2} * n + size_t{b.rows} * n);
}

bool resident(const std::vector<Block>& blocks, uint32_t row) {
  for (auto& b : blocks)
    if (row >= b.first && row < b.first + b.rows) return true;
  return false;
}

// Sweeps local rows [first, first + count) and returns their part of the residual (sum of the
// squared updates), computed right after them while the rows are still in cache.
double local_rows(Rank& r, uint32_t first, uint32_t count) {
  if (count == 0) return 0;
  size_t n = r.n;
  jacobi_rows(&r.u[(first - 1) * n], &r.f[(first - 1) * n], &r.unew[first * n], count, r.n);
  double sum = 0;
  for (size_t i = first * n; i < (first + count) * n; ++i) {
    double d = r.unew[i] - r.u[i];
    sum += d * d;
  }
  return sum;
}

void set_args(Block& b, uint32_t n, uint32_t parity) {
  uint32_t args[4] = {b.region, b.rows, n, parity};
  std::memcpy(b.input.data(), args, sizeof args);
}

RunResult solve(Rank& r, const Options& o, std::vector<Block>& blocks) {
  init_grid(r);
  const size_t n = r.n;
  RunResult res;
  std::vector<MPI_Request> reqs(4 + blocks.size());
  std::vector<MPI_Status> statuses(reqs.size());
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = Clock::now();
  // The blocks go to their leased cores once: u (with its halo rows) into both grids, then f.
  for (auto& b : blocks) {
    const size_t grid = size_t{b.rows + 2} * n;
    std::vector<MPI_Request> puts(3);
    check(rfaas_iput(b.region, 0, &r.u[(b.first - 1) * n], sizeof(double) * grid, &puts[0]), "rfaas_iput");
    check(rfaas_iput(b.region, sizeof(double) * grid, &r.u[(b.first - 1) * n], sizeof(double) * grid, &puts[1]),
          "rfaas_iput");
    check(rfaas_iput(b.region, 2 * sizeof(double) * grid, &r.f[(b.first - 1) * n], sizeof(double) * b.rows * n,
                     &puts[2]),
          "rfaas_iput");
    std::vector<MPI_Status> st(3);
    MPI_Waitall(3, puts.data(), st.data());
    for (auto& s : st)
      if (s.MPI_TAG != RFAAS_OK) die(rfaas_strerror(s.MPI_TAG));
  }
  res.put_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  uint32_t parity = 0;
  for (int it = 0; it < o.iterations; ++it) {
    // Halo exchange: rows 1 and `rows` go out, rows 0 and rows+1 come in.
    MPI_Irecv(&r.u[0], r.n, MPI_DOUBLE, r.up, 1, MPI_COMM_WORLD, &reqs[0]);
    MPI_Irecv(&r.u[(r.rows + 1) * n], r.n, MPI_DOUBLE, r.down, 0, MPI_COMM_WORLD, &reqs[1]);
    MPI_Isend(&r.u[1 * n], r.n, MPI_DOUBLE, r.up, 0, MPI_COMM_WORLD, &reqs[2]);
    MPI_Isend(&r.u[r.rows * n], r.n, MPI_DOUBLE, r.down, 1, MPI_COMM_WORLD, &reqs[3]);
    // Each block gets its two halo rows (the rank's own rows beside it) and sweeps where it is.
    for (size_t i = 0; i < blocks.size(); ++i) {
      Block& b = blocks[i];
      set_args(b, r.n, parity);
      std::memcpy(b.input.data() + 2, &r.u[(b.first - 1) * n], sizeof(double) * n);
      std::memcpy(b.input.data() + 2 + n, &r.u[(b.first + b.rows) * n], sizeof(double) * n);
      check(rfaas_ioffload("jacobi_resident", b.input.data(), b.input.size() * sizeof(double), b.output.data(),
                           b.output.size() * sizeof(double), &reqs[4 + i]),
            "rfaas_ioffload");
    }
    // Own rows that need no halo, around the resident blocks, while those sweep where they are.
    double local = 0;
    for (uint32_t row = 2; row + 1 <= r.rows;) {
      if (resident(blocks, row)) {
        ++row;
        continue;
      }
      uint32_t end = row;
      while (end + 1 <= r.rows && !resident(blocks, end)) ++end;
      local += local_rows(r, row, end - row);
      row = end;
    }
    MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), statuses.data());
    for (size_t i = 0; i < blocks.size(); ++i) {
      Block& b = blocks[i];
      int count = 0;
      MPI_Get_count(&statuses[4 + i], MPI_BYTE, &count);
      if (statuses[4 + i].MPI_TAG != RFAAS_OK) die(rfaas_strerror(statuses[4 + i].MPI_TAG));
      if (static_cast<size_t>(count) != b.output.size() * sizeof(double)) die("offload returned a short result");
      local += b.output[0];
      std::memcpy(&r.unew[b.first * n], b.output.data() + 1, sizeof(double) * n);
      std::memcpy(&r.unew[(b.first + b.rows - 1) * n], b.output.data() + 1 + n, sizeof(double) * n);
    }
    local += local_rows(r, 1, 1);
    if (r.rows > 1) local += local_rows(r, r.rows, 1);
    double global = 0;
    MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    std::swap(r.u, r.unew);
    parity ^= 1;
    res.iterations = it + 1;
    res.residual = std::sqrt(global);
    if (res.residual < o.tolerance) break;
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  MPI_Allreduce(&seconds, &res.seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  // The blocks' final rows come back for the check (not timed: the solve is done).
  for (auto& b : blocks) {
    const size_t grid = size_t{b.rows + 2} * n;
    check(rfaas_get(b.region, sizeof(double) * (parity * grid + n), &r.u[b.first * n], sizeof(double) * b.rows * n),
          "rfaas_get");
  }
  return res;
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
  init_grid(r);  // sized once: the registrations below stay valid across solves

  std::vector<Block> none;
  if (!o.rfaas) {
    // What the job gets from its own ranks alone.
    std::vector<double> t;
    RunResult local;
    for (int rep = 0; rep < o.repeats; ++rep) {
      local = solve(r, o, none);
      t.push_back(local.seconds);
    }
    double s = median(t);
    if (r.rank == 0) {
      if (!o.json_out.empty())
        append_json(o.json_out,
                    "{\"app\":\"jacobi\",\"mode\":\"local\",\"ranks\":%d,\"n\":%u,\"iterations\":%d,\"residual\":%.9e,"
                    "\"local_s\":%.6f,\"ms_per_iteration\":%.4f,\"repeats\":%d,\"pages\":\"%s\"}\n",
                    r.size, o.n, local.iterations, local.residual, s, 1e3 * s / local.iterations, o.repeats,
                    rfaas_apps::page_mode().c_str());
      std::printf("jacobi: %d ranks, grid %ux%u, no rfaas: %4d iterations, residual %.6e, %9.3f ms/iteration "
                    "(median of %d)\n",
                    r.size, o.n, o.n, local.iterations, local.residual, 1e3 * s / local.iterations, o.repeats);
    }
    MPI_Finalize();
    return 0;
  }

  std::vector<Block> blocks = plan_blocks(r, o.share, o.cores);
  uint64_t regions = 0;
  for (auto& b : blocks) regions += region_bytes(b, o.n);
  // Everything the job pays before its first solve, measured: lease and deploy (rfaas_mpi_init),
  // the resident regions and the registrations. The solves below include their puts.
  MPI_Barrier(MPI_COMM_WORLD);
  const auto setup_start = Clock::now();
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.functions = "jacobi_resident";
  cfg.cores_per_rank = o.cores;
  cfg.slots = 2;
  cfg.input_capacity = std::max<uint64_t>(sizeof(double) * (2 + 2 * size_t{o.n}), 64 * 1024);
  cfg.output_capacity = sizeof(double) * (1 + 2 * size_t{o.n});
  cfg.hot_timeout_us = o.hot_timeout_us;
  cfg.region_bytes = regions;
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
  const auto init_end = Clock::now();
  for (auto& b : blocks) check(rfaas_mpi_create_region(region_bytes(b, o.n), &b.region), "rfaas_mpi_create_region");
  if (!blocks.empty()) {
    for (auto* grid : {&r.u, &r.unew, &r.f}) check(rfaas_mpi_register(grid->data(), grid->size() * sizeof(double)), "register");
    for (auto& b : blocks) {
      check(rfaas_mpi_register(b.input.data(), b.input.size() * sizeof(double)), "register");
      check(rfaas_mpi_register(b.output.data(), b.output.size() * sizeof(double)), "register");
    }
  }
  // The slowest rank's set-up and its parts, each measured: rfaas_mpi_init (lease and deploy),
  // then the regions and registrations.
  double setup_s = 0, init_s = 0, regions_s = 0;
  {
    const auto now = Clock::now();
    const double mine[3] = {std::chrono::duration<double>(now - setup_start).count(),
                            std::chrono::duration<double>(init_end - setup_start).count(),
                            std::chrono::duration<double>(now - init_end).count()};
    double worst[3] = {0, 0, 0};
    MPI_Allreduce(mine, worst, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    setup_s = worst[0];
    init_s = worst[1];
    regions_s = worst[2];
  }

  // The all-local reference and the run with resident blocks, alternating.
  std::vector<double> local_t, off_t, put_t;
  RunResult local, off;
  rfaas_apps::Array<double> reference;
  bool same = true;
  double max_diff = 0;
  for (int rep = 0; rep < o.repeats; ++rep) {
    local = solve(r, o, none);
    local_t.push_back(local.seconds);
    reference = r.u;
    off = solve(r, o, blocks);
    off_t.push_back(off.seconds);
    put_t.push_back(off.put_seconds);
    double diff = 0;
    for (size_t i = 0; i < r.u.size(); ++i) diff = std::max(diff, std::fabs(r.u[i] - reference[i]));
    double rep_diff = 0;
    MPI_Allreduce(&diff, &rep_diff, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    max_diff = std::max(max_diff, rep_diff);
    same = same && off.iterations == local.iterations && std::fabs(off.residual - local.residual) <= 1e-10 * local.residual;
  }
  bool pass = same && max_diff == 0 && !blocks.empty();

  // One offload call against the same block computed here: what the call costs beyond the sweep.
  // The leased core's own time for these calls (rfaas_mpi_usage before and after them) is the
  // sweep as it ran there: measured, not the rank's time subtracted.
  double call_us = 0, call_mean_us = 0, compute_us = 0, executor_us = 0;
  uint64_t executor_calls = 0;
  if (r.rank == 0 && !blocks.empty()) {
    Block& b = blocks[0];
    const size_t n = r.n;
    std::vector<double> remote_t, here_t;
    rfaas_apps::Array<double> scratch(size_t{b.rows} * n);
    rfaas_usage before{0, 0, 0}, after{0, 0, 0};
    check(rfaas_mpi_usage(&before), "rfaas_mpi_usage");
    double executor_ns = 0;
    for (int i = 0; i < 30; ++i) {
      set_args(b, r.n, static_cast<uint32_t>(i & 1));
      auto t0 = Clock::now();
      size_t got = 0;
      check(rfaas_offload("jacobi_resident", b.input.data(), b.input.size() * sizeof(double), b.output.data(),
                          b.output.size() * sizeof(double), &got),
            "rfaas_offload");
      auto t1 = Clock::now();
      jacobi_rows(&r.u[(b.first - 1) * n], &r.f[(b.first - 1) * n], scratch.data(), b.rows, r.n);
      double sum = 0;
      for (size_t k = 0; k < scratch.size(); ++k) {
        double d = scratch[k] - r.u[b.first * n + k];
        sum += d * d;
      }
      scratch[0] += sum * 0;  // the residual part, as the function computes it
      auto t2 = Clock::now();
      check(rfaas_mpi_usage(&after), "rfaas_mpi_usage");  // outside both timings
      executor_ns += static_cast<double>(after.compute_ns - before.compute_ns);
      executor_calls += after.invocations - before.invocations;
      before = after;
      remote_t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      here_t.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    call_us = median(remote_t);
    for (double t : remote_t) call_mean_us += t / remote_t.size();
    compute_us = median(here_t);
    executor_us = executor_calls ? 1e-3 * executor_ns / executor_calls : 0;
  }
  quiet_barrier();
  rfaas_mpi_stats st{};
  rfaas_mpi_get_stats(&st);
  int fin = rfaas_mpi_finalize();
  if (fin && r.rank == 0) std::fprintf(stderr, "jacobi: rfaas_mpi_finalize: %s\n", rfaas_strerror(fin));
  uint32_t resident_rows = 0;
  for (auto& b : blocks) resident_rows += b.rows;
  const double ls = median(local_t), rs = median(off_t), ps = median(put_t);
  const double e2e = setup_s + rs;  // one solve as a job would run it: set-up, put and iterations
  const size_t boundary_bytes = sizeof(double) * (2 + 2 * size_t{r.n} + 1 + 2 * size_t{r.n});

  if (r.rank == 0 && !o.json_out.empty()) {
    append_json(o.json_out,
                    "{\"app\":\"jacobi\",\"mode\":\"rfaas\",\"ranks\":%d,\"cores_per_rank\":%d,\"n\":%u,\"iterations\":%d,"
                    "\"residual\":%.9e,\"local_s\":%.6f,\"rfaas_s\":%.6f,\"put_s\":%.6f,\"setup_s\":%.6f,"
                    "\"init_s\":%.6f,\"regions_s\":%.6f,\"e2e_s\":%.6f,\"call_us\":%.2f,\"call_mean_us\":%.2f,\"compute_us\":%.2f,\"executor_compute_us\":%.2f,\"executor_calls\":%llu,"
                    "\"transfer_bytes_per_call\":%zu,"
                    "\"resident_rows\":%u,\"rows\":%u,\"repeats\":%d,\"pages\":\"%s\",\"pass\":%s}\n",
                    r.size, o.cores, o.n, off.iterations, off.residual, ls, rs, ps, setup_s, init_s, regions_s, e2e, call_us, call_mean_us, compute_us,
                    executor_us, static_cast<unsigned long long>(executor_calls), boundary_bytes, resident_rows, r.rows, o.repeats, rfaas_apps::page_mode().c_str(),
                    pass ? "true" : "false");
  }
  if (r.rank == 0) {
    std::printf("jacobi: %d rank(s), grid %ux%u, at most %d iterations, tolerance %.1e, resident share %.2f, "
                "%d leased core(s) per rank\n",
                r.size, o.n, o.n, o.iterations, o.tolerance, o.share, o.cores);
    std::printf("  memory    : %s\n", rfaas_apps::page_treatment().c_str());
    std::printf("  all-local : %4d iterations, residual %.6e, %9.3f ms/iteration (median of %d)\n", local.iterations,
                local.residual, 1e3 * ls / local.iterations, o.repeats);
    std::printf("  rfaas     : %4d iterations, residual %.6e, %9.3f ms/iteration (%u of %u rows of rank 0 resident "
                "on leased cores; their first put: %.2f ms)\n",
                off.iterations, off.residual, 1e3 * rs / off.iterations, resident_rows, r.rows, 1e3 * ps);
    std::printf("  end to end: %9.3f ms/iteration for one solve with everything it pays: set-up %.1f ms (lease and "
                "deploy %.1f, regions and registration %.1f), the put, the iterations\n",
                1e3 * e2e / off.iterations, 1e3 * setup_s, 1e3 * init_s, 1e3 * regions_s);
    std::printf("  offload call: %.1f us round trip (median; mean %.1f) for a %u-row block sweep; the sweep itself "
                "%.1f us on the leased core (its own time for these %llu calls, measured there), %.1f us here; "
                "%zu bytes travel per call\n",
                call_us, call_mean_us, blocks.empty() ? 0 : blocks[0].rows, executor_us,
                static_cast<unsigned long long>(executor_calls), compute_us, boundary_bytes);
    std::printf("  transfers (rank 0): %llu offloads, %llu puts (%.1f MiB), inputs zero-copy %llu / copied %llu\n",
                static_cast<unsigned long long>(st.offloads), static_cast<unsigned long long>(st.puts),
                static_cast<double>(st.put_bytes) / (1 << 20), static_cast<unsigned long long>(st.zero_copy_inputs),
                static_cast<unsigned long long>(st.copied_inputs));
    std::printf("  verification: %s (iterations %d vs %d, |residual difference| %.1e, max |grid difference| %.1e)\n",
                pass ? "PASS" : "FAIL", off.iterations, local.iterations, std::fabs(off.residual - local.residual),
                max_diff);
  }
  MPI_Finalize();
  return pass && fin == 0 ? 0 : 1;
}
