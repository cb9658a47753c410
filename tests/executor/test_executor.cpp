// The executor daemon, executor processes and the client API, end to end: a real
// rfaas-executord on loopback, real executor processes, the function libraries in functions/.
// The transport comes from the environment (CTest runs this once per provider).
#include <signal.h>

#include <sys/mman.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/request_codec.hpp"
#include "protocol/lease_token.hpp"
#include "rfaas/client.hpp"
#include "rfaas/fabric/fabric.hpp"
#include "support/env_guard.hpp"
#include "support/executor_daemon_process.hpp"

using namespace rfaas;
using namespace rfaas::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

DirectLeaseOptions lease_options(const ExecutorDaemonProcess& d, uint32_t cores = 1,
                                 std::chrono::milliseconds duration = 60s) {
  DirectLeaseOptions o;
  o.node_name = ExecutorDaemonProcess::kNodeName;
  o.secret_file = d.secret_file();
  o.cores = cores;
  o.duration = duration;
  o.client = "test";
  return o;
}

DeployOptions basic(uint32_t workers = 1) {
  DeployOptions o;
  o.library_path = RFAAS_FUNCTIONS_BASIC;
  o.functions = {"echo", "noop", "saxpy", "crash", "overclaim", "sleep_ms"};
  o.workers = workers;
  o.slots = 4;
  o.input_capacity = 64 * 1024;
  o.output_capacity = 64 * 1024;
  o.invocation_timeout = 10s;
  return o;
}

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131 + seed * 7) ^ (i >> 8));
  return v;
}

Errc deploy_error(const LeaseGrant& g, const DeployOptions& o) {
  try {
    Executor::deploy(g, o);
  } catch (const Error& e) {
    return e.code();
  }
  return Errc::ok;
}

// A fresh lease on the daemon still works end to end.
void check_daemon_serves(const ExecutorDaemonProcess& d) {
  auto ex = Executor::deploy(direct_lease(d.address(), lease_options(d)), basic());
  uint64_t v = 0x1234, r = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(n == sizeof v);
  CHECK(r == v);
}

}  // namespace

TEST_CASE("echo returns every byte at every size up to the slot, from any memory", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  REQUIRE(echo >= 0);
  auto in_buf = ex->allocate(64 * 1024);
  auto out_buf = ex->allocate(64 * 1024);
  for (size_t size : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{4096}, size_t{65535}, size_t{65536}}) {
    INFO("size " << size);
    auto data = pattern(size, static_cast<uint32_t>(size));
    // Unregistered memory (through rfaas's slot buffers).
    std::vector<uint8_t> out(size + 16, 0xEE);
    size_t n = 99;
    REQUIRE(ex->invoke(echo, data.data(), size, out.data(), size, &n) == Errc::ok);
    CHECK(n == size);
    CHECK(std::equal(data.begin(), data.end(), out.begin()));
    CHECK(out[size] == 0xEE);
    // rfaas buffers: written from and into directly.
    std::copy(data.begin(), data.end(), static_cast<uint8_t*>(in_buf->data()));
    std::memset(out_buf->data(), 0, 64 * 1024);
    REQUIRE(ex->invoke(echo, in_buf->data(), size, out_buf->data(), 64 * 1024, &n) == Errc::ok);
    CHECK(n == size);
    CHECK(std::equal(data.begin(), data.end(), static_cast<uint8_t*>(out_buf->data())));
  }
  // The caller's own memory, registered.
  std::vector<uint8_t> mine = pattern(10000, 3), back(10000);
  ex->register_memory(mine.data(), mine.size());
  ex->register_memory(back.data(), back.size());
  size_t n = 0;
  REQUIRE(ex->invoke(echo, mine.data() + 100, 5000, back.data() + 7, 9000, &n) == Errc::ok);
  CHECK(n == 5000);
  CHECK(std::memcmp(back.data() + 7, mine.data() + 100, 5000) == 0);
  ex->deregister_memory(mine.data());
  REQUIRE(ex->invoke(echo, mine.data(), 10, back.data(), 10, &n) == Errc::ok);  // copy path again
  auto usage = ex->release();
  CHECK(usage.invocations == 7 * 2 + 2);
}

// After a slot's first (framed) request, requests to the same output target travel without a
// header (protocol/invocation.hpp); a new target, a payload beyond the compact limit or a
// function index beyond it goes framed again. Results must not care which form carried them.
TEST_CASE("echo is right whichever request form carries it, across target and size changes", "[executor]") {
  ExecutorDaemonProcess daemon;
  DeployOptions o = basic();
  o.input_capacity = 256 * 1024;  // beyond the compact limit of 128 KiB - 1
  o.output_capacity = 256 * 1024;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  int echo = ex->function("echo");
  auto in_buf = ex->allocate(256 * 1024);
  auto out_a = ex->allocate(256 * 1024);
  auto out_b = ex->allocate(256 * 1024);
  std::vector<uint8_t> plain_in(256 * 1024), plain_out(256 * 1024);
  const size_t sizes[] = {64, 64, 0, 1, 1024, 1000, 0, 131071, 131072, 200000, 131071, 64, 8};
  auto* in = static_cast<uint8_t*>(in_buf->data());
  uint32_t seed = 0;
  size_t calls = 0;
  // Same registered target over and over, then alternating targets, then unregistered memory.
  for (int pass = 0; pass < 3; ++pass) {
    for (size_t size : sizes) {
      for (int repeat = 0; repeat < 2; ++repeat) {
        INFO("pass " << pass << " size " << size << " repeat " << repeat);
        auto data = pattern(size, ++seed);
        bool registered = pass < 2;
        uint8_t* src = registered ? in : plain_in.data();
        uint8_t* dst = pass == 0 ? static_cast<uint8_t*>(out_a->data())
                       : pass == 1 ? static_cast<uint8_t*>(((seed & 1) ? out_a : out_b)->data())
                                   : plain_out.data();
        std::copy(data.begin(), data.end(), src);
        std::memset(dst, 0xEE, size + 1);
        size_t n = 99;
        // A fixed capacity keeps the target the same from call to call.
        REQUIRE(ex->invoke(echo, src, size, dst, 256 * 1024 - 1, &n) == Errc::ok);
        ++calls;
        REQUIRE(n == size);
        REQUIRE(std::equal(data.begin(), data.end(), dst));
        if (registered) REQUIRE(dst[size] == 0xEE);  // nothing beyond the result
      }
    }
  }
  // Named errors still come back on a slot that has gone compact.
  size_t n = 0;
  uint8_t* out = static_cast<uint8_t*>(out_a->data());
  REQUIRE(ex->invoke(echo, in, 16, out, 256 * 1024 - 1, &n) == Errc::ok);
  CHECK(ex->invoke(ex->function("overclaim"), in, 10, out, 256 * 1024 - 1, &n) == Errc::output_too_large);
  CHECK(ex->invoke(echo, in, 100, out, 50, &n) == Errc::output_too_large);
  CHECK(ex->invoke(echo, in, 4, out, 256 * 1024 - 1, &n) == Errc::ok);
  CHECK(n == 4);
  CHECK(ex->release().invocations == calls + 4);
}

// The same on the wire, from a hand-made client (control messages, one worker endpoint, raw
// writes): a compact request to a slot that never had a framed one is dropped, and the worker
// serves the next requests; framed then compact requests answer into the header's target.
TEST_CASE("an executor admits only its lease's signed hello, drops a compact request without a target, and serves on",
          "[executor][protocol]") {
  ExecutorDaemonProcess daemon;
  LeaseGrant grant = direct_lease(daemon.address(), lease_options(daemon));
  std::ifstream lib_file(RFAAS_FUNCTIONS_BASIC, std::ios::binary);
  std::vector<uint8_t> library((std::istreambuf_iterator<char>(lib_file)), std::istreambuf_iterator<char>());
  protocol::AllocateRequest req;
  req.token = nlohmann::json::parse(grant.token).get<protocol::LeaseToken>();
  req.library_sha256 = protocol::sha256_hex(library.data(), library.size());
  req.library_size = library.size();
  req.library_name = "basic";
  req.functions = {"echo"};
  req.params = {1, 2, 4096, 4096, -1};
  auto control = net::TcpStream::connect(net::HostPort::parse(grant.daemon_address), net::deadline_in(5s));
  std::string msg = protocol::make_message("allocate", req);
  control.send_frame(msg.data(), msg.size(), net::deadline_in(5s));
  protocol::Allocated allocated;
  for (;;) {
    auto reply = protocol::ControlMessage::parse(control.recv_frame(protocol::kMaxControlFrame, net::deadline_in(10s)));
    if (reply.type == "send_library") {
      control.send_frame(library.data(), library.size(), net::deadline_in(10s));
      continue;
    }
    REQUIRE(reply.type == "allocated");
    allocated = reply.as<protocol::Allocated>();
    break;
  }

  auto domain = fabric::open_domain(fabric::Config::from_env());
  std::vector<uint8_t> request(4096 + 64), result(4096);
  auto request_mr = domain->register_memory(request.data(), request.size(), fabric::Access::local);
  auto result_mr = domain->register_memory(result.data(), result.size(), fabric::Access::remote_write);
  fabric::ConnectionData theirs;
  // Hellos that do not prove the lease are turned away, and the executor keeps waiting for its
  // client: unsigned, signed with another lease's key, for another worker, plain junk.
  protocol::WorkerHello hello{0, protocol::kWorkerHelloVersion, req.token.lease_id, 0, 0, {}};
  auto refused = [&](const fabric::ConnectionData& cd) {
    auto intruder = domain->create_endpoint({});
    try {
      intruder->connect(allocated.address, cd, theirs, 5s);
      return false;
    } catch (const fabric::Error&) {
      return true;
    }
  };
  CHECK(refused(fabric::make_connection_data(hello)));
  protocol::LeaseToken other = req.token;
  other.mac = std::string(64, 'a');
  protocol::sign_worker_hello(hello, protocol::worker_hello_key(other));
  CHECK(refused(fabric::make_connection_data(hello)));
  hello.worker = 1;
  protocol::sign_worker_hello(hello, protocol::worker_hello_key(req.token));
  CHECK(refused(fabric::make_connection_data(hello)));
  fabric::ConnectionData junk;
  junk.size = 7;
  CHECK(refused(junk));
  hello.worker = 0;
  protocol::sign_worker_hello(hello, protocol::worker_hello_key(req.token));
  auto ep = domain->create_endpoint({});
  ep->connect(allocated.address, fabric::make_connection_data(hello), theirs, 10s);
  auto input = fabric::read_connection_data<fabric::RemoteRegion>(theirs);
  constexpr size_t kHeader = sizeof(protocol::InvocationHeader);
  const uint64_t slot1 = protocol::slot_header_offset(1, protocol::input_slot_stride(req.params.input_capacity));

  // Sends and waits for one reply; false when none comes within `limit`.
  auto exchange = [&](size_t local_offset, size_t length, uint64_t remote_offset, uint32_t imm, uint32_t* reply,
                      std::chrono::milliseconds limit) {
    fabric::Errc rc;
    while ((rc = ep->write_imm(*request_mr, local_offset, length, input, remote_offset, imm, 0)) == fabric::Errc::again) {
      fabric::Completion c[4];
      ep->poll(c, 4);
    }
    REQUIRE(rc == fabric::Errc::ok);
    auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      fabric::Completion c[4];
      int n = ep->poll(c, 4);
      for (int i = 0; i < n; ++i) {
        REQUIRE(c[i].kind != fabric::Completion::Kind::error);
        if (c[i].kind == fabric::Completion::Kind::write_received) {
          *reply = c[i].imm;
          return true;
        }
      }
    }
    return false;
  };

  // Compact, to slot 1, which has no header yet: dropped.
  std::memset(request.data() + kHeader, 0x5A, 100);
  uint32_t imm = 0;
  CHECK_FALSE(exchange(kHeader, 100, slot1 + kHeader, protocol::compact_request_imm(1, 0, 100), &imm, 1500ms));
  // Framed, to slot 1: answered into the header's target.
  protocol::InvocationHeader h{result_mr->remote().address + 64, result_mr->remote().key, 64, 1024};
  std::memcpy(request.data(), &h, kHeader);
  for (int i = 0; i < 64; ++i) request[kHeader + i] = static_cast<uint8_t>(i + 1);
  REQUIRE(exchange(0, kHeader + 64, slot1, protocol::request_imm(1, 0), &imm, 10s));
  CHECK(protocol::response_slot(imm) == 1);
  CHECK(protocol::response_status(imm) == protocol::InvocationStatus::ok);
  CHECK(protocol::response_size(imm) == 64);
  CHECK(result[64] == 1);
  CHECK(result[127] == 64);
  // Compact, to slot 1 again: the payload alone, the target from the header left in the slot.
  for (int i = 0; i < 300; ++i) request[kHeader + i] = static_cast<uint8_t>(200 - i);
  REQUIRE(exchange(kHeader, 300, slot1 + kHeader, protocol::compact_request_imm(1, 0, 300), &imm, 10s));
  CHECK(protocol::response_status(imm) == protocol::InvocationStatus::ok);
  CHECK(protocol::response_size(imm) == 300);
  CHECK(std::memcmp(result.data() + 64, request.data() + kHeader, 300) == 0);
  // Compact with a size beyond the slot: a named status, not a read past the slot.
  REQUIRE(exchange(kHeader, 8, slot1 + kHeader, protocol::compact_request_imm(1, 0, 4097), &imm, 10s));
  CHECK(protocol::response_status(imm) == protocol::InvocationStatus::payload_too_large);
  // Framed with reserved bits set: answered bad_request (the slot comes back) and it still works.
  REQUIRE(exchange(0, kHeader + 64, slot1, protocol::request_imm(1, 0) | (1u << 29), &imm, 10s));
  CHECK(protocol::response_status(imm) == protocol::InvocationStatus::bad_request);
  CHECK(protocol::response_size(imm) == 0);
  REQUIRE(exchange(kHeader, 4, slot1 + kHeader, protocol::compact_request_imm(1, 0, 4), &imm, 10s));
  CHECK(protocol::response_size(imm) == 4);
  // A get of a region this lease does not have: region_error, nothing written; a region op with
  // reserved bits: dropped.
  protocol::InvocationHeader gh{result_mr->remote().address, result_mr->remote().key, 24, 64};
  protocol::RegionGet g{0, 0, 0, 64};
  std::memcpy(request.data(), &gh, kHeader);
  std::memcpy(request.data() + kHeader, &g, sizeof g);
  std::memset(result.data(), 0x11, 64);
  REQUIRE(exchange(0, kHeader + sizeof g, slot1, protocol::region_op_imm(1, protocol::RegionOp::get), &imm, 10s));
  CHECK(protocol::response_status(imm) == protocol::InvocationStatus::region_error);
  CHECK(protocol::response_size(imm) == 0);
  CHECK(result[0] == 0x11);
  CHECK_FALSE(exchange(0, kHeader + sizeof g, slot1, protocol::region_op_imm(1, protocol::RegionOp::get) | (1u << 20),
                       &imm, 1500ms));
}

namespace {

// A stand-in for rfaas-executord and its executor, one worker, that answers every request with
// an echo and records the form each request came in: what the client puts on the wire, seen
// from the other end.
class RecordingExecutor {
 public:
  struct Seen {
    bool compact;
    uint32_t slot, in_size;
    protocol::InvocationHeader header;  // the one the request was answered by
  };

  RecordingExecutor(uint32_t slots, uint64_t capacity)
      : control_(net::TcpListener::bind("127.0.0.1", 0)),
        domain_(fabric::open_domain(fabric::Config::from_env())),
        listener_(domain_->listen(fabric::Config::from_env().local_host, 0)),
        stride_(protocol::input_slot_stride(capacity)),
        input_(stride_ * slots),
        output_(capacity),
        slots_(slots),
        framed_(slots, 0) {
    input_mr_ = domain_->register_memory(input_.data(), input_.size(), fabric::Access::remote_write);
    output_mr_ = domain_->register_memory(output_.data(), output_.size(), fabric::Access::local);
    thread_ = std::thread([this] { serve(); });
  }
  ~RecordingExecutor() { stop(); }
  // Stops serving: before the client's endpoint closes, since over shm in one process the
  // provider may touch the closed peer's mapping while this side still polls.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  LeaseGrant grant() const {
    protocol::LeaseToken t;  // signed with a key nobody here checks
    t.lease_id = 77;
    t.executor = "recording";
    t.cores = 1;
    t.expires_at_ms = protocol::unix_now_ms() + 60'000;
    t.sign(protocol::ClusterSecret(std::vector<uint8_t>(32, 7)));
    return {"127.0.0.1:" + std::to_string(control_.port()), nlohmann::json(t).dump(), t.lease_id, t.expires_at_ms,
            t.executor};
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }
  std::string failure() {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }

 private:
  void serve() {
    try {
      session_ = control_.accept(net::deadline_in(20s));
      auto msg = protocol::ControlMessage::parse(session_.recv_frame(protocol::kMaxControlFrame, net::deadline_in(20s)));
      if (msg.type != "allocate") throw std::runtime_error("expected allocate, got " + msg.type);
      protocol::Allocated a{msg.as<protocol::AllocateRequest>().token.lease_id, listener_->address(), 1, true, ""};
      std::string reply = protocol::make_message("allocated", a);
      session_.send_frame(reply.data(), reply.size(), net::deadline_in(20s));
      fabric::ConnectionData theirs;
      ep_ = listener_->accept(fabric::EndpointConfig{}, fabric::make_connection_data(input_mr_->remote()), theirs, 20s);
      while (!stop_) {
        fabric::Completion c[8];
        int n = ep_->poll(c, 8);
        for (int i = 0; i < n; ++i) {
          if (c[i].kind == fabric::Completion::Kind::error) return;  // the client left
          if (c[i].kind == fabric::Completion::Kind::write_received) answer(c[i].imm);
        }
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      failure_ = e.what();
    }
  }
  void answer(uint32_t imm) {
    // Read with the executor's own decoder: a request it would drop is the client's fault here.
    const auto r = protocol::decode_request(imm, input_.data(), stride_, slots_, framed_.data());
    const protocol::InvocationHeader h = r.header;
    const uint32_t slot = r.slot;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (r.kind != protocol::DecodedRequest::Kind::invoke || r.reserved_set) {
        failure_ = "a request the executor would not serve (a compact one to a slot without a header?)";
        return;
      }
      seen_.push_back({protocol::request_is_compact(imm), slot, h.in_size, h});
    }
    const uint8_t* base = input_.data() + protocol::slot_header_offset(slot, stride_);
    std::memcpy(output_.data(), base + sizeof h, h.in_size);
    fabric::Errc rc;
    while ((rc = ep_->write_imm(*output_mr_, 0, h.in_size, {h.out_address, h.out_key, h.out_capacity}, 0,
                                protocol::response_imm(slot, protocol::InvocationStatus::ok, h.in_size), 0)) ==
           fabric::Errc::again) {
      fabric::Completion c[8];
      ep_->poll(c, 8);
    }
  }

  net::TcpListener control_;
  net::TcpStream session_;
  std::unique_ptr<fabric::Domain> domain_;
  std::unique_ptr<fabric::Listener> listener_;
  uint64_t stride_;
  std::vector<uint8_t> input_, output_;
  std::unique_ptr<fabric::MemoryRegion> input_mr_, output_mr_;
  std::unique_ptr<fabric::Endpoint> ep_;
  uint32_t slots_;
  std::vector<uint8_t> framed_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<Seen> seen_;
  std::string failure_;
  std::thread thread_;
};

}  // namespace

// One invocation per step through a RecordingExecutor: the result, and the form it travelled in.
struct FormStep {
  const char* what;
  const void* src;
  size_t size;
  void* dst;
  size_t capacity;
  bool compact;
};
static void check_forms(RecordingExecutor& fake, Executor& ex, const std::vector<FormStep>& steps,
                        const std::vector<uint8_t>& data) {
  size_t i = 0, n = 0;
  for (const FormStep& st : steps) {
    INFO("step " << i << ": " << st.what);
    std::memset(st.dst, 0, st.capacity);
    REQUIRE(ex.invoke(0, st.src, st.size, st.dst, st.capacity, &n, 10s) == Errc::ok);
    CHECK(n == st.size);
    CHECK(std::memcmp(st.dst, data.data(), st.size) == 0);
    auto seen = fake.seen();
    REQUIRE(seen.size() == i + 1);
    CHECK(seen[i].compact == st.compact);
    CHECK(seen[i].in_size == st.size);
    CHECK(seen[i].header.out_capacity == st.capacity);
    ++i;
  }
  fake.stop();
  CHECK(fake.failure().empty());
}

// Payloads beyond the compact size field go compact when the slot's header already names their
// size (kCompactSizeFromHeader): repeated large invocations are single-segment writes.
TEST_CASE("a large payload of the header's size travels without a header", "[executor][protocol]") {
  constexpr size_t kCap = 256 * 1024;
  RecordingExecutor fake(1, kCap);
  DeployOptions o = basic();
  o.functions = {"echo"};
  o.slots = 1;
  o.input_capacity = kCap;
  o.output_capacity = kCap;
  auto ex = Executor::deploy(fake.grant(), o);
  auto in = ex->allocate(kCap), out = ex->allocate(kCap);
  auto data = pattern(kCap, 5);
  std::memcpy(in->data(), data.data(), data.size());
  std::vector<uint8_t> plain_in(data);
  check_forms(fake, *ex,
              {{"first request of the slot", in->data(), 200000, out->data(), kCap, false},
               {"same target and size", in->data(), 200000, out->data(), kCap, true},
               {"same target, another large size", in->data(), 150000, out->data(), kCap, false},
               {"that size again", in->data(), 150000, out->data(), kCap, true},
               {"a small one between", in->data(), 100, out->data(), kCap, true},
               {"the header's size still holds", in->data(), 150000, out->data(), kCap, true},
               {"unregistered input of that size", plain_in.data(), 150000, out->data(), kCap, true},
               {"the largest compact size field", in->data(), protocol::kMaxCompactPayload, out->data(), kCap, true},
               {"one beyond it", in->data(), protocol::kMaxCompactPayload + 1, out->data(), kCap, false}},
              data);
}

TEST_CASE("the client sends a slot's header only when its output target changes", "[executor][protocol]") {
  RecordingExecutor fake(1, 4096);  // one slot: every request goes through slot 0
  DeployOptions o = basic();
  o.functions = {"echo"};
  o.slots = 1;
  o.input_capacity = 4096;
  o.output_capacity = 4096;
  auto ex = Executor::deploy(fake.grant(), o);
  auto in = ex->allocate(4096), out1 = ex->allocate(4096), out2 = ex->allocate(4096);
  auto data = pattern(4096, 9);
  std::memcpy(in->data(), data.data(), data.size());
  std::vector<uint8_t> mine_out(4096), other_out(4096);
  check_forms(fake, *ex,
              {{"first request of the slot", in->data(), 100, out1->data(), 4096, false},
               {"same target", in->data(), 100, out1->data(), 4096, true},
               {"same target, other size", in->data(), 3000, out1->data(), 4096, true},
               {"unregistered input, same target", data.data(), 64, out1->data(), 4096, true},
               {"another registered buffer", in->data(), 64, out2->data(), 4096, false},
               {"same buffer, other capacity", in->data(), 64, out2->data(), 2048, false},
               {"same buffer and capacity again", in->data(), 64, out2->data(), 2048, true},
               {"another offset in the buffer", in->data(), 64, static_cast<uint8_t*>(out2->data()) + 64, 2048, false},
               {"unregistered output (the client's staging slot)", in->data(), 64, mine_out.data(), 4096, false},
               {"another unregistered output, same capacity: same staging slot", in->data(), 64, other_out.data(), 4096, true},
               {"no payload", in->data(), 0, other_out.data(), 4096, true}},
              data);
}

// A function's prints used to share the executor's report pipe, which nobody reads during a
// lease: past its 64 KiB the function blocked and the lease hung. They go to stderr now.
TEST_CASE("a chatty function neither blocks its lease nor disturbs the executor's reports", "[executor]") {
  ExecutorDaemonProcess daemon;
  DeployOptions o = basic();
  o.functions = {"echo", "chatty"};
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  uint32_t bytes = 96 * 1024;  // each call: more than a pipe holds
  size_t n = 99;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(ex->invoke(ex->function("chatty"), &bytes, sizeof bytes, nullptr, 0, &n, 10s) == Errc::ok);
    CHECK(n == 0);
  }
  uint64_t v = 9, r = 0;
  REQUIRE(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == 9);
  CHECK(ex->release().invocations == 3);  // the usage report came through
  check_daemon_serves(daemon);
}

// Leased code sees the environment its transport and libraries need, not the daemon's: the
// review found RFAAS_SECRET_FILE (set by rfaas-executord.sbatch) readable by any function.
TEST_CASE("an executor does not inherit the daemon's secrets or job environment", "[executor][security]") {
  ::setenv("RFAAS_SECRET_FILE", "/etc/rfaas/secret", 1);
  ::setenv("SLURM_JOB_ID", "77", 1);
  ::setenv("SOME_TOKEN", "hunter2", 1);
  ExecutorDaemonProcess daemon;  // inherits them
  ::unsetenv("RFAAS_SECRET_FILE");
  ::unsetenv("SLURM_JOB_ID");
  ::unsetenv("SOME_TOKEN");
  DeployOptions o = basic();
  o.functions = {"env_value"};
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  auto value = [&](const std::string& name) {
    std::vector<char> out(4096);
    size_t n = 0;
    REQUIRE(ex->invoke(0, name.data(), name.size(), out.data(), out.size(), &n) == Errc::ok);
    return std::string(out.data(), n);
  };
  CHECK(value("RFAAS_SECRET_FILE").empty());
  CHECK(value("SLURM_JOB_ID").empty());
  CHECK(value("SOME_TOKEN").empty());
  CHECK_FALSE(value("PATH").empty());
  CHECK(value("OPENBLAS_NUM_THREADS") == "1");
  if (const char* provider = std::getenv("RFAAS_OFI_PROVIDER")) CHECK(value("RFAAS_OFI_PROVIDER") == provider);
}

TEST_CASE("many invocations in flight across workers all complete correctly", "[executor]") {
  ExecutorDaemonProcess daemon({"--cores", "0,1"});
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon, 2)), basic(2));
  REQUIRE(ex->workers() == 2);
  int echo = ex->function("echo");
  constexpr int kRounds = 50;
  constexpr int kInFlight = 8;  // 2 workers x 4 slots
  std::vector<std::vector<uint8_t>> inputs(kInFlight), outputs(kInFlight);
  for (int round = 0; round < kRounds; ++round) {
    Invocation h[kInFlight];
    for (int i = 0; i < kInFlight; ++i) {
      inputs[i] = pattern(1000 + i * 10, round * 100 + i);
      outputs[i].assign(inputs[i].size(), 0);
      REQUIRE(ex->submit(echo, inputs[i].data(), inputs[i].size(), outputs[i].data(), outputs[i].size(), &h[i]) ==
              Errc::ok);
    }
    // Every slot is taken now: one more waits in the queue and completes after a slot frees.
    Invocation extra;
    uint8_t x = static_cast<uint8_t>(round), y = 0;
    REQUIRE(ex->submit(echo, &x, 1, &y, 1, &extra) == Errc::ok);
    for (int i = kInFlight - 1; i >= 0; --i) {  // out of order on purpose
      size_t n = 0;
      REQUIRE(ex->wait(h[i], &n) == Errc::ok);
      REQUIRE(n == inputs[i].size());
      REQUIRE(outputs[i] == inputs[i]);
    }
    size_t n = 0;
    REQUIRE(ex->wait(extra, &n) == Errc::ok);
    REQUIRE((n == 1 && y == x));
  }
  // invoke_all: one result per worker.
  uint32_t v = 77, r0 = 0, r1 = 0;
  void* outs[2] = {&r0, &r1};
  size_t sizes[2];
  REQUIRE(ex->invoke_all(echo, &v, sizeof v, outs, sizeof v, sizes) == Errc::ok);
  CHECK((r0 == 77 && r1 == 77 && sizes[0] == 4 && sizes[1] == 4));
}

TEST_CASE("saxpy computes on the executor", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  constexpr uint32_t n = 1000;
  std::vector<uint8_t> in(8 + 8 * n);
  float a = 2.5f;
  std::memcpy(in.data(), &a, 4);
  std::memcpy(in.data() + 4, &n, 4);
  auto* x = reinterpret_cast<float*>(in.data() + 8);
  for (uint32_t i = 0; i < n; ++i) x[i] = static_cast<float>(i), x[n + i] = 1.0f;
  std::vector<float> out(n);
  size_t got = 0;
  REQUIRE(ex->invoke(ex->function("saxpy"), in.data(), in.size(), out.data(), out.size() * 4, &got) == Errc::ok);
  REQUIRE(got == n * 4);
  for (uint32_t i = 0; i < n; ++i) REQUIRE(out[i] == 2.5f * i + 1.0f);
}

TEST_CASE("bad requests are named errors and the lease keeps working", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  std::vector<uint8_t> big(64 * 1024 + 1), out(64 * 1024);
  size_t n;
  CHECK(ex->function("no_such_function") == -1);
  CHECK(ex->invoke(-1, big.data(), 1, out.data(), 1, &n) == Errc::unknown_function);
  const int past_last = static_cast<int>(basic().functions.size());
  CHECK(ex->invoke(past_last, big.data(), 1, out.data(), 1, &n) == Errc::unknown_function);
  CHECK(ex->invoke(ex->function("echo"), big.data(), big.size(), out.data(), out.size(), &n) ==
        Errc::payload_too_large);
  CHECK(ex->invoke(ex->function("overclaim"), big.data(), 10, out.data(), out.size(), &n) == Errc::output_too_large);
  // A result larger than the caller's buffer (but within the lease) is refused, not truncated.
  CHECK(ex->invoke(ex->function("echo"), big.data(), 100, out.data(), 50, &n) == Errc::output_too_large);
  uint32_t v = 5, r = 0;
  CHECK(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n) == Errc::ok);
  CHECK(r == 5);
}

TEST_CASE("forged, misdirected and expired tokens are refused; the daemon serves on", "[executor][token]") {
  ExecutorDaemonProcess daemon;
  auto grant = direct_lease(daemon.address(), lease_options(daemon));
  SECTION("a token with a changed field") {
    auto j = nlohmann::json::parse(grant.token);
    j["cores"] = 64;
    grant.token = j.dump();
    CHECK(deploy_error(grant, basic()) == Errc::bad_token);
  }
  SECTION("a token signed with another secret") {
    TempDir dir;
    auto other = (dir.path() / "other").string();
    {
      std::ofstream s(other);
      s << "a completely different secret!!";
    }
    ::chmod(other.c_str(), 0600);
    auto o = lease_options(daemon);
    o.secret_file = other;
    CHECK(deploy_error(direct_lease(daemon.address(), o), basic()) == Errc::bad_token);
  }
  SECTION("a token for another node") {
    auto o = lease_options(daemon);
    o.node_name = "some-other-node";
    CHECK(deploy_error(direct_lease(daemon.address(), o), basic()) == Errc::bad_token);
  }
  SECTION("an expired token") {
    auto o = lease_options(daemon);
    o.duration = -1000ms;
    CHECK(deploy_error(direct_lease(daemon.address(), o), basic()) == Errc::lease_expired);
  }
  SECTION("a lease id already being served") {
    auto ex = Executor::deploy(grant, basic());
    CHECK(deploy_error(grant, basic()) == Errc::lease_in_use);
  }
  SECTION("a token presented again after its lease was released") {
    // The review's replay: deploy, release, deploy the same grant (still unexpired).
    auto ex = Executor::deploy(grant, basic());
    uint64_t v = 3, r = 0;
    size_t n = 0;
    REQUIRE(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
    ex->release();
    CHECK(deploy_error(grant, basic()) == Errc::lease_expired);
    CHECK(deploy_error(grant, basic()) == Errc::lease_expired);  // and again: still spent
  }
  SECTION("more cores than the node has") {
    CHECK(deploy_error(direct_lease(daemon.address(), lease_options(daemon, 64)), basic(64)) == Errc::no_capacity);
  }
  SECTION("more workers than the token grants") {
    CHECK(deploy_error(grant, basic(2)) == Errc::invalid_argument);
    // A refused deploy spends the lease (the broker, if any, is told it ended): lease again.
    CHECK(deploy_error(grant, basic()) == Errc::lease_expired);
  }
  SECTION("refused deploys of a lease being served end nothing") {
    auto ex = Executor::deploy(grant, basic());
    CHECK(deploy_error(grant, basic()) == Errc::lease_in_use);
    CHECK(deploy_error(grant, basic(2)) == Errc::invalid_argument);
    uint64_t v = 4, r = 0;
    size_t n = 0;
    CHECK(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  }
  CHECK(daemon.alive());
  check_daemon_serves(daemon);
}

TEST_CASE("library problems are named errors", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto grant = [&] { return direct_lease(daemon.address(), lease_options(daemon)); };
  SECTION("a function name that does not resolve") {
    auto o = basic();
    o.functions = {"echo", "not_in_this_library"};
    try {
      Executor::deploy(grant(), o);
      FAIL("deployed");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::library_load_failed);
      CHECK_THAT(e.what(), Catch::Contains("'not_in_this_library' is not in librfaas_functions_basic.so"));
    }
  }
  SECTION("a library whose own dependency is not on the executor node") {
    // Only the library is shipped and it loads from a memfd: nothing beside it there.
    DeployOptions o;
    o.library_path = RFAAS_TEST_NEEDS_DEP;
    o.functions = {"uses_dep"};
    try {
      Executor::deploy(grant(), o);
      FAIL("deployed");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::library_load_failed);
      INFO(e.what());
      CHECK_THAT(e.what(), Catch::Contains("librfaas_test_needs_dep.so: librfaas_test_dep.so: cannot open shared object"));
      CHECK_THAT(e.what(), !Catch::Contains("/proc/self/fd"));
      CHECK_THAT(e.what(), Catch::Contains("must be installed on the executor node"));
    }
  }
  SECTION("a library with its dependency shipped beside it") {
    DeployOptions o;
    o.library_path = RFAAS_TEST_NEEDS_DEP;
    o.dependencies = {RFAAS_TEST_DEP};
    o.functions = {"uses_dep"};
    for (int round = 0; round < 2; ++round) {  // the second from the daemon's cache
      auto ex = Executor::deploy(grant(), o);
      CHECK(ex->library_was_cached() == (round == 1));
      uint64_t v = 0;
      uint8_t none = 0;
      size_t n = 0;
      CHECK(ex->invoke(0, &none, 0, &v, sizeof v, &n) == Errc::ok);
      CHECK(v == 42);  // computed by the shipped dependency
    }
  }
  SECTION("a dependency that is not a library") {
    TempDir dir;
    auto path = (dir.path() / "libjunk.so").string();
    std::ofstream(path) << "this is not an ELF file";
    DeployOptions o;
    o.library_path = RFAAS_TEST_NEEDS_DEP;
    o.dependencies = {path};
    o.functions = {"uses_dep"};
    try {
      Executor::deploy(grant(), o);
      FAIL("deployed");
    } catch (const Error& e) {
      CHECK(e.code() == Errc::library_load_failed);
      CHECK_THAT(e.what(), Catch::Contains("dependency libjunk.so: "));
    }
  }
  SECTION("a file that is not a shared library") {
    TempDir dir;
    auto path = (dir.path() / "libjunk.so").string();
    std::ofstream(path) << "this is not an ELF file";
    auto o = basic();
    o.library_path = path;
    CHECK(deploy_error(grant(), o) == Errc::library_load_failed);
  }
  SECTION("a library path that does not exist") {
    auto o = basic();
    o.library_path = "/nonexistent/lib.so";
    CHECK(deploy_error(grant(), o) == Errc::library_load_failed);
  }
  check_daemon_serves(daemon);
}

TEST_CASE("memory mapped where a dropped buffer was is not taken for it", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  void* where;
  {
    auto b = ex->allocate(4096);
    where = b->data();
  }
  // The same addresses, mapped again for the caller's own memory: unregistered, so it travels
  // through a copy, not through the dropped buffer's (deregistered) memory region.
  void* p = ::mmap(where, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  REQUIRE(p == where);
  std::memset(p, 0x3c, 4096);
  std::vector<uint8_t> out(4096);
  size_t n = 0;
  CHECK(ex->invoke(ex->function("echo"), p, 4096, out.data(), out.size(), &n) == Errc::ok);
  CHECK(n == 4096);
  CHECK(std::memcmp(p, out.data(), 4096) == 0);
  ::munmap(p, 4096);
}

TEST_CASE("the code cache sends a library once", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto first = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  CHECK_FALSE(first->library_was_cached());
  first->release();
  auto second = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  CHECK(second->library_was_cached());
  uint32_t v = 9, r = 0;
  size_t n;
  CHECK(second->invoke(second->function("echo"), &v, 4, &r, 4, &n) == Errc::ok);
}

TEST_CASE("a crashing function fails only its lease, with executor_lost", "[executor][faults]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  uint32_t v = 1, r;
  size_t n;
  auto t0 = Clock::now();
  CHECK(ex->invoke(ex->function("crash"), &v, 4, &r, 4, &n) == Errc::executor_lost);
  CHECK(Clock::now() - t0 < 5s);
  CHECK(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n) == Errc::executor_lost);
  CHECK(daemon.alive());
  check_daemon_serves(daemon);
}

TEST_CASE("a function writing past its output faults at the slot's guard page and fails its lease by name",
          "[executor][faults]") {
  TempDir dir;
  auto log = (dir.path() / "daemon.log").string();
  ExecutorDaemonProcess daemon({}, {}, ExecutorDaemonProcess::kNodeName, log);
  DeployOptions o;
  o.library_path = RFAAS_TEST_OVERRUN;
  o.functions = {"overrun"};
  o.slots = 2;
  o.input_capacity = 64;
  o.output_capacity = 4096;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  std::vector<uint8_t> out(4096);
  size_t n = 0;
  // Within the capacity: served.
  uint64_t ask = 4096;
  CHECK(ex->invoke(0, &ask, sizeof ask, out.data(), out.size(), &n) == Errc::ok);
  CHECK(n == 4096);
  // Past it: the guard page. The lease fails (executor_lost) in bounded time, the daemon names
  // the function and the signal, and serves on.
  ask = 4096 + 64;
  auto t0 = Clock::now();
  CHECK(ex->invoke(0, &ask, sizeof ask, out.data(), out.size(), &n) == Errc::executor_lost);
  CHECK(Clock::now() - t0 < 5s);
  check_daemon_serves(daemon);
  std::string text;
  for (auto end = Clock::now() + 5s; Clock::now() < end; std::this_thread::sleep_for(50ms)) {
    std::ifstream f(log);
    text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (text.find("executor_crashed") != std::string::npos) break;
  }
  INFO(text);
  CHECK_THAT(text, Catch::Contains("function 'overrun' wrote past the end of its output (worker 0, slot 0, output "
                                   "capacity 4096 bytes): executor "));
#if !defined(__SANITIZE_ADDRESS__)
  CHECK_THAT(text, Catch::Contains("capacity 4096 bytes): executor killed by signal 11"));  // (ASan: its report, exit 1)
#endif
}

TEST_CASE("an executor killed with SIGKILL mid-run fails in-flight invocations in bounded time", "[executor][faults]") {
  if (const char* why = sigkill_unsafe_provider()) {
    WARN(why);
    return;
  }
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  std::vector<uint8_t> in = pattern(4096, 1), out(4096);
  size_t n;
  REQUIRE(ex->invoke(echo, in.data(), in.size(), out.data(), out.size(), &n) == Errc::ok);
  // The serving executor and the daemon's next standby (started shortly after a lease begins):
  // both die; the daemon must start another standby for the next lease.
  auto pids = daemon.executors();
  for (auto until = Clock::now() + 5s; pids.size() < 2 && Clock::now() < until; pids = daemon.executors())
    std::this_thread::sleep_for(20ms);
  REQUIRE(pids.size() == 2);
  Invocation h[4];
  for (auto& hh : h) REQUIRE(ex->submit(echo, in.data(), in.size(), out.data(), out.size(), &hh) == Errc::ok);
  for (pid_t p : pids) ::kill(p, SIGKILL);
  auto t0 = Clock::now();
  int lost = 0;
  for (auto& hh : h) {
    Errc e = ex->wait(hh, &n, 10s);
    CHECK((e == Errc::ok || e == Errc::executor_lost));  // done before the kill, or failed
    lost += e == Errc::executor_lost;
  }
  CHECK(Clock::now() - t0 < 5s);
  // From now on every call says so at once.
  CHECK(ex->invoke(echo, in.data(), in.size(), out.data(), out.size(), &n, 1s) == Errc::executor_lost);
  INFO(lost << " of 4 in-flight invocations failed");
  CHECK(daemon.alive());
  check_daemon_serves(daemon);
}

TEST_CASE("an expired lease stops serving with lease_expired", "[executor][lease]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon, 1, 1500ms)), basic());
  uint32_t v = 3, r;
  size_t n;
  REQUIRE(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n) == Errc::ok);
  std::this_thread::sleep_for(1700ms);
  auto t0 = Clock::now();
  CHECK(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n, 3s) == Errc::lease_expired);
  CHECK(Clock::now() - t0 < 5s);
  // Its core is free again.
  check_daemon_serves(daemon);
}

TEST_CASE("warm executors wake for an invocation", "[executor]") {
  ExecutorDaemonProcess daemon;
  auto o = basic();
  o.hot_timeout_us = 0;  // always warm
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  uint32_t v = 11, r = 0;
  size_t n;
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(200ms);
    REQUIRE(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n, 2s) == Errc::ok);
    CHECK(r == 11);
  }
}

// The client keeps time in cycle-counter ticks (clock/cycle_clock.hpp): a timeout must still
// mean wall-clock time, polling hot or sleeping, and a late result must free its slot.
TEST_CASE("a result later than the timeout: timeout on time, the slot returns with the late result", "[executor]") {
  ExecutorDaemonProcess daemon;
  int64_t client_hot_us = GENERATE(int64_t{-1}, int64_t{1000});  // always polling / then sleeping
  INFO("client_hot_timeout_us " << client_hot_us);
  DeployOptions o = basic();
  o.slots = 1;
  o.client_hot_timeout_us = client_hot_us;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  int sleep_ms = ex->function("sleep_ms"), echo = ex->function("echo");
  uint32_t ms = 700, back = 0;
  uint64_t v = 42, r = 0;
  size_t n = 0;

  // invoke() gives up after its timeout and abandons the slot.
  auto t0 = Clock::now();
  CHECK(ex->invoke(sleep_ms, &ms, sizeof ms, &back, sizeof back, &n, 150ms) == Errc::timeout);
  auto waited = Clock::now() - t0;
  CHECK(waited >= 145ms);
  CHECK(waited < 600ms);
  // The one slot is still out: the next call waits in the queue until the late result frees it.
  // The abandoned call's (unregistered) buffer is not written when its late result arrives.
  back = 0xdeadbeef;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == v);
  CHECK(Clock::now() - t0 >= 650ms);
  CHECK(back == 0xdeadbeef);

  // wait() returns timeout and leaves the invocation pending; a later wait() gets the result.
  Invocation h;
  REQUIRE(ex->submit(sleep_ms, &ms, sizeof ms, &back, sizeof back, &h) == Errc::ok);
  t0 = Clock::now();
  CHECK(ex->wait(h, &n, 100ms) == Errc::timeout);
  waited = Clock::now() - t0;
  CHECK(waited >= 95ms);
  CHECK(waited < 600ms);
  REQUIRE(ex->wait(h, &n, 5s) == Errc::ok);
  CHECK(n == sizeof back);
  CHECK(back == ms);
  CHECK(Clock::now() - t0 >= 650ms);
}

TEST_CASE("a client that disappears gives its cores back", "[executor][faults]") {
  ExecutorDaemonProcess daemon({"--cores", "0"});
  {
    auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
    // The only core is leased.
    CHECK(deploy_error(direct_lease(daemon.address(), lease_options(daemon)), basic()) == Errc::no_capacity);
  }  // destroyed without release(): endpoints and control connection close
  auto t0 = Clock::now();
  for (;;) {
    Errc e = deploy_error(direct_lease(daemon.address(), lease_options(daemon)), basic());
    if (e == Errc::ok) break;
    REQUIRE(Clock::now() - t0 < 5s);
    std::this_thread::sleep_for(50ms);
  }
}

TEST_CASE("garbage on the control port is refused and the daemon serves on", "[executor][faults]") {
  ExecutorDaemonProcess daemon;
  auto hp = net::HostPort::parse(daemon.address());
  auto expect_refusal = [&](const std::vector<uint8_t>& frame, bool framed) {
    auto s = net::TcpStream::connect(hp, net::deadline_in(2s));
    if (framed) s.send_frame(frame.data(), frame.size(), net::deadline_in(2s));
    else s.send_all(frame.data(), frame.size(), net::deadline_in(2s));
    try {
      auto reply = s.recv_frame(64 * 1024, net::deadline_in(5s));
      std::string text(reply.begin(), reply.end());
      CHECK(text.find("\"error\"") != std::string::npos);
    } catch (const net::NetError& e) {
      CHECK(e.code() == net::NetErrc::closed);  // an oversized length: the daemon hangs up
    }
  };
  std::string not_json = "hello, is this rfaas?";
  expect_refusal({not_json.begin(), not_json.end()}, true);
  std::string wrong_type = R"({"type":"launch_missiles","version":1,"body":{}})";
  expect_refusal({wrong_type.begin(), wrong_type.end()}, true);
  std::string bad_body = R"({"type":"allocate","version":1,"body":{"token":42}})";
  expect_refusal({bad_body.begin(), bad_body.end()}, true);
  expect_refusal({0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3}, false);  // a 2 GiB frame announced
  // 30,000 levels of nesting: refused before the parser recurses (no stack overflow).
  std::string deep = R"({"type":"allocate","version":1,"body":)" + std::string(30000, '[') + std::string(30000, ']') + "}";
  auto t0 = std::chrono::steady_clock::now();
  expect_refusal({deep.begin(), deep.end()}, true);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  {
    // A client that connects and says nothing is dropped after the control timeout; meanwhile
    // others are served.
    auto silent = net::TcpStream::connect(hp, net::deadline_in(2s));
    check_daemon_serves(daemon);
  }
  CHECK(daemon.alive());
  check_daemon_serves(daemon);
}

TEST_CASE("the C API works from a C program", "[executor][c-api]") {
  ExecutorDaemonProcess daemon;
  ChildProcess c({RFAAS_C_API_CLIENT, daemon.address(), ExecutorDaemonProcess::kNodeName, daemon.secret_file(),
                  RFAAS_FUNCTIONS_BASIC});
  CHECK(c.exit_code(60s) == 0);
}

TEST_CASE("a daemon shutting down revokes its leases with lease_revoked", "[executor][lease]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  uint32_t v = 4, r;
  size_t n;
  REQUIRE(ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n) == Errc::ok);
  daemon.process().kill(SIGTERM);  // what Slurm sends on scancel or preemption
  auto t0 = Clock::now();
  Errc e = Errc::ok;
  while (e == Errc::ok && Clock::now() - t0 < 10s) {
    e = ex->invoke(ex->function("echo"), &v, 4, &r, 4, &n, 2s);
    if (e == Errc::ok) std::this_thread::sleep_for(20ms);
  }
  CHECK(e == Errc::lease_revoked);
  CHECK(Clock::now() - t0 < 5s);
  CHECK(daemon.process().exit_code(15s) == 0);
}

TEST_CASE("DeployOptions::fabric is the transport: the environment is not read when it is given", "[executor]") {
  ExecutorDaemonProcess daemon;
  DeployOptions o = basic();
  o.fabric = fabric::Config::from_env();  // this test's transport, read here
  EnvGuard backend{"RFAAS_FABRIC"};
  ::setenv("RFAAS_FABRIC", "no-such-backend", 1);  // what deploy would refuse, had it read it
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  uint64_t v = 11, r = 0;
  size_t n = 0;
  CHECK(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == v);
  o.fabric.reset();
  try {
    Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
    FAIL("deployed with an unknown backend in RFAAS_FABRIC");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
  }
}

TEST_CASE("progress() hands back every completed call once, queued ones too, and none that wait() took",
          "[executor][progress]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  constexpr int kCalls = 24;  // beyond the slots: the rest wait in the submission queue
  uint64_t in[kCalls], out[kCalls] = {};
  Invocation h[kCalls];
  for (int i = 0; i < kCalls; ++i) {
    in[i] = 1000 + i;
    REQUIRE(ex->submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i], &h[i]) == Errc::ok);
  }
  size_t n = 0;
  REQUIRE(ex->wait(h[3], &n) == Errc::ok);
  REQUIRE(ex->wait(h[17], &n) == Errc::ok);
  std::vector<int> seen(kCalls, 0);
  Executor::Completed done[5];  // fewer than what completes: progress() returns the rest next time
  int total = 0;
  auto deadline = Clock::now() + 10s;
  while (total < kCalls - 2 && Clock::now() < deadline) {
    size_t got = ex->progress(done, 5);
    REQUIRE(got <= 5);
    for (size_t i = 0; i < got; ++i) {
      auto it = std::find_if(h, h + kCalls, [&](const Invocation& x) {
        return x.worker == done[i].handle.worker && x.call == done[i].handle.call && x.generation == done[i].handle.generation;
      });
      REQUIRE(it != h + kCalls);
      const int k = static_cast<int>(it - h);
      ++seen[k];
      CHECK(done[i].result == Errc::ok);
      CHECK(done[i].size == sizeof(uint64_t));
      CHECK(out[k] == in[k]);
    }
    total += static_cast<int>(got);
  }
  CHECK(total == kCalls - 2);
  for (int i = 0; i < kCalls; ++i) CHECK(seen[i] == (i == 3 || i == 17 ? 0 : 1));
  CHECK(ex->progress(done, 5) == 0);
  bool finished = true;
  CHECK(ex->test(h[5], &finished) == Errc::invalid_argument);  // spent, as after wait()
}

// --- resident regions, the context ABI, the submission queue ------------------------------------

namespace {

DeployOptions with_context_functions(uint32_t workers = 1) {
  DeployOptions o = basic(workers);
  o.functions.insert(o.functions.end(), {"region_read", "fill_capacity", "fail_with", "region_sum", "next_in_sequence"});
  return o;
}

struct RegionRead {
  uint32_t region, pad;
  uint64_t offset, length;
};

// region_read pinned to one worker: what that worker's functions see of the region.
std::vector<uint8_t> read_on(Executor& ex, int worker, uint32_t region, uint64_t offset, uint64_t length) {
  RegionRead ask{region, 0, offset, length};
  std::vector<uint8_t> out(length);
  Invocation h;
  REQUIRE(ex.submit(ex.function("region_read"), &ask, sizeof ask, out.data(), out.size(), &h, worker) == Errc::ok);
  size_t n = 0;
  REQUIRE(ex.wait(h, &n) == Errc::ok);
  REQUIRE(n == length);
  return out;
}

}  // namespace

TEST_CASE("a put is seen by every worker's functions and reads back, from any memory", "[executor][regions]") {
  ExecutorDaemonProcess daemon({"--cores", "0,1"});
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon, 2)), with_context_functions(2));
  const size_t size = 3 * 1024 * 1024 + 17;  // not a page multiple
  uint32_t region = ex->create_region(size);
  CHECK(region == 0);
  CHECK(ex->region_count() == 1);
  CHECK(ex->region_size(region) == size);
  // A fresh region is zeroed.
  auto zero = read_on(*ex, 1, region, size - 4096, 4096);
  CHECK(std::all_of(zero.begin(), zero.end(), [](uint8_t b) { return b == 0; }));

  bool registered = GENERATE(false, true);
  INFO("registered source " << registered);
  auto data = pattern(size, registered ? 11 : 12);
  if (registered) ex->register_memory(data.data(), data.size());
  REQUIRE(ex->put(region, 0, data.data(), data.size()) == Errc::ok);
  for (int w = 0; w < 2; ++w) {
    INFO("worker " << w);
    CHECK(read_on(*ex, w, region, 0, 4096) == std::vector<uint8_t>(data.begin(), data.begin() + 4096));
    CHECK(read_on(*ex, w, region, size - 60000, 60000) == std::vector<uint8_t>(data.end() - 60000, data.end()));
  }
  // A large operand, read whole by a function.
  uint64_t sum = 0, want = 0;
  for (uint8_t b : data) want += b;
  size_t n = 0;
  REQUIRE(ex->invoke(ex->function("region_sum"), &region, sizeof region, &sum, sizeof sum, &n) == Errc::ok);
  CHECK(sum == want);
  // Read back whole, into registered and unregistered memory.
  std::vector<uint8_t> back(size);
  REQUIRE(ex->get(region, 0, back.data(), back.size()) == Errc::ok);
  CHECK(back == data);
  auto reg = ex->allocate(size);
  REQUIRE(ex->get(region, 0, reg->data(), size) == Errc::ok);
  CHECK(std::memcmp(reg->data(), data.data(), size) == 0);
  // A second region is independent of the first.
  uint32_t second = ex->create_region(4096);
  CHECK(second == 1);
  uint64_t marker = 0xfeedfacecafebeefull;
  REQUIRE(ex->put(second, 4096 - 8, &marker, sizeof marker) == Errc::ok);
  CHECK(read_on(*ex, 0, region, 4096 - 8, 8) == std::vector<uint8_t>(data.begin() + 4088, data.begin() + 4096));
  if (registered) ex->deregister_memory(data.data());
}

// A get is [header | RegionGet] in a slot: it must fit every slot, the last one too, even of a
// lease that takes no input at all.
TEST_CASE("gets work through every slot of a lease without input capacity", "[executor][regions]") {
  ExecutorDaemonProcess daemon;
  DeployOptions o = basic();
  o.slots = 2;
  o.input_capacity = 0;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  uint32_t region = ex->create_region(256);
  auto src = ex->allocate(256);
  auto* bytes = static_cast<uint8_t*>(src->data());
  for (int i = 0; i < 256; ++i) bytes[i] = static_cast<uint8_t>(i);
  REQUIRE(ex->put(region, 0, src->data(), 256) == Errc::ok);
  for (int round = 0; round < 3; ++round) {
    std::vector<uint8_t> a(128), b(128);
    Invocation ha, hb;
    REQUIRE(ex->submit_get(region, 0, a.data(), a.size(), &ha) == Errc::ok);  // slot 0
    REQUIRE(ex->submit_get(region, 128, b.data(), b.size(), &hb) == Errc::ok);  // slot 1, the last
    REQUIRE(ex->wait(ha, nullptr) == Errc::ok);
    REQUIRE(ex->wait(hb, nullptr) == Errc::ok);
    CHECK(std::equal(a.begin(), a.end(), bytes));
    CHECK(std::equal(b.begin(), b.end(), bytes + 128));
  }
}

TEST_CASE("puts and invocations interleaved keep the documented order on every worker", "[executor][regions]") {
  ExecutorDaemonProcess daemon({"--cores", "0,1"});
  DeployOptions o = with_context_functions(2);
  o.slots = 8;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon, 2)), o);
  constexpr size_t kWords = 512;
  uint32_t region = ex->create_region(kWords * 8);
  std::vector<uint64_t> mirror(kWords, 0);
  // A put, completed, then a call on either worker: it sees the put. Many in a row, mixed with
  // batches of puts in flight together.
  for (uint64_t round = 1; round <= 300; ++round) {
    size_t at = (round * 37) % kWords;
    if (round % 10 == 0) {
      Invocation hs[8];
      uint64_t vals[8];
      for (int i = 0; i < 8; ++i) {
        vals[i] = round * 1000 + i;
        size_t where = (at + i * 61) % kWords;
        mirror[where] = vals[i];
        REQUIRE(ex->submit_put(region, where * 8, &vals[i], 8, &hs[i]) == Errc::ok);
      }
      for (auto& h : hs) REQUIRE(ex->wait(h, nullptr) == Errc::ok);
    } else {
      uint64_t v = round;
      mirror[at] = v;
      Invocation h;
      REQUIRE(ex->submit_put(region, at * 8, &v, 8, &h, static_cast<int>(round % 2)) == Errc::ok);
      REQUIRE(ex->wait(h, nullptr) == Errc::ok);
    }
    auto seen = read_on(*ex, static_cast<int>((round / 3) % 2), region, 0, kWords * 8);
    REQUIRE(std::memcmp(seen.data(), mirror.data(), kWords * 8) == 0);
  }
}

TEST_CASE("region errors are named, write nothing, and the lease keeps working", "[executor][regions]") {
  ExecutorDaemonProcess daemon;
  auto opts = lease_options(daemon);
  opts.memory_bytes = 16 << 20;
  auto ex = Executor::deploy(direct_lease(daemon.address(), opts), with_context_functions());
  uint32_t region = ex->create_region(4096);
  auto data = pattern(4096, 3);
  REQUIRE(ex->put(region, 0, data.data(), data.size()) == Errc::ok);
  uint64_t junk[4] = {1, 2, 3, 4};
  Invocation h;
  CHECK(ex->put(region, 4096 - 8, junk, 16) == Errc::region_out_of_bounds);
  CHECK(ex->submit_put(region, 4097, junk, 0, &h) == Errc::region_out_of_bounds);
  CHECK(ex->submit_put(region, UINT64_MAX - 4, junk, 8, &h) == Errc::region_out_of_bounds);
  CHECK(ex->put(1, 0, junk, 8) == Errc::no_such_region);
  CHECK(ex->submit_get(region, 4000, junk, 100, &h) == Errc::region_out_of_bounds);
  CHECK(ex->get(2, 0, junk, 8) == Errc::no_such_region);
  // Beyond the lease's memory (16 MiB, of which the slots take ~0.5 MiB).
  try {
    ex->create_region(16 << 20);
    FAIL("a region beyond the lease's memory was created");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::memory_exceeded);
  }
  // A function asking for a region that does not exist gets its own status back.
  RegionRead ask{5, 0, 0, 8};
  uint64_t out = 0;
  size_t n = 0;
  CHECK(ex->invoke(ex->function("region_read"), &ask, sizeof ask, &out, sizeof out, &n) == Errc::function_failed);
  CHECK(n == 1);
  // Nothing was written; the lease serves on, regions and calls alike.
  std::vector<uint8_t> back(4096);
  REQUIRE(ex->get(region, 0, back.data(), back.size()) == Errc::ok);
  CHECK(back == data);
  uint32_t more = ex->create_region(8 << 20);  // what is left still fits
  CHECK(more == 1);
  uint64_t v = 5, r = 0;
  REQUIRE(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == 5);
}

TEST_CASE("regions go with the lease: released, expired or revoked, the executor and its memory are gone",
          "[executor][regions]") {
  ExecutorDaemonProcess daemon;
  auto rss_kb = [](pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0L;
  };
  const std::string how = GENERATE("released", "expired", "revoked");
  INFO(how);
  // Long enough for 64 MiB to be mapped and put under emulation (the verbs guest), then waited out.
  constexpr auto kExpiring = 8s;
  auto opts = lease_options(daemon, 1, how == "expired" ? kExpiring : 60s);
  const auto leased_at = Clock::now();
  auto ex = Executor::deploy(direct_lease(daemon.address(), opts), with_context_functions());
  const long daemon_before_kb = rss_kb(daemon.process().pid());
  uint32_t region = ex->create_region(64 << 20);
  std::vector<uint8_t> data(64 << 20, 0x5a);
  REQUIRE(ex->put(region, 0, data.data(), data.size()) == Errc::ok);
  // The region's pages are the lease's executor's, not the daemon's.
  pid_t holder = -1;
  for (pid_t p : daemon.executors())
    if (rss_kb(p) >= 64 * 1024) holder = p;
  REQUIRE(holder > 0);
  CHECK(rss_kb(daemon.process().pid()) - daemon_before_kb < 16 * 1024);
  if (how == "released") {
    ex->release();
  } else if (how == "expired") {
    std::this_thread::sleep_until(leased_at + kExpiring + 500ms);
    uint64_t v = 1;
    size_t n = 0;
    CHECK(ex->invoke(ex->function("echo"), &v, sizeof v, &v, sizeof v, &n) == Errc::lease_expired);
  } else {
    daemon.process().kill(SIGTERM);  // the node is taken back
    uint64_t v = 1;
    size_t n = 0;
    auto until = Clock::now() + 10s;
    Errc e = Errc::ok;
    while (e == Errc::ok && Clock::now() < until) e = ex->invoke(ex->function("echo"), &v, sizeof v, &v, sizeof v, &n);
    CHECK(e == Errc::lease_revoked);
  }
  // The executor that held the region is gone, and its memory with it.
  auto deadline = Clock::now() + 5s;
  while (::kill(holder, 0) == 0 && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  CHECK(::kill(holder, 0) != 0);
  if (how != "revoked") {
    CHECK(rss_kb(daemon.process().pid()) - daemon_before_kb < 16 * 1024);
    check_daemon_serves(daemon);
  }
}

TEST_CASE("a context-ABI function is told its capacity and cannot overrun it; its errors are named",
          "[executor][abi]") {
  ExecutorDaemonProcess daemon;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), with_context_functions());
  int fill = ex->function("fill_capacity"), fail_with = ex->function("fail_with");
  for (bool registered : {false, true}) {
    INFO("registered output " << registered);
    auto buf = registered ? ex->allocate(400) : nullptr;
    std::vector<uint8_t> plain(400);
    uint8_t* out = registered ? static_cast<uint8_t*>(buf->data()) : plain.data();
    for (size_t cap : {size_t{16}, size_t{100}, size_t{333}}) {
      std::memset(out, 0xEE, 400);
      size_t n = 0;
      REQUIRE(ex->invoke(fill, nullptr, 0, out, cap, &n) == Errc::ok);
      CHECK(n == cap);
      uint64_t told = 0;
      std::memcpy(&told, out, 8);
      CHECK(told == cap);
      uint32_t worker = 9, workers = 9;
      std::memcpy(&worker, out + 8, 4);
      std::memcpy(&workers, out + 12, 4);
      CHECK((worker == 0 && workers == 1));
      CHECK(std::all_of(out + 16, out + cap, [](uint8_t b) { return b == 0xA5; }));
      CHECK(std::all_of(out + cap, out + 400, [](uint8_t b) { return b == 0xEE; }));  // nothing past it
    }
  }
  // A nonzero status is a named error with the status, distinct from an empty result.
  size_t n = 99;
  int32_t status = 7;
  uint8_t out[8];
  CHECK(ex->invoke(fail_with, &status, 4, out, sizeof out, &n) == Errc::function_failed);
  CHECK(n == 7);
  status = 0;
  CHECK(ex->invoke(fail_with, &status, 4, out, sizeof out, &n) == Errc::ok);
  CHECK(n == 0);
  status = -1;  // does not fit the wire's 23 bits: still a failure
  CHECK(ex->invoke(fail_with, &status, 4, out, sizeof out, &n) == Errc::function_failed);
  // The reference ABI beside it, unchanged.
  uint64_t v = 3, r = 0;
  REQUIRE(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == 3);
}

TEST_CASE("the submission queue: 10x more calls than slots complete in order per worker; full is named",
          "[executor][queue]") {
  ExecutorDaemonProcess daemon({"--cores", "0,1"});
  DeployOptions o = with_context_functions(2);
  o.slots = 2;
  o.queue_depth = 18;  // 2 workers x (2 slots + 18 queued) = 40 calls = 10x the slots
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon, 2)), o);
  int seq = ex->function("next_in_sequence");
  for (int round = 0; round < 3; ++round) {
    constexpr int kCalls = 40;
    Invocation hs[kCalls];
    uint64_t got[kCalls] = {};
    for (int i = 0; i < kCalls; ++i) REQUIRE(ex->submit(seq, nullptr, 0, &got[i], 8, &hs[i]) == Errc::ok);
    Invocation extra;
    uint64_t x = 0;
    CHECK(ex->submit(seq, nullptr, 0, &x, 8, &extra) == Errc::queue_full);
    for (int i = kCalls - 1; i >= 0; --i) {  // waited out of order
      size_t n = 0;
      REQUIRE(ex->wait(hs[i], &n) == Errc::ok);
      REQUIRE(n == 8);
    }
    // Per worker, the calls ran in the order they were submitted.
    for (uint32_t w = 0; w < 2; ++w) {
      std::vector<uint64_t> order;
      for (int i = 0; i < kCalls; ++i)
        if (hs[i].worker == w) order.push_back(got[i]);
      CHECK(order.size() == kCalls / 2);  // spread evenly
      CHECK(std::is_sorted(order.begin(), order.end()));
      CHECK(std::adjacent_find(order.begin(), order.end()) == order.end());
    }
  }
  // Pinned to one worker, behind a slow call: queued, then run.
  int sleep_ms = ex->function("sleep_ms");
  uint32_t ms = 300, back = 0;
  Invocation slow, next[4];
  REQUIRE(ex->submit(sleep_ms, &ms, 4, &back, 4, &slow, 1) == Errc::ok);
  uint64_t outs[4];
  for (int i = 0; i < 4; ++i) REQUIRE(ex->submit(seq, nullptr, 0, &outs[i], 8, &next[i], 1) == Errc::ok);
  ex->abandon(next[1]);  // given up while still queued: dropped when its turn comes
  for (int i : {0, 2, 3}) REQUIRE(ex->wait(next[i], nullptr) == Errc::ok);
  CHECK(outs[2] == outs[0] + 1);
  CHECK(outs[3] == outs[2] + 1);
  REQUIRE(ex->wait(slow, nullptr) == Errc::ok);
}

TEST_CASE("auto picks the transport per lease: shm for a client of this host, or what the client states",
          "[executor][transport]") {
  EnvGuard provider_env("RFAAS_OFI_PROVIDER");  // put back however this case ends
  if (fabric::Config::from_env().backend != fabric::Backend::ofi) {
    WARN("per-peer providers are ofi's: nothing to check over verbs");
    return;
  }
  TempDir dir;
  const std::string log = (dir.path() / "daemon.log").string();
  auto read_log = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto echo_once = [](Executor& ex) {
    uint64_t v = 0x5eed, r = 0;
    size_t n = 0;
    REQUIRE(ex.invoke(ex.function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
    CHECK(r == v);
  };
  ::setenv("RFAAS_OFI_PROVIDER", "auto", 1);
  {
    ExecutorDaemonProcess daemon({}, {}, ExecutorDaemonProcess::kNodeName, log);  // its executors: auto
    {
      auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
      echo_once(*ex);
    }
    CHECK(read_log().find("over shm") != std::string::npos);  // same host
    ::setenv("RFAAS_OFI_PROVIDER", "tcp", 1);  // this client states tcp: an auto daemon follows
    {
      auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
      echo_once(*ex);
    }
    CHECK(read_log().find("over tcp") != std::string::npos);
    // Nothing else a client names is opened (as root) for it.
    ::setenv("RFAAS_OFI_PROVIDER", "sockets", 1);
    CHECK(deploy_error(direct_lease(daemon.address(), lease_options(daemon)), basic()) == Errc::invalid_argument);
    CHECK(read_log().find("over sockets") == std::string::npos);
  }
  // A daemon set to shm keeps it; a client set to tcp is told so by name.
  ::setenv("RFAAS_OFI_PROVIDER", "shm", 1);
  ExecutorDaemonProcess fixed;
  ::setenv("RFAAS_OFI_PROVIDER", "tcp", 1);
  try {
    Executor::deploy(direct_lease(fixed.address(), lease_options(fixed)), basic());
    FAIL("a deploy over the wrong provider succeeded");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::connection_failed);
    CHECK(std::string(e.what()).find("'shm'") != std::string::npos);
  }
}

// Failures injected with the faults decorator (fabric/faults) over this run's transport: each
// ends in its named error within its bound, and the daemon serves on.
namespace {

// The decorator over the transport this run uses, with `rules`, for this process's next domain.
struct InjectAtClient {
  EnvGuard fabric{"RFAAS_FABRIC"}, faults{"RFAAS_FABRIC_FAULTS"};
  explicit InjectAtClient(const char* rules) {
    const std::string backend = fabric::to_string(fabric::Config::from_env().backend);
    ::setenv("RFAAS_FABRIC", ("faults:" + backend).c_str(), 1);
    ::setenv("RFAAS_FABRIC_FAULTS", rules, 1);
  }
};

std::map<std::string, std::string> inject_at_executor(const char* rules) {
  const std::string backend = fabric::to_string(fabric::Config::from_env().backend);
  return {{"RFAAS_FABRIC", "faults:" + backend}, {"RFAAS_FABRIC_FAULTS", rules}};
}

}  // namespace

TEST_CASE("injected at the client: the connection lost mid-invocation ends it with executor_lost, bounded",
          "[executor][faults][injected]") {
  ExecutorDaemonProcess daemon;
  {
    InjectAtClient inject("lose_peer@3");
    auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
    int echo = ex->function("echo");
    uint64_t v = 7, r = 0;
    size_t n = 0;
    REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
    REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
    auto t0 = Clock::now();
    CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::executor_lost);
    CHECK(Clock::now() - t0 < 2s);
    CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 1s) == Errc::executor_lost);
  }
  CHECK(daemon.alive());
  check_daemon_serves(daemon);
}

TEST_CASE("injected at the client: after a lost connection, submit, test and progress never wait for the daemon's word",
          "[executor][faults][injected]") {
  // The daemon has nothing to say (its executor is fine): the client gives it kLossReasonBound
  // (1.5 s) to say why, but its non-blocking calls must not spend that time (MPI_Test calls them).
  ExecutorDaemonProcess daemon;
  InjectAtClient inject("lose_peer@4");
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  uint64_t v = 7, r = 0, b = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  Invocation first;  // not waited for: outstanding when the connection goes
  REQUIRE(ex->submit(echo, &v, sizeof v, &b, sizeof b, &first) == Errc::ok);  // write 3: goes
  std::this_thread::sleep_for(50ms);                                          // its answer arrives
  Invocation second;
  auto t0 = Clock::now();
  CHECK(ex->submit(echo, &v, sizeof v, &r, sizeof r, &second) == Errc::executor_lost);  // write 4: lost
  CHECK(Clock::now() - t0 < 300ms);
  // The call still outstanding (the lost connection takes its answer with it) comes back through
  // progress() with the lease's end, once that is decided; until then every call returns at once.
  Executor::Completed done[4];
  size_t got = 0;
  auto deadline = Clock::now() + 3s;
  while (got == 0 && Clock::now() < deadline) {
    t0 = Clock::now();
    bool finished = false;
    CHECK(ex->test(first, &finished) == Errc::ok);
    got = ex->progress(done, 4);
    CHECK(Clock::now() - t0 < 300ms);
  }
  REQUIRE(got == 1);
  CHECK(done[0].handle.call == first.call);
  CHECK(done[0].result == Errc::executor_lost);
  // The lease counts as lost, for good.
  t0 = Clock::now();
  CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 5s) == Errc::executor_lost);
  CHECK(Clock::now() - t0 < 2s);
  CHECK(daemon.alive());
}

TEST_CASE("injected at the executor: its connection lost mid-invocation ends the call with executor_lost, bounded",
          "[executor][faults][injected]") {
  // The executor's second write (the second call's result) ends its connection instead.
  ExecutorDaemonProcess daemon({}, {}, ExecutorDaemonProcess::kNodeName, {}, inject_at_executor("lose_peer@2"));
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  uint64_t v = 7, r = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  auto t0 = Clock::now();
  CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 8s) == Errc::executor_lost);
  CHECK(Clock::now() - t0 < 8s);
  CHECK(daemon.alive());
}

TEST_CASE("injected at the client: a lost request ends in timeout on time; the other slots serve on",
          "[executor][faults][injected]") {
  ExecutorDaemonProcess daemon;
  InjectAtClient inject("drop_write@2");
  DeployOptions o = basic();
  o.slots = 2;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  int echo = ex->function("echo");
  uint64_t v = 7, r = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  auto t0 = Clock::now();
  CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 200ms) == Errc::timeout);
  CHECK(Clock::now() - t0 < 1s);
  for (uint64_t i = 0; i < 5; ++i) {
    v = 100 + i;
    REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 2s) == Errc::ok);
    CHECK(r == v);
  }
}

TEST_CASE("injected at the client: a request delayed past the timeout, then its late result frees the slot",
          "[executor][faults][injected]") {
  ExecutorDaemonProcess daemon;
  InjectAtClient inject("delay_write=600@2");
  DeployOptions o = basic();
  o.slots = 1;
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), o);
  int echo = ex->function("echo");
  uint64_t v = 7, r = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  auto t0 = Clock::now();
  CHECK(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 150ms) == Errc::timeout);
  CHECK(Clock::now() - t0 < 600ms);
  v = 99;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 5s) == Errc::ok);
  CHECK(r == 99);
  CHECK(Clock::now() - t0 >= 600ms);
}

TEST_CASE("injected at the client: a corrupted request immediate is never a wrong result",
          "[executor][faults][injected]") {
  ExecutorDaemonProcess daemon;
  InjectAtClient inject("corrupt_imm@2");
  auto ex = Executor::deploy(direct_lease(daemon.address(), lease_options(daemon)), basic());
  int echo = ex->function("echo");
  uint64_t v = 7, r = 0;
  size_t n = 0;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  r = 0;
  v = 8;
  Errc e = ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 300ms);
  INFO("the corrupted call ended with " << to_string(e));
  CHECK(e != Errc::ok);
  CHECK(r != v);
  v = 9;
  REQUIRE(ex->invoke(echo, &v, sizeof v, &r, sizeof r, &n, 2s) == Errc::ok);
  CHECK(r == 9);
}

TEST_CASE("injected at the client: each fabric step of deploy fails with a named error; the daemon serves on",
          "[executor][faults][injected]") {
  ExecutorDaemonProcess daemon;
  for (const char* rule : {"fail_register@1", "fail_register@3", "fail_connect@1"}) {
    INFO(rule);
    {
      InjectAtClient inject(rule);
      Errc e = deploy_error(direct_lease(daemon.address(), lease_options(daemon)), basic());
      INFO("deploy ended with " << to_string(e));
      CHECK(e == Errc::connection_failed);
    }
    CHECK(daemon.alive());
    // The failed client's lease ends when its control connection closes; its executor, still
    // waiting for the client's endpoints, is stopped within the daemon's 2 s grace.
    const auto t0 = Clock::now();
    Errc e = Errc::no_capacity;
    while (e == Errc::no_capacity && Clock::now() - t0 < 5s) {
      e = deploy_error(direct_lease(daemon.address(), lease_options(daemon)), basic());
      if (e == Errc::no_capacity) std::this_thread::sleep_for(100ms);
    }
    CHECK(e == Errc::ok);
    check_daemon_serves(daemon);
  }
}
