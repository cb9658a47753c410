// The client's data path against the executor's real workers, in one process over the loopback
// backend: no daemon, no executor process, no provider. Every request form, the submission queue
// and slot reuse, late results and abandoned slots, region puts and gets, the worker's named
// errors, batch progress.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "client/data_path.hpp"
#include "executor/resident_regions.hpp"
#include "executor/worker.hpp"
#include "protocol/invocation.hpp"
#include "support/test_thread.hpp"

using namespace std::chrono_literals;
using rfaas::Errc;
using rfaas::Executor;
using rfaas::Invocation;
using rfaas::testing::TestThread;
namespace client = rfaas::client;
namespace executor = rfaas::executor;
namespace fabric = rfaas::fabric;
namespace protocol = rfaas::protocol;

namespace {

uint32_t echo(void* in, uint32_t in_size, void* out) {
  std::memcpy(out, in, in_size);
  return in_size;
}
// Sleeps the milliseconds its first 4 bytes say, then echoes: a result that comes late.
uint32_t slow_echo(void* in, uint32_t in_size, void* out) {
  uint32_t ms = 0;
  std::memcpy(&ms, in, std::min<uint32_t>(in_size, 4));
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return echo(in, in_size, out);
}
int32_t fails(rfaas_call*) { return 42; }
uint32_t overclaims(void*, uint32_t, void*) { return 1u << 20; }
// The sum of region 0's bytes.
int32_t region_sum(rfaas_call* call) {
  uint64_t sum = 0;
  const auto* p = static_cast<const uint8_t*>(call->regions[0].data);
  for (uint64_t i = 0; i < call->regions[0].size; ++i) sum += p[i];
  std::memcpy(call->out, &sum, sizeof sum);
  call->out_size = sizeof sum;
  return 0;
}
enum : int { kEcho = 0, kSlow = 1, kFails = 2, kOverclaims = 3, kRegionSum = 4, kFunctions = 300 };

// A lease without a daemon: workers of the executor in this process, the client's data path
// connected to them. A lost connection is final at once (there is no daemon to ask why).
struct LoopbackLease : client::LeaseWatch {
  std::unique_ptr<fabric::Domain> domain;
  std::vector<executor::Function> functions;
  std::unique_ptr<executor::ResidentRegions> executor_regions;
  std::vector<std::unique_ptr<executor::Worker>> workers;
  client::RegistrationTable registrations;
  std::vector<client::ResidentRegion> regions;
  std::unique_ptr<client::DataPath> path;

  Errc resolve(std::chrono::milliseconds) noexcept override { return ended_ = Errc::executor_lost; }

  explicit LoopbackLease(const client::DataPathConfig& config, uint32_t nworkers = 1,
                         std::vector<uint64_t> region_sizes = {}, uint32_t executor_functions = kFunctions) {
    fabric::Config fc;
    fc.backend = fabric::Backend::loopback;
    domain = fabric::open_domain(fc);
    functions.resize(kFunctions, executor::Function{&echo, nullptr});
    functions[kSlow] = {&slow_echo, nullptr};
    functions[kFails] = {nullptr, &fails};
    functions[kOverclaims] = {&overclaims, nullptr};
    functions[kRegionSum] = {nullptr, &region_sum};
    functions.resize(executor_functions);  // the client may know more
    executor_regions = std::make_unique<executor::ResidentRegions>(*domain);
    for (uint64_t bytes : region_sizes) {
      const uint32_t id = executor_regions->create(bytes);
      regions.push_back({executor_regions->remote(id), bytes});
    }
    auto listener = domain->listen("loop", 0);
    for (uint32_t w = 0; w < nworkers; ++w) {
      executor::WorkerConfig wc;
      wc.index = w;
      wc.workers = nworkers;
      wc.slots = config.lease.slots;
      wc.input_capacity = config.lease.input_capacity;
      wc.output_capacity = config.lease.output_capacity;
      wc.hot_timeout_us = 1000;
      workers.push_back(std::make_unique<executor::Worker>(*domain, wc, functions, *executor_regions));
    }
    TestThread acceptor([&] {
      for (auto& worker : workers) {
        fabric::ConnectionData theirs;
        worker->attach(listener->accept(worker->endpoint_config(), fabric::make_connection_data(worker->input_region()),
                                        theirs, 5s));
        const auto hello = fabric::read_connection_data<protocol::WorkerHello>(theirs);
        worker->set_ack_target({hello.ack_address, hello.ack_key, 0});
      }
    });
    auto hello = [](uint32_t w, const fabric::RemoteRegion& ack) {
      protocol::WorkerHello h{w, protocol::kWorkerHelloVersion, 1, ack.address, ack.key, {}};
      return fabric::make_connection_data(h);
    };
    client::DataPathConfig path_config = config;
    path_config.lease.workers = nworkers;
    path = std::make_unique<client::DataPath>(*domain, path_config, listener->address(), hello, 5s, registrations,
                                              regions, *this);
    acceptor.join();
    for (auto& worker : workers) worker->start();
  }
  ~LoopbackLease() {
    for (auto& worker : workers)
      if (worker) worker->stop();
    for (auto& worker : workers)
      if (worker) worker->join();
    path.reset();
  }
  // Registers client memory as the facade does.
  std::unique_ptr<fabric::MemoryRegion> register_memory(void* p, size_t n) {
    auto mr = domain->register_memory(p, n, fabric::Access::remote_write);
    registrations.insert(p, n, mr.get());
    return mr;
  }
  Errc invoke(int function, const void* in, size_t in_size, void* out, size_t cap, size_t* size = nullptr) {
    Invocation h;
    Errc e = path->submit(function, in, in_size, out, cap, &h, -1);
    if (e != Errc::ok) return e;
    size_t n = 0;
    e = path->wait(h, &n, std::chrono::microseconds(5'000'000));
    if (size) *size = n;
    return e;
  }
};

client::DataPathConfig config(uint32_t slots = 4, uint64_t capacity = 4096) {
  client::DataPathConfig c;
  c.functions = kFunctions;
  c.lease.slots = slots;
  c.queue_depth = 256;
  c.lease.input_capacity = capacity;
  c.lease.output_capacity = capacity;
  return c;
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

}  // namespace

TEST_CASE("loopback: every request form carries the right bytes to the right place", "[client][loopback]") {
  const uint64_t cap = protocol::kMaxCompactPayload + 4096;  // payloads beyond the compact size field
  LoopbackLease lease(config(4, cap));
  std::vector<uint8_t> reg_in(cap), reg_out(cap), plain_out(cap);
  auto in_mr = lease.register_memory(reg_in.data(), reg_in.size());
  auto out_mr = lease.register_memory(reg_out.data(), reg_out.size());
  struct Case {
    const char* what;
    int function;
    size_t size;
    bool registered_in, registered_out;
  } cases[] = {
      {"framed, unregistered both ways", kEcho, 100, false, false},
      {"compact to the same target", kEcho, 60, false, false},
      {"an empty payload", kEcho, 0, false, false},
      {"registered input and output (no copy)", kEcho, 1000, true, true},
      {"registered again: compact, zero-copy", kEcho, 999, true, true},
      {"beyond the compact size field, framed", kEcho, protocol::kMaxCompactPayload + 100, true, true},
      {"beyond the compact size field, the same size: compact", kEcho, protocol::kMaxCompactPayload + 100, true, true},
      {"a function index beyond the compact field: framed", 299, 64, false, true},
      {"back to a small one", kEcho, 8, true, false},
  };
  for (int round = 0; round < 3; ++round) {  // each slot sees every form
    for (const auto& c : cases) {
      INFO(c.what << ", round " << round);
      auto data = pattern(c.size, static_cast<uint8_t>(round * 31 + c.size));
      const void* in = data.data();
      if (c.registered_in) {
        std::memcpy(reg_in.data(), data.data(), c.size);
        in = reg_in.data();
      }
      uint8_t* out = c.registered_out ? reg_out.data() : plain_out.data();
      std::memset(out, 0, cap);
      size_t n = 0;
      REQUIRE(lease.invoke(c.function, in, c.size, out, cap, &n) == Errc::ok);
      REQUIRE(n == c.size);
      CHECK((c.size == 0 || std::memcmp(out, data.data(), c.size) == 0));
    }
  }
}

TEST_CASE("loopback: the worker's named errors reach the caller, and its slot serves on", "[client][loopback]") {
  auto c = config(2, 4096);
  c.functions = kRegionSum + 2;  // the client knows one more function than the executor has
  LoopbackLease lease(c, 1, {}, kRegionSum + 1);
  uint8_t in[16] = {1, 2, 3}, out[64];
  size_t n = 0;
  CHECK(lease.invoke(kFails, in, sizeof in, out, sizeof out, &n) == Errc::function_failed);
  CHECK(n == 42);  // the function's status
  CHECK(lease.invoke(kOverclaims, in, sizeof in, out, sizeof out) == Errc::output_too_large);
  CHECK(lease.invoke(kRegionSum + 1, in, sizeof in, out, sizeof out) == Errc::unknown_function);
  CHECK(lease.invoke(kFunctions + 5, in, sizeof in, out, sizeof out) == Errc::unknown_function);  // refused here
  CHECK(lease.invoke(kEcho, in, 5000, out, sizeof out) == Errc::payload_too_large);  // refused here
  for (int i = 0; i < 8; ++i) {
    REQUIRE(lease.invoke(kEcho, in, sizeof in, out, sizeof out, &n) == Errc::ok);
    CHECK(std::memcmp(out, in, sizeof in) == 0);
  }
}

TEST_CASE("loopback: the submission queue posts in order as slots free, and every entry is reused", "[client][loopback]") {
  auto c = config(2, 256);
  c.queue_depth = 40;
  LoopbackLease lease(c, 2);
  constexpr int kCalls = 2 * (2 + 40);  // every call entry of both workers
  std::vector<uint64_t> in(kCalls), out(kCalls);
  std::vector<Invocation> h(kCalls);
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < kCalls; ++i) {
      in[i] = round * 1000 + i;
      REQUIRE(lease.path->submit(kEcho, &in[i], 8, &out[i], 8, &h[i], -1) == Errc::ok);
    }
    Invocation extra;
    CHECK(lease.path->submit(kEcho, &in[0], 8, &out[0], 8, &extra, 0) == Errc::queue_full);
    for (int i = 0; i < kCalls; ++i) {
      size_t n = 0;
      REQUIRE(lease.path->wait(h[i], &n, std::chrono::microseconds(5'000'000)) == Errc::ok);
      CHECK(out[i] == in[i]);
    }
  }
}

TEST_CASE("loopback: a call given up on frees its slot when its late result comes, and no answer goes astray",
          "[client][loopback]") {
  LoopbackLease lease(config(1, 256));  // one slot: the late call holds it
  uint32_t slow[2] = {300, 0xABCD};     // 300 ms
  uint8_t late_out[64];
  Invocation h;
  REQUIRE(lease.path->submit(kSlow, slow, sizeof slow, late_out, sizeof late_out, &h, -1) == Errc::ok);
  CHECK(lease.path->wait(h, nullptr, std::chrono::microseconds(20'000)) == Errc::timeout);
  lease.path->abandon(h);
  // The next call waits in the queue for the slot, and gets its own answer, not the late one.
  uint64_t v = 77, r = 0;
  size_t n = 0;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(lease.invoke(kEcho, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(std::chrono::steady_clock::now() - t0 >= 200ms);
  CHECK(r == 77);
  CHECK(n == sizeof v);
  bool done = true;
  CHECK(lease.path->test(h, &done) == Errc::invalid_argument);  // the abandoned handle is spent
  // A queued call given up on is dropped when its turn comes.
  Invocation first, queued;
  uint32_t slow2[1] = {100};
  REQUIRE(lease.path->submit(kSlow, slow2, sizeof slow2, late_out, sizeof late_out, &first, -1) == Errc::ok);
  REQUIRE(lease.path->submit(kEcho, &v, sizeof v, &r, sizeof r, &queued, -1) == Errc::ok);
  lease.path->abandon(queued);
  REQUIRE(lease.path->wait(first, &n, std::chrono::microseconds(5'000'000)) == Errc::ok);
  v = 78;
  REQUIRE(lease.invoke(kEcho, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == 78);
}

TEST_CASE("loopback: region puts and gets, registered and staged, and their bounds", "[client][loopback]") {
  LoopbackLease lease(config(4, 1024), 2, {8192, 100});
  auto data = pattern(8192, 5);
  // Staged (unregistered, at most input_capacity per put) and registered (one write).
  for (uint64_t off = 0; off < 4096; off += 1024) {
    Invocation h;
    REQUIRE(lease.path->submit_put(0, off, data.data() + off, 1024, &h, -1) == Errc::ok);
    REQUIRE(lease.path->wait(h, nullptr, std::chrono::microseconds(5'000'000)) == Errc::ok);
  }
  std::vector<uint8_t> reg(8192);
  auto mr = lease.register_memory(reg.data(), reg.size());
  std::memcpy(reg.data(), data.data(), reg.size());
  Invocation h;
  REQUIRE(lease.path->submit_put(0, 4096, reg.data() + 4096, 4096, &h, 1) == Errc::ok);
  REQUIRE(lease.path->wait(h, nullptr, std::chrono::microseconds(5'000'000)) == Errc::ok);
  // The workers see it.
  uint64_t sum = 0, want = std::accumulate(data.begin(), data.end(), uint64_t{0});
  REQUIRE(lease.invoke(kRegionSum, nullptr, 0, &sum, sizeof sum) == Errc::ok);
  CHECK(sum == want);
  // Gets: into registered memory and through the staging.
  std::vector<uint8_t> back(1024);
  REQUIRE(lease.path->submit_get(0, 3000, back.data(), back.size(), &h, -1) == Errc::ok);
  REQUIRE(lease.path->wait(h, nullptr, std::chrono::microseconds(5'000'000)) == Errc::ok);
  CHECK(std::memcmp(back.data(), data.data() + 3000, back.size()) == 0);
  std::memset(reg.data(), 0, reg.size());
  REQUIRE(lease.path->submit_get(0, 0, reg.data(), 8192, &h, -1) == Errc::ok);
  REQUIRE(lease.path->wait(h, nullptr, std::chrono::microseconds(5'000'000)) == Errc::ok);
  CHECK(std::memcmp(reg.data(), data.data(), 8192) == 0);
  // Bounds, refused before anything is written.
  CHECK(lease.path->submit_put(1, 50, data.data(), 51, &h, -1) == Errc::region_out_of_bounds);
  CHECK(lease.path->submit_get(2, 0, back.data(), 1, &h, -1) == Errc::no_such_region);
  CHECK(lease.path->submit_get(0, 8000, back.data(), 193, &h, -1) == Errc::region_out_of_bounds);
}

TEST_CASE("loopback: progress() completes many calls in one pass, each once", "[client][loopback]") {
  LoopbackLease lease(config(8, 256), 2);
  constexpr int kCalls = 200;
  std::vector<uint64_t> in(kCalls), out(kCalls);
  std::vector<Invocation> h(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    in[i] = 5000 + i;
    REQUIRE(lease.path->submit(kEcho, &in[i], 8, &out[i], 8, &h[i], -1) == Errc::ok);
  }
  std::vector<int> seen(kCalls, 0);
  Executor::Completed done[16];
  int total = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (total < kCalls && std::chrono::steady_clock::now() < deadline) {
    const size_t n = lease.path->progress(done, 16);
    for (size_t i = 0; i < n; ++i) {
      CHECK(done[i].result == Errc::ok);
      for (int k = 0; k < kCalls; ++k)
        if (h[k].worker == done[i].handle.worker && h[k].call == done[i].handle.call &&
            h[k].generation == done[i].handle.generation)
          ++seen[k];
    }
    total += static_cast<int>(n);
  }
  REQUIRE(total == kCalls);
  for (int k = 0; k < kCalls; ++k) {
    CHECK(seen[k] == 1);
    CHECK(out[k] == in[k]);
  }
}

TEST_CASE("loopback: a worker that goes away ends what is outstanding with the lease's end", "[client][loopback]") {
  LoopbackLease lease(config(2, 256));
  uint32_t slow[1] = {200};
  uint8_t out[64];
  Invocation h;
  REQUIRE(lease.path->submit(kSlow, slow, sizeof slow, out, sizeof out, &h, -1) == Errc::ok);
  std::this_thread::sleep_for(50ms);
  lease.workers[0]->stop();  // ends its loop after the slow call: its endpoint closes with it
  lease.workers[0].reset();
  Executor::Completed done[4];
  size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got == 0 && std::chrono::steady_clock::now() < deadline) got = lease.path->progress(done, 4);
  REQUIRE(got >= 1);
  const Errc result = done[0].result;
  CHECK((result == Errc::ok || result == Errc::executor_lost));  // answered before it went, or lost with it
  uint64_t v = 1, r = 0;
  CHECK(lease.invoke(kEcho, &v, sizeof v, &r, sizeof r) == Errc::executor_lost);
}
