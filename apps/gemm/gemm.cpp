// Distributed DGEMM, C = A * B (N x N, row-major): rows of A and C split over MPI ranks, B
// broadcast. With rfaas (--mode rfaas, the default) each rank puts B once into a resident region
// on its leased core(s), then offloads a share of its rows in tiles (function dgemm_resident of
// the blas library): each tile sends only its rows of A and gets its rows of C, while the rank
// multiplies the rest itself with OpenBLAS; it checks its C against a local cblas_dgemm of all
// its rows. --mode local runs the all-local product alone (what `mpirun -np N` without rfaas
// gives).
//
//   mpirun -np 1 gemm [--n 512] [--tile 0 (auto)] [--share 0.5|auto] [--cores 1] [--repeats 5]
//                     [--slabs 0 (auto)] [--slots 0 (one per tile)] [--mode rfaas|local] [--json-out FILE]
// The broker and the library come from RFAAS_BROKER and RFAAS_LIBRARY (or
// RFAAS_FUNCTIONS/librfaas_functions_blas.so), or --broker / --library.
#include <cblas.h>
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
#include "rfaas/rfaas_mpi.h"

namespace {

using Clock = std::chrono::steady_clock;
using rfaas_apps::append_json;
using rfaas_apps::median;
using rfaas_apps::quiet_barrier;

struct Options {
  uint32_t n = 512;
  uint32_t tile = 0;  // rows of C per offload; 0: as few tiles as the result size limit allows
  double share = 0.5;
  bool auto_share = false;  // --share auto: balance by measured rates, at most 0.5
  int cores = 1;
  int64_t hot_timeout_us = -1;  // executors busy-poll this long after a call; -1: always (a dedicated core)
  int repeats = 5;
  uint32_t slabs = 0;  // the rank's own rows in this many pieces, MPI progress between; 0: auto
  int slots = 0;       // invocation slots per leased core; 0: one per tile (the queue never fills)
  bool rfaas = true;
  std::string json_out;  // appends one JSON line of the figures here
  std::string broker, library;
};

[[noreturn]] void die(const char* what) { rfaas_apps::die("gemm", what); }

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
    else if (a == "--share") {
      std::string v = value();
      o.auto_share = v == "auto";
      o.share = o.auto_share ? 0.5 : std::atof(v.c_str());
    }
    else if (a == "--cores") o.cores = std::atoi(value());
    else if (a == "--hot-timeout-us") o.hot_timeout_us = std::atoll(value());
    else if (a == "--repeats") o.repeats = std::atoi(value());
    else if (a == "--slabs") o.slabs = static_cast<uint32_t>(std::atoi(value()));
    else if (a == "--slots") o.slots = std::atoi(value());
    else if (a == "--mode") {
      std::string m = value();
      if (m != "rfaas" && m != "local") die("--mode is rfaas or local");
      o.rfaas = m == "rfaas";
    } else if (a == "--json-out") o.json_out = value();
    else if (a == "--broker") o.broker = value();
    else if (a == "--library") o.library = value();
    else die(("unknown option " + a + " (--n --tile --share --cores --hot-timeout-us --repeats --slabs --slots --mode --json-out --broker --library)").c_str());
  }
  if (o.n < 2 || o.share < 0 || o.share > 1 || o.cores < 1 || o.repeats < 1 || o.slots < 0 || o.slots > 64)
    die("bad option value");
  return o;
}

// dgemm_resident's input: struct { uint32 region, m, n, k; } = 2 doubles, then the tile's rows of A.
constexpr size_t kArgsDoubles = 2;

struct Tile {
  uint32_t first = 0, rows = 0;  // rows of this rank's C
  rfaas_apps::Array<double> input;  // args | A rows
};

void check(int code, const char* what) {
  if (code == RFAAS_OK) return;
  std::string m = std::string(what) + ": " + rfaas_strerror(code) + " (" + rfaas_mpi_last_error() + ")";
  die(m.c_str());
}


void local_gemm(const double* A, const double* B, double* C, uint32_t rows, uint32_t n) {
  if (rows)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(n),
                static_cast<int>(n), 1.0, A, static_cast<int>(n), B, static_cast<int>(n), 0.0, C, static_cast<int>(n));
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
  rfaas_apps::Array<double> A(m * N), B(N * N), C(m * N), reference(m * N);
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

  const double flops = 2.0 * N * N * N;
  if (!o.rfaas) {
    if (rank == 0) {
      double t = median(local_t);
      if (!o.json_out.empty())
        append_json(o.json_out,
                    "{\"app\":\"gemm\",\"mode\":\"local\",\"ranks\":%d,\"n\":%u,\"local_s\":%.6f,\"gflops\":%.2f,"
                    "\"repeats\":%d,\"pages\":\"%s\"}\n",
                    size, n, t, flops / t * 1e-9, o.repeats, rfaas_apps::page_mode().c_str());
      std::printf("gemm: %d ranks, N = %u, no rfaas: %8.3f ms, %7.2f GFLOP/s (median of %d)\n", size, n, 1e3 * t,
                    flops / t * 1e-9, o.repeats);
    }
    MPI_Finalize();
    return 0;
  }

  // Everything the job pays before its first product, measured: lease and deploy
  // (rfaas_mpi_init), the region, the registrations, B's put and the --share auto calibration.
  MPI_Barrier(MPI_COMM_WORLD);
  const auto setup_start = Clock::now();
  // Tiles to offload: the first share of this rank's rows.
  uint32_t off_rows = std::min<uint32_t>(m, static_cast<uint32_t>(std::lround(o.share * m)));
  if (o.tile == 0) {
    // Few large tiles compute fastest; a result is at most 8 MiB - 1; at least one per leased core.
    const uint64_t max_rows = std::max<uint64_t>(((1ull << 23) - 1) / (sizeof(double) * N), 1);
    uint64_t count = std::max<uint64_t>((off_rows + max_rows - 1) / max_rows, 1);
    count = (count + o.cores - 1) / o.cores * o.cores;
    o.tile = static_cast<uint32_t>(std::max<uint64_t>((off_rows + count - 1) / count, 1));
  }
  std::vector<Tile> tiles;
  auto make_tiles = [&] {
    tiles.clear();
    for (uint32_t r0 = 0; r0 < off_rows; r0 += o.tile) {
      Tile t;
      t.first = r0;
      t.rows = std::min(o.tile, off_rows - r0);
      t.input.assign(kArgsDoubles + t.rows * N, 0.0);
      std::memcpy(t.input.data() + kArgsDoubles, &A[t.first * N], sizeof(double) * t.rows * N);
      tiles.push_back(std::move(t));
    }
  };
  make_tiles();

  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.functions = "dgemm_resident";
  cfg.cores_per_rank = o.cores;
  // Every tile in flight at once where the slots allow: a queued tile is posted only when this
  // rank next enters MPI (after its own share), so it would wait for that.
  const int per_core = (static_cast<int>(tiles.size()) + o.cores - 1) / o.cores;
  // --slots fewer than that: the rest wait in the submission queue (scripts/bench/queue.sh).
  cfg.slots = o.slots > 0 ? o.slots : std::clamp(per_core, 1, 64);
  cfg.queue_depth = std::max(per_core - cfg.slots, 0) + 4;
  cfg.input_capacity = sizeof(double) * (kArgsDoubles + o.tile * N);
  cfg.output_capacity = std::max<uint64_t>(sizeof(double) * o.tile * N, 8);
  cfg.hot_timeout_us = o.hot_timeout_us;
  cfg.region_bytes = sizeof(double) * N * N;  // B, once per lease
  std::string library = o.library;
  if (library.empty() && !std::getenv("RFAAS_LIBRARY") && std::getenv("RFAAS_FUNCTIONS"))
    library = std::string(std::getenv("RFAAS_FUNCTIONS")) + "/librfaas_functions_blas.so";
  if (!o.broker.empty()) cfg.broker = o.broker.c_str();
  if (!library.empty()) cfg.library_path = library.c_str();
  if (int e = rfaas_mpi_init(MPI_COMM_WORLD, &cfg)) {
    if (rank == 0) std::fprintf(stderr, "gemm: rfaas_mpi_init: %s (%s)\n", rfaas_strerror(e), rfaas_mpi_last_error());
    MPI_Finalize();
    return 1;
  }
  const auto init_end = Clock::now();
  uint32_t b_region = 0;
  check(rfaas_mpi_create_region(sizeof(double) * N * N, &b_region), "rfaas_mpi_create_region");
  check(rfaas_mpi_register(B.data(), B.size() * sizeof(double)), "register");
  check(rfaas_mpi_register(C.data(), C.size() * sizeof(double)), "register");
  auto register_tiles = [&] {
    for (auto& t : tiles) {
      uint32_t args[4] = {b_region, t.rows, n, n};
      std::memcpy(t.input.data(), args, sizeof args);
      check(rfaas_mpi_register(t.input.data(), t.input.size() * sizeof(double)), "register");
    }
  };
  register_tiles();
  // B goes to the leased core once per lease, as the MPI_Bcast above gave it to every rank.
  MPI_Barrier(MPI_COMM_WORLD);
  auto p0 = Clock::now();
  check(rfaas_put(b_region, 0, B.data(), B.size() * sizeof(double)), "rfaas_put");
  double put_s = std::chrono::duration<double>(Clock::now() - p0).count();

  const auto calibration_start = Clock::now();
  // Every rank takes part in the agreement below, tiles or not (it is collective).
  if (o.auto_share) {
    double share = o.share;
    if (!tiles.empty()) {
    // Balance: the leased core's rate from timed calls of one tile, the rank's own from its
    // all-local run; the share is the leased core's part of their sum (at most the first share:
    // the slots were sized for that many tiles).
      std::vector<double> call_s;
      for (int i = 0; i < 3; ++i) {
        auto t0 = Clock::now();
        check(rfaas_offload("dgemm_resident", tiles[0].input.data(), tiles[0].input.size() * sizeof(double),
                            &C[tiles[0].first * N], sizeof(double) * tiles[0].rows * N, nullptr),
              "rfaas_offload");
        call_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      // Rows per second: the leased cores together (one tile each at a time), and the rank.
      const double leased = o.cores * tiles[0].rows / median(call_s), own = m / median(local_t);
      share = std::clamp(leased / (leased + own), 0.05, o.share);
    }
    double agreed = share;
    MPI_Allreduce(&share, &agreed, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);  // every rank alike
    const uint32_t rows = std::min<uint32_t>(m, static_cast<uint32_t>(std::lround(agreed * m)));
    if (!tiles.empty() && rows > 0) {  // at least one tile stays offloaded
      o.share = agreed;
      for (auto& t : tiles) check(rfaas_mpi_deregister(t.input.data()), "deregister");
      off_rows = rows;
      make_tiles();
      register_tiles();
    }
  }

  // The slowest rank's set-up and its parts, each measured: rfaas_mpi_init (lease and deploy),
  // the region with the registrations and B's put, the calibration.
  double setup_s = 0, init_s = 0, regions_s = 0, calibration_s = 0;
  {
    const auto now = Clock::now();
    const double mine[4] = {std::chrono::duration<double>(now - setup_start).count(),
                            std::chrono::duration<double>(init_end - setup_start).count(),
                            std::chrono::duration<double>(calibration_start - init_end).count(),
                            std::chrono::duration<double>(now - calibration_start).count()};
    double worst[4] = {0, 0, 0, 0};
    MPI_Allreduce(mine, worst, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    setup_s = worst[0];
    init_s = worst[1];
    regions_s = worst[2];
    calibration_s = worst[3];
  }

  std::vector<MPI_Request> reqs(tiles.size());
  std::vector<MPI_Status> statuses(tiles.size());
  std::vector<double> off_t;
  // Where a product's time goes on this rank, each phase measured per product: posting the tiles,
  // its own rows, its progress calls between slabs, its wait for the last tile after its own rows,
  // and the leased core's own time for this product's tiles (its counters, read outside the timing).
  std::vector<double> post_t, own_t, test_t, wait_t, leased_t;
  for (int rep = 0; rep < o.repeats; ++rep) {
    std::fill(C.begin(), C.end(), 0.0);
    rfaas_usage used_before{0, 0, 0}, used_after{0, 0, 0};
    check(rfaas_mpi_usage(&used_before), "rfaas_mpi_usage");
    MPI_Barrier(MPI_COMM_WORLD);
    auto t0 = Clock::now();
    // More tiles than slots wait in the client's queue and go out as slots free.
    for (size_t i = 0; i < tiles.size(); ++i) {
      Tile& t = tiles[i];
      check(rfaas_ioffload("dgemm_resident", t.input.data(), t.input.size() * sizeof(double), &C[t.first * N],
                           sizeof(double) * t.rows * N, &reqs[i]),
            "rfaas_ioffload");
    }
    const auto t_posted = Clock::now();
    double own_s = 0, test_s = 0;
    // The rank's own rows, in a few slabs with an MPI_Testall between them: transports with
    // manual progress (tcp;ofi_rxm) move the tiles' bytes only while this rank is in rfaas or MPI.
    const uint32_t own = m - off_rows;
    const uint32_t slabs = o.slabs > 0 ? std::min<uint32_t>(o.slabs, std::max<uint32_t>(own, 1))
                                       : std::clamp<uint32_t>(own / 512, 1, 2);
    // Once a Testall finds them all done it has freed them, and their statuses are its: a
    // Waitall after it would see null requests (empty statuses, MPI_TAG = MPI_ANY_TAG).
    int all_done = reqs.empty();
    for (uint32_t k = 0; k < slabs; ++k) {
      uint32_t r0 = off_rows + own * k / slabs, r1 = off_rows + own * (k + 1) / slabs;
      const auto s0 = Clock::now();
      local_gemm(&A[r0 * N], B.data(), &C[r0 * N], r1 - r0, n);
      const auto s1 = Clock::now();
      own_s += std::chrono::duration<double>(s1 - s0).count();
      if (k + 1 < slabs && !all_done) {
        MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &all_done, statuses.data());
        test_s += std::chrono::duration<double>(Clock::now() - s1).count();
      }
    }
    const auto t_own = Clock::now();
    if (!all_done) MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), statuses.data());
    const auto t_end = Clock::now();
    for (auto& st : statuses)
      if (st.MPI_TAG != RFAAS_OK) die(rfaas_strerror(st.MPI_TAG));
    double s = std::chrono::duration<double>(t_end - t0).count(), all = 0;
    MPI_Allreduce(&s, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    off_t.push_back(all);
    check(rfaas_mpi_usage(&used_after), "rfaas_mpi_usage");
    post_t.push_back(std::chrono::duration<double>(t_posted - t0).count());
    own_t.push_back(own_s);
    test_t.push_back(test_s);
    wait_t.push_back(std::chrono::duration<double>(t_end - t_own).count());
    leased_t.push_back(1e-9 * static_cast<double>(used_after.compute_ns - used_before.compute_ns));
  }
  // The phases of the product whose total was the median (rank 0's), and the two sides' rates.
  struct Phases {
    double post = 0, own = 0, test = 0, wait = 0, leased = 0, leased_rows_per_s = 0, own_rows_per_s = 0;
  } ph;
  if (!off_t.empty()) {
    std::vector<size_t> order(off_t.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return off_t[a] < off_t[b]; });
    const size_t mid = order[order.size() / 2];
    ph = {post_t[mid], own_t[mid], test_t[mid], wait_t[mid], leased_t[mid], 0, 0};
    // Per leased core: its tiles ran one at a time on it.
    if (ph.leased > 0) ph.leased_rows_per_s = o.cores * off_rows / ph.leased;
    if (ph.own > 0) ph.own_rows_per_s = (m - off_rows) / ph.own;
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

  // One offload call against the same tile computed here: what the call costs beyond the product.
  // The leased core's own time for these calls (rfaas_mpi_usage before and after each) is the
  // product as it ran there: measured, not the rank's time subtracted.
  double call_us = 0, call_mean_us = 0, compute_us = 0, executor_us = 0;
  uint64_t executor_calls = 0;
  if (rank == 0 && !tiles.empty()) {
    Tile& t = tiles[0];
    std::vector<double> remote, here;
    rfaas_apps::Array<double> scratch(t.rows * N);
    rfaas_usage before{0, 0, 0}, after{0, 0, 0};
    check(rfaas_mpi_usage(&before), "rfaas_mpi_usage");
    double executor_ns = 0;
    for (int i = 0; i < 20; ++i) {
      auto t0 = Clock::now();
      check(rfaas_offload("dgemm_resident", t.input.data(), t.input.size() * sizeof(double), &C[t.first * N],
                          sizeof(double) * t.rows * N, nullptr),
            "rfaas_offload");
      auto t1 = Clock::now();
      local_gemm(&A[t.first * N], B.data(), scratch.data(), t.rows, n);
      auto t2 = Clock::now();
      check(rfaas_mpi_usage(&after), "rfaas_mpi_usage");  // outside both timings
      executor_ns += static_cast<double>(after.compute_ns - before.compute_ns);
      executor_calls += after.invocations - before.invocations;
      before = after;
      remote.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      here.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    call_us = median(remote);
    for (double t : remote) call_mean_us += t / remote.size();
    compute_us = median(here);
    executor_us = executor_calls ? 1e-3 * executor_ns / executor_calls : 0;
  }
  quiet_barrier();
  rfaas_mpi_stats st{};
  rfaas_mpi_get_stats(&st);
  int fin = rfaas_mpi_finalize();
  const double ls = median(local_t), rs = median(off_t);
  const double e2e = setup_s + rs;  // one product as a job would run it, set-up included
  const size_t tile_bytes = tiles.empty() ? 0 : sizeof(double) * (tiles[0].input.size() + size_t{tiles[0].rows} * N);
  if (rank == 0 && !o.json_out.empty()) {
    append_json(o.json_out,
                    "{\"app\":\"gemm\",\"mode\":\"rfaas\",\"ranks\":%d,\"cores_per_rank\":%d,\"n\":%u,\"tile\":%u,"
                    "\"slots\":%d,\"tiles\":%zu,\"local_s\":%.6f,\"rfaas_s\":%.6f,\"put_s\":%.6f,\"setup_s\":%.6f,\"init_s\":%.6f,\"regions_s\":%.6f,"
                    "\"calibration_s\":%.6f,\"e2e_s\":%.6f,"
                    "\"call_us\":%.2f,\"call_mean_us\":%.2f,\"compute_us\":%.2f,\"executor_compute_us\":%.2f,\"executor_calls\":%llu,"
                    "\"transfer_bytes_per_call\":%zu,\"rows_offloaded\":%u,"
                    "\"rows\":%u,\"share\":%.4f,\"auto_share\":%s,\"repeats\":%d,\"pages\":\"%s\","
                    "\"phase_post_s\":%.6f,\"phase_own_s\":%.6f,\"phase_test_s\":%.6f,\"phase_wait_s\":%.6f,"
                    "\"phase_leased_s\":%.6f,\"leased_rows_per_s\":%.1f,\"own_rows_per_s\":%.1f,\"pass\":%s}\n",
                    size, o.cores, n, o.tile, cfg.slots, tiles.size(), ls, rs, put_s, setup_s, init_s, regions_s, calibration_s, e2e, call_us, call_mean_us, compute_us,
                    executor_us, static_cast<unsigned long long>(executor_calls), tile_bytes,
                    off_rows, m, o.share, o.auto_share ? "true" : "false", o.repeats, rfaas_apps::page_mode().c_str(),
                    ph.post, ph.own, ph.test, ph.wait, ph.leased, ph.leased_rows_per_s, ph.own_rows_per_s,
                    pass ? "true" : "false");
  }
  if (rank == 0) {
    std::printf("gemm: %d rank(s), C = A*B with N = %u, tiles of %u rows, offload share %.3f%s, %d leased core(s) per "
                "rank\n",
                size, n, o.tile, o.share, o.auto_share ? " (auto: balanced by measured rates)" : "", o.cores);
    std::printf("  memory    : %s\n", rfaas_apps::page_treatment().c_str());
    std::printf("  all-local : %8.3f ms, %7.2f GFLOP/s (median of %d)\n", 1e3 * ls, flops / ls * 1e-9, o.repeats);
    std::printf("  rfaas     : %8.3f ms, %7.2f GFLOP/s (median of %d; %zu tiles, %u of %u rows of rank 0 on "
                "leased cores; B put once per lease: %.2f ms)\n",
                1e3 * rs, flops / rs * 1e-9, o.repeats, tiles.size(), off_rows, m, 1e3 * put_s);
    std::printf("  end to end: %8.3f ms, %7.2f GFLOP/s for one product with everything it pays: set-up %.1f ms "
                "(lease and deploy %.1f, region, registrations and B's put %.1f, calibration %.1f), the product\n",
                1e3 * e2e, flops / e2e * 1e-9, 1e3 * setup_s, 1e3 * init_s, 1e3 * regions_s, 1e3 * calibration_s);
    std::printf("  offload call: %.1f us round trip (median; mean %.1f) for a %ux%u tile; the product itself %.1f us "
                "on the leased core (its own time for these %llu calls, measured there), %.1f us here; %zu bytes travel "
                "per call\n",
                call_us, call_mean_us, tiles.empty() ? 0 : tiles[0].rows, n, executor_us,
                static_cast<unsigned long long>(executor_calls), compute_us, tile_bytes);
    // What the leased cores did not compute of the product is their idle time: the tiles'
    // transfers, the queue, the posting.
    const double product = ph.post + ph.own + ph.test + ph.wait;
    std::printf("  phases (rank 0, the median product): post %.2f ms, own rows %.1f ms (%.0f rows/s), progress "
                "between slabs %.2f ms, wait after own rows %.1f ms; the leased core(s) computed %.1f ms (%.0f "
                "rows/s each), busy %.0f%% of the product\n",
                1e3 * ph.post, 1e3 * ph.own, ph.own_rows_per_s, 1e3 * ph.test, 1e3 * ph.wait, 1e3 * ph.leased,
                ph.leased_rows_per_s, product > 0 ? 100 * ph.leased / (o.cores * product) : 0.0);
    std::printf("  transfers (rank 0): %llu offloads, %llu puts (%.1f MiB), inputs zero-copy %llu / copied %llu\n",
                static_cast<unsigned long long>(st.offloads), static_cast<unsigned long long>(st.puts),
                static_cast<double>(st.put_bytes) / (1 << 20), static_cast<unsigned long long>(st.zero_copy_inputs),
                static_cast<unsigned long long>(st.copied_inputs));
    std::printf("  verification: %s (max |C - C_local| / max |C_local| = %.1e)\n", pass ? "PASS" : "FAIL", max_rel);
  }
  MPI_Finalize();
  return pass && fin == 0 ? 0 : 1;
}
