// rfaas_mpi.h through mpirun against a real broker and executor daemon (tests/mpi/CMakeLists.txt
// starts them with scripts/local-cluster.sh). Every rank runs the same test cases in the same
// order; the collective calls (init, finalize) happen on all of them.
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "rfaas/rfaas_mpi.h"

namespace {

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

std::string basic_library() { return std::string(std::getenv("RFAAS_FUNCTIONS")) + "/librfaas_functions_basic.so"; }

// The config points into `library`: keep it alive while the config is used.
rfaas_mpi_config basic_config(const std::string& library) {
  rfaas_mpi_config cfg;
  rfaas_mpi_config_init(&cfg);
  cfg.library_path = library.c_str();
  cfg.functions = "echo,noop,region_read";
  cfg.slots = 4;
  cfg.queue_depth = 36;
  cfg.region_bytes = 4 << 20;
  cfg.input_capacity = 64 * 1024;
  cfg.output_capacity = 64 * 1024;
  cfg.hot_timeout_us = 0;  // two ranks and two executors share two cores in CI
  cfg.duration_ms = 120'000;
  return cfg;
}

void fill(std::vector<uint8_t>& v, uint32_t seed) {
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

// Same value on every rank?
bool agreed(int value) {
  int lo = 0, hi = 0;
  MPI_Allreduce(&value, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&value, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

}  // namespace

TEST_CASE("calls before rfaas_mpi_init are refused and MPI goes on") {
  REQUIRE_FALSE(rfaas_mpi_initialized());
  uint8_t in[8] = {}, out[8];
  MPI_Request req = MPI_REQUEST_NULL;
  CHECK(rfaas_offload("echo", in, 8, out, 8, nullptr) == RFAAS_ERR_NOT_INITIALIZED);
  CHECK(rfaas_ioffload("echo", in, 8, out, 8, &req) == RFAAS_ERR_NOT_INITIALIZED);
  CHECK(req == MPI_REQUEST_NULL);
  CHECK(rfaas_mpi_register(in, 8) == RFAAS_ERR_NOT_INITIALIZED);
  CHECK(rfaas_mpi_finalize() == RFAAS_ERR_NOT_INITIALIZED);
  CHECK(std::string(rfaas_strerror(RFAAS_ERR_NOT_INITIALIZED)).find("not initialized") != std::string::npos);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("a failure on one rank fails rfaas_mpi_init on every rank with the same code") {
  // The last rank names a library that does not exist; the others a good one.
  std::string library = rank() == world() - 1 ? std::string("/nonexistent/libnothing.so") : basic_library();
  auto cfg = basic_config(library);
  int e = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  CHECK(e != RFAAS_OK);
  CHECK(agreed(e));
  CHECK_FALSE(rfaas_mpi_initialized());
  INFO(rfaas_mpi_last_error());
  CHECK(std::strlen(rfaas_mpi_last_error()) > 0);

  // A missing broker is refused before anything is leased, on every rank alike.
  std::string good_library = basic_library();
  auto bad = basic_config(good_library);
  bad.broker = "127.0.0.1:1";
  bad.invocation_timeout_ms = 2000;
  int e2 = rfaas_mpi_init(MPI_COMM_WORLD, &bad);
  CHECK(e2 == RFAAS_ERR_CONNECTION_FAILED);
  CHECK(agreed(e2));
}

TEST_CASE("offloads through leased cores: blocking, as MPI requests, registered and not") {
  std::string library = basic_library();
  auto cfg = basic_config(library);
  int initialized = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  INFO(rfaas_mpi_last_error());
  REQUIRE(initialized == RFAAS_OK);
  REQUIRE(rfaas_mpi_initialized());
  REQUIRE(rfaas_mpi_cores() == 1);

  SECTION("blocking offloads return the function's result, byte for byte") {
    for (size_t size : {size_t{0}, size_t{1}, size_t{63}, size_t{4096}, size_t{65536}}) {
      std::vector<uint8_t> in(size), out(size + 16, 0xee);
      fill(in, static_cast<uint32_t>(size) + rank());
      size_t got = 12345;
      REQUIRE(rfaas_offload("echo", in.data(), in.size(), out.data(), out.size(), &got) == RFAAS_OK);
      CHECK(got == size);
      CHECK(std::equal(in.begin(), in.end(), out.begin()));
      CHECK(out[size] == 0xee);  // nothing written past the result
    }
  }

  SECTION("rfaas_ioffload completes in one MPI_Waitall with the rank's own messages") {
    const int peer_up = (rank() + 1) % world(), peer_down = (rank() + world() - 1) % world();
    std::vector<double> halo_out(512), halo_in(512, -1.0);
    std::iota(halo_out.begin(), halo_out.end(), 1000.0 * rank());
    std::vector<std::vector<uint8_t>> ins(3), outs(3);
    MPI_Request reqs[5];
    MPI_Irecv(halo_in.data(), 512, MPI_DOUBLE, peer_down, 7, MPI_COMM_WORLD, &reqs[0]);
    for (int i = 0; i < 3; ++i) {
      ins[i].resize(1000 + 977 * i);
      outs[i].assign(ins[i].size(), 0);
      fill(ins[i], 100 + i + 10 * rank());
      REQUIRE(rfaas_ioffload("echo", ins[i].data(), ins[i].size(), outs[i].data(), outs[i].size(), &reqs[1 + i]) ==
              RFAAS_OK);
    }
    MPI_Isend(halo_out.data(), 512, MPI_DOUBLE, peer_up, 7, MPI_COMM_WORLD, &reqs[4]);
    MPI_Status st[5];
    REQUIRE(MPI_Waitall(5, reqs, st) == MPI_SUCCESS);
    for (int i = 0; i < 3; ++i) {
      CHECK(st[1 + i].MPI_TAG == RFAAS_OK);
      int count = -1;
      MPI_Get_count(&st[1 + i], MPI_BYTE, &count);
      CHECK(count == static_cast<int>(ins[i].size()));
      CHECK(outs[i] == ins[i]);
      CHECK(reqs[1 + i] == MPI_REQUEST_NULL);
    }
    CHECK(halo_in[0] == 1000.0 * peer_down);
    CHECK(halo_in[511] == 1000.0 * peer_down + 511);
  }

  SECTION("MPI_Test and MPI_Wait drive an offload to completion") {
    std::vector<uint8_t> in(300), out(300);
    fill(in, 5);
    MPI_Request req;
    REQUIRE(rfaas_ioffload("echo", in.data(), in.size(), out.data(), out.size(), &req) == RFAAS_OK);
    int done = 0;
    MPI_Status st;
    double until = MPI_Wtime() + 10;
    while (!done && MPI_Wtime() < until) MPI_Test(&req, &done, &st);
    REQUIRE(done);
    CHECK(st.MPI_TAG == RFAAS_OK);
    CHECK(out == in);

    REQUIRE(rfaas_ioffload("noop", in.data(), in.size(), out.data(), out.size(), &req) == RFAAS_OK);
    REQUIRE(MPI_Wait(&req, &st) == MPI_SUCCESS);
    int count = -1;
    MPI_Get_count(&st, MPI_BYTE, &count);
    CHECK(count == 0);
  }

  SECTION("registered buffers travel without a copy; the registration cache hits") {
    rfaas_mpi_stats before{}, after{};
    std::vector<uint8_t> grid(1 << 20);
    fill(grid, 9);
    REQUIRE(rfaas_mpi_get_stats(&before) == RFAAS_OK);
    REQUIRE(rfaas_mpi_register(grid.data(), grid.size()) == RFAAS_OK);
    REQUIRE(rfaas_mpi_register(grid.data() + 4096, 8192) == RFAAS_OK);  // inside: a hit
    REQUIRE(rfaas_mpi_register(grid.data(), grid.size()) == RFAAS_OK);  // again: a hit
    // Input from one part of the registered grid, result into another.
    REQUIRE(rfaas_offload("echo", grid.data(), 50000, grid.data() + 500000, 50000, nullptr) == RFAAS_OK);
    CHECK(std::memcmp(grid.data(), grid.data() + 500000, 50000) == 0);
    // Unregistered memory works too, through a copy.
    std::vector<uint8_t> in(777), out(777);
    fill(in, 3);
    REQUIRE(rfaas_offload("echo", in.data(), in.size(), out.data(), out.size(), nullptr) == RFAAS_OK);
    CHECK(out == in);
    REQUIRE(rfaas_mpi_get_stats(&after) == RFAAS_OK);
    CHECK(after.registrations == before.registrations + 1);
    CHECK(after.registration_hits == before.registration_hits + 2);
    CHECK(after.zero_copy_inputs == before.zero_copy_inputs + 1);
    CHECK(after.zero_copy_outputs == before.zero_copy_outputs + 1);
    CHECK(after.copied_inputs == before.copied_inputs + 1);
    CHECK(after.copied_outputs == before.copied_outputs + 1);
    CHECK(after.offloads == before.offloads + 2);
    // A longer range from the same start replaces the registration.
    std::vector<uint8_t> bigger(2 << 20);
    REQUIRE(rfaas_mpi_register(bigger.data(), 1 << 20) == RFAAS_OK);
    REQUIRE(rfaas_mpi_register(bigger.data(), 2 << 20) == RFAAS_OK);
    REQUIRE(rfaas_offload("echo", grid.data(), 1000, bigger.data() + (1 << 20) + 5, 1000, nullptr) == RFAAS_OK);
    rfaas_mpi_stats last{};
    rfaas_mpi_get_stats(&last);
    CHECK(last.registrations == after.registrations + 2);
    CHECK(last.zero_copy_outputs == after.zero_copy_outputs + 1);
    CHECK(std::memcmp(grid.data(), bigger.data() + (1 << 20) + 5, 1000) == 0);
    CHECK(rfaas_mpi_deregister(bigger.data()) == RFAAS_OK);
    CHECK(rfaas_mpi_deregister(bigger.data()) == RFAAS_ERR_INVALID_ARGUMENT);
    CHECK(rfaas_mpi_deregister(grid.data()) == RFAAS_OK);
  }

  SECTION("bad calls are refused with named errors and the job goes on") {
    std::vector<uint8_t> in(64 * 1024 + 1), out(16);
    MPI_Request req = MPI_REQUEST_NULL;
    CHECK(rfaas_offload("no_such_function", in.data(), 8, out.data(), out.size(), nullptr) ==
          RFAAS_ERR_UNKNOWN_FUNCTION);
    CHECK(rfaas_ioffload("no_such_function", in.data(), 8, out.data(), out.size(), &req) ==
          RFAAS_ERR_UNKNOWN_FUNCTION);
    CHECK(req == MPI_REQUEST_NULL);
    CHECK(rfaas_offload("echo", in.data(), in.size(), out.data(), out.size(), nullptr) == RFAAS_ERR_PAYLOAD_TOO_LARGE);
    CHECK(rfaas_ioffload("echo", in.data(), in.size(), out.data(), out.size(), &req) == RFAAS_ERR_PAYLOAD_TOO_LARGE);
    CHECK(rfaas_ioffload(nullptr, in.data(), 8, out.data(), out.size(), &req) == RFAAS_ERR_UNKNOWN_FUNCTION);
    CHECK(rfaas_ioffload("echo", in.data(), 8, out.data(), out.size(), nullptr) == RFAAS_ERR_INVALID_ARGUMENT);
    CHECK(rfaas_mpi_register(nullptr, 10) == RFAAS_ERR_INVALID_ARGUMENT);
    // A result larger than the caller's buffer is an error, not an overflow.
    std::vector<uint8_t> small(4, 0xab);
    MPI_Status st;
    REQUIRE(rfaas_ioffload("echo", in.data(), 100, small.data(), small.size(), &req) == RFAAS_OK);
    MPI_Wait(&req, &st);
    CHECK(st.MPI_TAG == RFAAS_ERR_OUTPUT_TOO_LARGE);
    CHECK(small == std::vector<uint8_t>(4, 0xab));
    // Still serving.
    std::vector<uint8_t> ok_in(32, 7), ok_out(32);
    CHECK(rfaas_offload("echo", ok_in.data(), 32, ok_out.data(), 32, nullptr) == RFAAS_OK);
    CHECK(ok_out == ok_in);
    rfaas_mpi_stats s{};
    rfaas_mpi_get_stats(&s);
    CHECK(s.failed_offloads >= 1);
  }

  SECTION("more offloads than slots complete inside one MPI_Waitall; a full queue is named; finalize waits") {
    // 4 slots and a queue of 36: 40 offloads in flight at once, 10 per slot.
    constexpr int kCalls = 40;
    std::vector<std::vector<uint8_t>> ins(kCalls + 1, std::vector<uint8_t>(64)), outs(kCalls + 1, std::vector<uint8_t>(64));
    MPI_Request reqs[kCalls + 1];
    for (int i = 0; i < kCalls; ++i) {
      fill(ins[i], static_cast<uint32_t>(i));
      REQUIRE(rfaas_ioffload("echo", ins[i].data(), 64, outs[i].data(), 64, &reqs[i]) == RFAAS_OK);
    }
    CHECK(rfaas_ioffload("echo", ins[kCalls].data(), 64, outs[kCalls].data(), 64, &reqs[kCalls]) ==
          RFAAS_ERR_QUEUE_FULL);
    CHECK(rfaas_mpi_finalize() == RFAAS_ERR_BUSY);  // collective: every rank has requests pending
    REQUIRE(rfaas_mpi_initialized());
    std::vector<MPI_Status> st(kCalls);
    REQUIRE(MPI_Waitall(kCalls, reqs, st.data()) == MPI_SUCCESS);
    for (int i = 0; i < kCalls; ++i) {
      CHECK(st[i].MPI_TAG == RFAAS_OK);
      CHECK(outs[i] == ins[i]);
    }
  }

  SECTION("a resident region: rfaas_iput completes in MPI_Waitall, then offloads see its bytes") {
    uint32_t region = 99;
    REQUIRE(rfaas_mpi_create_region(1 << 20, &region) == RFAAS_OK);
    CHECK(region == 0);
    std::vector<uint8_t> data(1 << 20);
    fill(data, 5);
    REQUIRE(rfaas_mpi_register(data.data(), data.size()) == RFAAS_OK);
    MPI_Request puts[2];
    REQUIRE(rfaas_iput(region, 0, data.data(), data.size() / 2, &puts[0]) == RFAAS_OK);
    REQUIRE(rfaas_iput(region, data.size() / 2, data.data() + data.size() / 2, data.size() / 2, &puts[1]) == RFAAS_OK);
    MPI_Status st[2];
    REQUIRE(MPI_Waitall(2, puts, st) == MPI_SUCCESS);
    CHECK(st[0].MPI_TAG == RFAAS_OK);
    CHECK(st[1].MPI_TAG == RFAAS_OK);
    // region_read (context ABI) returns region bytes: the offload sees the put.
    struct {
      uint32_t region, pad;
      uint64_t offset, length;
    } ask{region, 0, 4096, 8192};
    std::vector<uint8_t> got(8192);
    size_t n = 0;
    REQUIRE(rfaas_offload("region_read", &ask, sizeof ask, got.data(), got.size(), &n) == RFAAS_OK);
    CHECK(n == 8192);
    CHECK(std::equal(got.begin(), got.end(), data.begin() + 4096));
    std::vector<uint8_t> back(data.size());
    REQUIRE(rfaas_get(region, 0, back.data(), back.size()) == RFAAS_OK);
    CHECK(back == data);
    CHECK(rfaas_put(region, data.size() - 1, data.data(), 2) == RFAAS_ERR_REGION_OUT_OF_BOUNDS);
    CHECK(rfaas_put(7, 0, data.data(), 2) == RFAAS_ERR_NO_SUCH_REGION);
    uint32_t big = 0;
    CHECK(rfaas_mpi_create_region(uint64_t{1} << 40, &big) == RFAAS_ERR_MEMORY_EXCEEDED);
    rfaas_mpi_stats stats{};
    rfaas_mpi_get_stats(&stats);
    CHECK(stats.puts == 2);
    CHECK(stats.put_bytes == data.size());
    REQUIRE(rfaas_mpi_deregister(data.data()) == RFAAS_OK);
  }

  REQUIRE(rfaas_mpi_finalize() == RFAAS_OK);
  CHECK_FALSE(rfaas_mpi_initialized());
  uint8_t b[4] = {};
  CHECK(rfaas_offload("echo", b, 4, b, 4, nullptr) == RFAAS_ERR_NOT_INITIALIZED);
}

TEST_CASE("rfaas_mpi_renew extends the lease; after expiry rfaas_mpi_recover leases again") {
  std::string library = basic_library();
  auto cfg = basic_config(library);
  cfg.duration_ms = 2500;
  int initialized = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  INFO(rfaas_mpi_last_error());
  REQUIRE(initialized == RFAAS_OK);
  std::vector<uint8_t> buf(4096);
  fill(buf, 11);
  REQUIRE(rfaas_mpi_register(buf.data(), buf.size()) == RFAAS_OK);
  CHECK(rfaas_mpi_renew(0) == RFAAS_ERR_INVALID_ARGUMENT);
  REQUIRE(rfaas_mpi_renew(6000) == RFAAS_OK);
  MPI_Barrier(MPI_COMM_WORLD);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // past the first expiry
  CHECK(rfaas_offload("echo", buf.data(), 100, buf.data() + 2048, 100, nullptr) == RFAAS_OK);
  CHECK(std::equal(buf.begin(), buf.begin() + 100, buf.begin() + 2048));

  // Let the renewed lease run out: offloads fail with a named error, the job goes on.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  int e = rfaas_offload("echo", buf.data(), 100, buf.data() + 1024, 100, nullptr);
  CHECK((e == RFAAS_ERR_LEASE_EXPIRED || e == RFAAS_ERR_EXECUTOR_LOST));
  INFO(rfaas_strerror(e));
  int recovered = rfaas_mpi_recover();
  INFO(rfaas_mpi_last_error());
  REQUIRE(recovered == RFAAS_OK);
  rfaas_mpi_stats before{}, after{};
  rfaas_mpi_get_stats(&before);
  fill(buf, 12);
  CHECK(rfaas_offload("echo", buf.data(), 100, buf.data() + 1024, 100, nullptr) == RFAAS_OK);
  CHECK(std::equal(buf.begin(), buf.begin() + 100, buf.begin() + 1024));
  rfaas_mpi_get_stats(&after);
  CHECK(after.zero_copy_inputs == before.zero_copy_inputs + 1);  // still registered with the new lease
  REQUIRE(rfaas_mpi_finalize() == RFAAS_OK);
  CHECK(rfaas_mpi_recover() == RFAAS_ERR_NOT_INITIALIZED);
}

TEST_CASE("the Fortran entry points take integer handles") {
  std::string library = basic_library();
  auto cfg = basic_config(library);
  REQUIRE(rfaas_mpi_init_fortran(MPI_Comm_c2f(MPI_COMM_WORLD), &cfg) == RFAAS_OK);
  std::vector<uint8_t> in(500), out(500);
  fill(in, 21);
  MPI_Fint handle = 0;
  REQUIRE(rfaas_ioffload_fortran("echo", in.data(), in.size(), out.data(), out.size(), &handle) == RFAAS_OK);
  MPI_Request req = MPI_Request_f2c(handle);
  MPI_Status st;
  REQUIRE(MPI_Wait(&req, &st) == MPI_SUCCESS);
  CHECK(st.MPI_TAG == RFAAS_OK);
  CHECK(out == in);
  CHECK(rfaas_ioffload_fortran("echo", in.data(), in.size(), out.data(), out.size(), nullptr) ==
        RFAAS_ERR_INVALID_ARGUMENT);
  REQUIRE(rfaas_mpi_finalize() == RFAAS_OK);
}

TEST_CASE("rfaas_mpi_usage and rfaas_mpi_finalize_usage tell the executor's own count and time of the calls") {
  std::string library = basic_library();
  auto cfg = basic_config(library);
  cfg.functions = "echo,sleep_ms";
  int initialized = rfaas_mpi_init(MPI_COMM_WORLD, &cfg);
  INFO(rfaas_mpi_last_error());
  REQUIRE(initialized == RFAAS_OK);
  // Five calls of 30 ms each where they run: the executor counts 150 ms of its own, and never
  // more than the rank waited for them.
  const uint32_t ms = 30;
  uint32_t back = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) REQUIRE(rfaas_offload("sleep_ms", &ms, sizeof ms, &back, sizeof back, nullptr) == RFAAS_OK);
  const auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
  CHECK(back == ms);
  rfaas_usage so_far{};
  REQUIRE(rfaas_mpi_usage(&so_far) == RFAAS_OK);  // mid-lease, through the daemon
  CHECK(so_far.invocations == 5);
  CHECK(so_far.compute_ns >= 150'000'000u);
  CHECK(so_far.compute_ns <= static_cast<uint64_t>(waited.count()));
  CHECK(rfaas_mpi_usage(nullptr) == RFAAS_ERR_INVALID_ARGUMENT);
  uint8_t b[4] = {1, 2, 3, 4}, r[4] = {};
  REQUIRE(rfaas_offload("echo", b, 4, r, 4, nullptr) == RFAAS_OK);
  rfaas_usage usage{};
  REQUIRE(rfaas_mpi_finalize_usage(&usage) == RFAAS_OK);
  CHECK(usage.compute_ns - so_far.compute_ns < 1'000'000u);  // the echo's own time: well under a ms
  CHECK(usage.invocations == 6);
  CHECK(usage.compute_ns >= 150'000'000u);
  CHECK(usage.compute_ns <= static_cast<uint64_t>(waited.count()) + 1'000'000u);  // echo: well under a ms
  CHECK(rfaas_mpi_finalize_usage(&usage) == RFAAS_ERR_NOT_INITIALIZED);
  CHECK(rfaas_mpi_usage(&usage) == RFAAS_ERR_NOT_INITIALIZED);
}
