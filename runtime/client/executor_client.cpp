// The client side of a lease: control connection to the executor daemon, one fabric endpoint
// per worker, slot bookkeeping, and the invocation path.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "clock/cycle_clock.hpp"
#include "fabric/host_memory.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "rfaas/client.hpp"
#include "rfaas/fabric/fabric.hpp"

namespace rfaas {

const char* to_string(Errc e) noexcept {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::unknown_function: return "unknown function";
    case Errc::payload_too_large: return "payload larger than the input slot";
    case Errc::output_too_large: return "result larger than the output capacity";
    case Errc::executor_lost: return "executor lost";
    case Errc::lease_expired: return "lease expired";
    case Errc::lease_revoked: return "lease revoked";
    case Errc::bad_token: return "bad lease token";
    case Errc::library_load_failed: return "function library failed to load";
    case Errc::no_capacity: return "no capacity on the executor node";
    case Errc::timeout: return "timeout";
    case Errc::busy: return "requests still pending";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::connection_failed: return "connection failed";
    case Errc::protocol: return "protocol error";
    case Errc::lease_in_use: return "lease already deployed";
    case Errc::not_initialized: return "rfaas is not initialized (call rfaas_mpi_init first)";
    case Errc::no_such_region: return "no such resident region";
    case Errc::region_out_of_bounds: return "past the end of the resident region";
    case Errc::memory_exceeded: return "beyond the lease's memory";
    case Errc::queue_full: return "submission queue full";
    case Errc::function_failed: return "the function reported an error";
    case Errc::not_authenticated: return "not authenticated (MUNGE credential missing or refused)";
    case Errc::not_permitted: return "not permitted (another user's lease, or an operator's command)";
  }
  return "unknown error";
}

namespace {

using Clock = std::chrono::steady_clock;
using protocol::InvocationHeader;
using protocol::InvocationStatus;
constexpr auto kHeaderStride = 64;  // one cache line per slot header

Errc from_control(protocol::ControlErrc c) {
  switch (c) {
    case protocol::ControlErrc::bad_token: return Errc::bad_token;
    case protocol::ControlErrc::lease_expired: return Errc::lease_expired;
    case protocol::ControlErrc::lease_active: return Errc::lease_in_use;
    case protocol::ControlErrc::lease_ended: return Errc::lease_expired;  // the token is spent
    case protocol::ControlErrc::no_capacity: return Errc::no_capacity;
    case protocol::ControlErrc::library_mismatch:
    case protocol::ControlErrc::library_load_failed: return Errc::library_load_failed;
    case protocol::ControlErrc::executor_failed: return Errc::executor_lost;
    case protocol::ControlErrc::malformed: return Errc::invalid_argument;
    case protocol::ControlErrc::memory_exceeded: return Errc::memory_exceeded;
    case protocol::ControlErrc::policy: return Errc::invalid_argument;
    case protocol::ControlErrc::not_authenticated: return Errc::not_authenticated;
    case protocol::ControlErrc::not_permitted: return Errc::not_permitted;
    case protocol::ControlErrc::internal: return Errc::protocol;
  }
  return Errc::protocol;
}

Errc from_status(InvocationStatus s) {
  switch (s) {
    case InvocationStatus::ok: return Errc::ok;
    case InvocationStatus::unknown_function: return Errc::unknown_function;
    case InvocationStatus::payload_too_large: return Errc::payload_too_large;
    case InvocationStatus::output_too_large: return Errc::output_too_large;
    case InvocationStatus::bad_request: return Errc::protocol;
    case InvocationStatus::function_failed: return Errc::function_failed;
    case InvocationStatus::put_done: return Errc::ok;
    case InvocationStatus::region_error: return Errc::region_out_of_bounds;
  }
  return Errc::protocol;
}

class ExecutorClient;

class OwnedBuffer final : public Buffer {
 public:
  OwnedBuffer(fabric::Domain& domain, size_t bytes, std::weak_ptr<ExecutorClient*> owner)
      : storage_(bytes, fabric::HostMemory::Fill::round_up), owner_(std::move(owner)) {
    data_ = storage_.data();
    size_ = bytes;
    mr_ = domain.register_memory(storage_.data(), std::max<size_t>(bytes, 1), fabric::Access::remote_write);
  }
  // Out of the executor's registrations first: its addresses may be mapped again for other memory.
  ~OwnedBuffer() override;
  const fabric::MemoryRegion& region() const { return *mr_; }

 private:
  fabric::HostMemory storage_;
  std::unique_ptr<fabric::MemoryRegion> mr_;
  std::weak_ptr<ExecutorClient*> owner_;  // expired once the executor is gone
};

constexpr uint32_t kNoCall = UINT32_MAX;

// One submitted operation, from submit until wait / abandon. Entries are made at deploy.
struct Call {
  enum class State : uint8_t { free, queued, posted, done };
  enum class Kind : uint8_t { invoke, put, get };
  State state = State::free;
  Kind kind = Kind::invoke;
  bool abandoned = false;  // given up by the caller: freed when its answer (or its turn) comes
  bool copy_out = false;   // the answer lands in the slot's staging; copied to `out` on arrival
  uint32_t generation = 0;
  uint32_t slot = 0;
  int function = 0;
  const void* in = nullptr;  // invoke: input; put: source
  size_t in_size = 0;
  void* out = nullptr;  // invoke: result; get: destination
  size_t out_capacity = 0;
  uint32_t region = 0;
  uint64_t offset = 0;
  Errc result = Errc::ok;
  size_t size = 0;
};

struct SlotState {
  uint32_t call = kNoCall;
  // The output target the header in the executor's slot names (the last framed request's):
  // while it stays the same, requests go compact, without a header.
  bool framed = false;
  uint64_t framed_address = 0, framed_key = 0;
  uint32_t framed_capacity = 0;
  uint32_t framed_in_size = 0;
};

struct WorkerLink {
  std::unique_ptr<fabric::Endpoint> ep;
  fabric::RemoteRegion input;  // the executor's input slots
  std::vector<SlotState> slots;
  std::vector<uint32_t> free_slots;
  uint32_t free_count = 0;
  std::vector<Call> calls;           // slots + queue_depth entries
  std::vector<uint32_t> free_calls;  // a stack; its capacity is made at deploy
  std::vector<uint32_t> queue;       // a ring of call indices waiting for a slot, in order
  uint32_t queue_head = 0, queue_count = 0;
  std::vector<uint8_t> headers;      // kHeaderStride per slot
  fabric::HostMemory staging_in;   // header + payload per slot, for unregistered inputs
  fabric::HostMemory staging_out;  // output_capacity per slot, for unregistered outputs
  std::unique_ptr<fabric::MemoryRegion> headers_mr, staging_in_mr, staging_out_mr;
  fabric::Completion completions[16];  // progress() fills these: built once, not per poll
};

// A resident region as the client knows it: where puts write.
struct RegionInfo {
  fabric::RemoteRegion remote;
  uint64_t size = 0;
};

// A registration of caller or rfaas memory, found by address on the invocation path.
struct Registration {
  const uint8_t* begin;
  size_t size;
  const fabric::MemoryRegion* region;
};

class ExecutorClient final : public Executor {
 public:
  ExecutorClient(const LeaseGrant& grant, const DeployOptions& options);
  ~ExecutorClient() override;

  uint32_t workers() const noexcept override { return static_cast<uint32_t>(links_.size()); }
  uint64_t lease_id() const noexcept override { return lease_id_; }
  bool library_was_cached() const noexcept override { return cached_; }
  DeployTiming deploy_timing() const noexcept override { return timing_; }
  int function(std::string_view name) const noexcept override {
    auto it = std::find(functions_.begin(), functions_.end(), name);
    return it == functions_.end() ? -1 : static_cast<int>(it - functions_.begin());
  }

  std::unique_ptr<Buffer> allocate(size_t bytes) override;
  void register_memory(void* data, size_t bytes) override;
  void deregister_memory(void* data) override;

  Errc invoke(int function, const void* in, size_t in_size, void* out, size_t out_capacity, size_t* out_size,
              std::chrono::microseconds timeout) noexcept override;
  Errc submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity, Invocation* handle,
              int worker) noexcept override;
  Errc wait(const Invocation& handle, size_t* out_size, std::chrono::microseconds timeout) noexcept override;
  Errc test(const Invocation& handle, bool* done) noexcept override;
  void abandon(const Invocation& handle) noexcept override;
  Errc invoke_all(int function, const void* in, size_t in_size, void* const* outs, size_t out_capacity,
                  size_t* out_sizes) noexcept override;
  uint32_t create_region(uint64_t bytes) override;
  uint32_t region_count() const noexcept override { return static_cast<uint32_t>(regions_.size()); }
  uint64_t region_size(uint32_t region) const noexcept override {
    return region < regions_.size() ? regions_[region].size : 0;
  }
  Errc submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                  int worker) noexcept override;
  Errc submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle,
                  int worker) noexcept override;
  Errc put(uint32_t region, uint64_t offset, const void* src, size_t bytes,
           std::chrono::microseconds timeout) noexcept override;
  Errc get(uint32_t region, uint64_t offset, void* dst, size_t bytes, std::chrono::microseconds timeout) noexcept override;
  void renew(const LeaseGrant& renewed) override;
  int64_t expires_at_ms() const noexcept override { return expires_at_ms_; }
  Usage usage() override;
  Usage release() override;

 private:
  const Registration* find(const void* p, size_t n) const noexcept;
  friend class OwnedBuffer;
  void forget_registration(const fabric::MemoryRegion* region) noexcept {
    std::erase_if(registrations_, [&](const Registration& r) { return r.region == region; });
  }
  void add_registration(const uint8_t* begin, size_t size, const fabric::MemoryRegion* region);
  void progress(WorkerLink& link) noexcept;
  // Takes a free call entry of a worker (-1: the least loaded) and fills the handle; the caller
  // fills the call, then enqueue() posts it or queues it.
  Errc new_call(int worker, Call::Kind kind, uint32_t* w, uint32_t* index, Invocation* handle) noexcept;
  Errc enqueue(WorkerLink& link, uint32_t index) noexcept;
  // Writes the call into a free slot: ok, again (nothing written; retry later), or an error.
  fabric::Errc post(WorkerLink& link, uint32_t index) noexcept;
  void pump(WorkerLink& link) noexcept;  // posts queued calls into free slots, in order
  void complete(WorkerLink& link, Call& c, Errc result, size_t size) noexcept;
  void free_call(WorkerLink& link, Call& c) noexcept;
  // A post refused locally: a staged put or get that no longer fits its slot, else the transport.
  static Errc post_error(fabric::Errc rc, Call::Kind kind) noexcept {
    if (rc != fabric::Errc::invalid_argument) return Errc::protocol;
    return kind == Call::Kind::put ? Errc::payload_too_large : Errc::output_too_large;
  }
  // [offset, offset + bytes) of a region this lease has: ok, no_such_region or region_out_of_bounds.
  Errc check_region(uint32_t region, uint64_t offset, uint64_t bytes) const noexcept {
    if (region >= regions_.size()) return Errc::no_such_region;
    const uint64_t size = regions_[region].size;
    return offset > size || bytes > size - offset ? Errc::region_out_of_bounds : Errc::ok;
  }
  // A control request during the lease: sends `message`, returns the reply of type `expected`;
  // throws Error for an error reply, a lease that ended, or a broken connection.
  protocol::ControlMessage control_request(const std::string& message, const char* expected, const char* what,
                                           std::chrono::milliseconds wait = std::chrono::milliseconds(-1));
  void mark_lost() noexcept;
  bool handle_ok(const Invocation& h) const noexcept {
    return h.worker < links_.size() && h.call < links_[h.worker].calls.size() &&
           links_[h.worker].calls[h.call].generation == h.generation &&
           links_[h.worker].calls[h.call].state != Call::State::free;
  }

  DeployOptions options_;
  std::vector<std::string> functions_;
  uint64_t lease_id_ = 0;
  int64_t expires_at_ms_ = 0;
  bool cached_ = false;
  DeployTiming timing_;
  uint64_t in_stride_ = 0;
  net::TcpStream control_;
  std::unique_ptr<fabric::Domain> domain_;
  std::vector<WorkerLink> links_;
  std::vector<Registration> registrations_;  // sorted by begin
  std::vector<RegionInfo> regions_;
  std::map<const void*, std::unique_ptr<fabric::MemoryRegion>> user_regions_;
  std::shared_ptr<ExecutorClient*> self_ = std::make_shared<ExecutorClient*>(this);  // for allocate()'s buffers
  uint32_t next_worker_ = 0;
  Errc lost_ = Errc::ok;  // set once the lease is gone, for good
  bool released_ = false;
  Usage usage_;
};

// --- setup -------------------------------------------------------------------------------------

[[noreturn]] void fail(Errc code, const std::string& what) { throw Error(code, what); }

ExecutorClient::ExecutorClient(const LeaseGrant& grant, const DeployOptions& options)
    : options_(options), functions_(options.functions) {
  const auto timeout = options.control_timeout;
  if (options.workers == 0 || options.slots == 0 || options.slots > protocol::kMaxSlots)
    fail(Errc::invalid_argument, "workers must be at least 1 and slots 1.." + std::to_string(protocol::kMaxSlots));
  if (options.queue_depth > (1u << 20)) fail(Errc::invalid_argument, "queue_depth is at most 2^20 per worker");
  if (options.output_capacity > protocol::kMaxOutputCapacity || options.input_capacity > protocol::kMaxInputCapacity)
    fail(Errc::invalid_argument, "input or output capacity beyond the protocol's limits");

  auto read_file = [](const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(Errc::library_load_failed, std::string("cannot read ") + what + " " + path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  auto file_name = [](const std::string& path) { return path.substr(path.rfind('/') + 1); };
  std::vector<uint8_t> library = read_file(options.library_path, "function library");
  if (options.dependencies.size() > protocol::kMaxDependencies)
    fail(Errc::invalid_argument, "at most " + std::to_string(protocol::kMaxDependencies) + " dependencies");
  std::vector<std::vector<uint8_t>> dependencies;
  for (const auto& path : options.dependencies) dependencies.push_back(read_file(path, "dependency"));

  protocol::AllocateRequest req;
  try {
    req.token = nlohmann::json::parse(grant.token).get<protocol::LeaseToken>();
  } catch (const std::exception& e) {
    fail(Errc::bad_token, std::string("lease token: ") + e.what());
  }
  req.library_sha256 = protocol::sha256_hex(library.data(), library.size());
  req.library_size = library.size();
  req.library_name = file_name(options.library_path);
  for (size_t i = 0; i < dependencies.size(); ++i)
    req.dependencies.push_back({protocol::sha256_hex(dependencies[i].data(), dependencies[i].size()),
                                dependencies[i].size(), file_name(options.dependencies[i])});
  req.functions = options.functions;
  req.workers = options.workers;
  req.slots = options.slots;
  req.input_capacity = options.input_capacity;
  req.output_capacity = options.output_capacity;
  req.hot_timeout_us = options.hot_timeout_us;
  req.host = fabric::host_identity();
  if (const auto fc = fabric::Config::from_env(); fc.backend == fabric::Backend::ofi) req.ofi_provider = fc.ofi_provider;
  lease_id_ = req.token.lease_id;
  expires_at_ms_ = req.token.expires_at_ms;

  protocol::Allocated allocated;
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  auto t_start = Clock::now();
  auto t_phase = t_start;
  try {
    control_ = net::TcpStream::connect(net::HostPort::parse(grant.daemon_address), net::deadline_in(timeout));
    control_.keep_alive(net::kKeepAliveIdle, net::kKeepAliveInterval, net::kKeepAliveProbes);
    std::string msg = protocol::make_message("allocate", req);
    control_.send_frame(msg.data(), msg.size(), net::deadline_in(timeout));
    timing_.connect_ms = ms_since(t_phase);
    t_phase = Clock::now();
    for (;;) {
      auto reply = protocol::ControlMessage::parse(
          control_.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout * 2)));
      if (reply.type == "send_library") {
        // Which one: the library (no body, or its hash), or one of its dependencies.
        const std::vector<uint8_t>* bytes = &library;
        std::string wanted = reply.body.is_object() ? reply.body.value("sha256", std::string()) : std::string();
        if (!wanted.empty() && wanted != req.library_sha256) {
          bytes = nullptr;
          for (size_t i = 0; i < dependencies.size(); ++i)
            if (req.dependencies[i].sha256 == wanted) bytes = &dependencies[i];
          if (!bytes) fail(Errc::protocol, "the executor daemon asked for a library this deploy does not have");
        }
        auto t_lib = Clock::now();
        control_.send_frame(bytes->data(), bytes->size(), net::deadline_in(timeout * 6));
        timing_.library_ms += ms_since(t_lib);
        continue;
      }
      if (reply.type == "error") {
        auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
        fail(from_control(code.value_or(protocol::ControlErrc::internal)),
             "executor daemon refused the lease: " + reply.body.value("message", ""));
      }
      if (reply.type != "allocated") fail(Errc::protocol, "unexpected '" + reply.type + "' from the executor daemon");
      allocated = reply.as<protocol::Allocated>();
      break;
    }
  } catch (const net::NetError& e) {
    fail(Errc::connection_failed, std::string("executor daemon ") + grant.daemon_address + ": " + e.what());
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, e.what());
  }
  timing_.executor_start_ms = ms_since(t_phase) - timing_.library_ms;
  t_phase = Clock::now();
  cached_ = allocated.library_cached;
  if (allocated.workers != options.workers) fail(Errc::protocol, "daemon allocated a different number of workers");

  in_stride_ = protocol::input_slot_stride(options.input_capacity);
  try {
    fabric::Config fabric_config = fabric::Config::from_env();
    // The executor's transport for this lease, chosen by its daemon (fabric.hpp: "auto").
    if (fabric_config.backend == fabric::Backend::ofi && !allocated.ofi_provider.empty()) {
      if (fabric_config.ofi_provider == "auto") fabric_config.ofi_provider = allocated.ofi_provider;
      else if (!fabric::same_ofi_provider(fabric_config.ofi_provider, allocated.ofi_provider))
        fail(Errc::connection_failed, "this client's ofi provider is '" + fabric_config.ofi_provider +
                                          "' (RFAAS_OFI_PROVIDER), the executor serves this lease over '" +
                                          allocated.ofi_provider + "': set the same, or auto");
    }
    // The address the kernel picked to reach the executor's node is one that node can answer
    // (127.0.0.1 is not, from another host).
    if (!fabric_config.local_host_chosen) {
      const std::string local = control_.local_address();
      if (!local.empty()) fabric_config.local_host = net::HostPort::parse(local).host;
    }
    domain_ = fabric::open_domain(fabric_config);
    const std::string hello_key = protocol::worker_hello_key(req.token);  // proves the lease to the executor
    links_.resize(options.workers);
    for (uint32_t w = 0; w < options.workers; ++w) {
      WorkerLink& l = links_[w];
      l.slots.resize(options.slots);
      l.free_slots.resize(options.slots);
      for (uint32_t s = 0; s < options.slots; ++s) l.free_slots[s] = options.slots - 1 - s;
      l.free_count = options.slots;
      const size_t calls = size_t{options.slots} + options.queue_depth;
      l.calls.resize(calls);
      l.free_calls.resize(calls);
      for (size_t c = 0; c < calls; ++c) l.free_calls[c] = static_cast<uint32_t>(calls - 1 - c);
      l.queue.resize(calls);
      l.headers.resize(kHeaderStride * options.slots);
      l.staging_in = fabric::HostMemory(in_stride_ * options.slots);
      l.staging_out = fabric::HostMemory(std::max<uint64_t>(options.output_capacity, 1) * options.slots);
      l.headers_mr = domain_->register_memory(l.headers.data(), l.headers.size(), fabric::Access::local);
      l.staging_in_mr = domain_->register_memory(l.staging_in.data(), l.staging_in.size(), fabric::Access::local);
      l.staging_out_mr =
          domain_->register_memory(l.staging_out.data(), l.staging_out.size(), fabric::Access::remote_write);
      fabric::EndpointConfig ec;
      ec.max_outstanding_writes = 2 * options.slots + 8;
      ec.wait_mode = fabric::WaitMode::sleep;
      l.ep = domain_->create_endpoint(ec);
      auto ack = l.staging_out_mr->remote();
      protocol::WorkerHello hello{w, protocol::kWorkerHelloVersion, lease_id_, ack.address, ack.key, {}};
      protocol::sign_worker_hello(hello, hello_key);
      fabric::ConnectionData theirs;
      l.ep->connect(allocated.address, fabric::make_connection_data(hello), theirs, timeout);
      l.input = fabric::read_connection_data<fabric::RemoteRegion>(theirs);
    }
    CycleClock::ticks_per_ns();  // measured here, once per process, not in the first wait()
    timing_.endpoints_ms = ms_since(t_phase);
    timing_.total_ms = ms_since(t_start);
  } catch (const fabric::Error& e) {
    fail(e.code() == fabric::Errc::no_backend ? Errc::invalid_argument : Errc::connection_failed,
         std::string("connecting to the executor: ") + e.what());
  }
}

ExecutorClient::~ExecutorClient() {
  try {
    release();
  } catch (...) {
  }
}

OwnedBuffer::~OwnedBuffer() {
  if (auto owner = owner_.lock()) (*owner)->forget_registration(mr_.get());
}

std::unique_ptr<Buffer> ExecutorClient::allocate(size_t bytes) {
  auto b = std::make_unique<OwnedBuffer>(*domain_, bytes, self_);
  add_registration(static_cast<const uint8_t*>(b->data()), b->size(), &b->region());
  return b;
}

void ExecutorClient::register_memory(void* data, size_t bytes) {
  if (!data || bytes == 0) fail(Errc::invalid_argument, "register_memory: empty range");
  if (user_regions_.count(data)) return;
  std::unique_ptr<fabric::MemoryRegion> mr;
  try {
    mr = domain_->register_memory(data, bytes, fabric::Access::remote_write);
  } catch (const fabric::Error& e) {
    fail(Errc::invalid_argument, e.what());
  }
  add_registration(static_cast<const uint8_t*>(data), bytes, mr.get());
  user_regions_[data] = std::move(mr);
}

void ExecutorClient::deregister_memory(void* data) {
  auto it = user_regions_.find(data);
  if (it == user_regions_.end()) return;
  std::erase_if(registrations_, [&](const Registration& r) { return r.region == it->second.get(); });
  user_regions_.erase(it);
}

void ExecutorClient::add_registration(const uint8_t* begin, size_t size, const fabric::MemoryRegion* region) {
  Registration r{begin, size, region};
  registrations_.insert(std::upper_bound(registrations_.begin(), registrations_.end(), r,
                                         [](const Registration& a, const Registration& b) { return a.begin < b.begin; }),
                        r);
}

const Registration* ExecutorClient::find(const void* p, size_t n) const noexcept {
  auto* b = static_cast<const uint8_t*>(p);
  // The last registration starting at or before p.
  auto it = std::upper_bound(registrations_.begin(), registrations_.end(), b,
                             [](const uint8_t* x, const Registration& r) { return x < r.begin; });
  if (it == registrations_.begin()) return nullptr;
  --it;
  if (b + n <= it->begin + it->size) return &*it;
  return nullptr;
}

void ExecutorClient::renew(const LeaseGrant& renewed) {
  if (lost_ != Errc::ok) fail(lost_, "renew: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "renew: the lease was released");
  protocol::RenewRequest req;
  try {
    req.token = nlohmann::json::parse(renewed.token).get<protocol::LeaseToken>();
  } catch (const std::exception& e) {
    fail(Errc::bad_token, std::string("renewed lease token: ") + e.what());
  }
  if (req.token.lease_id != lease_id_) fail(Errc::bad_token, "renew: the token is for another lease");
  auto reply = control_request(protocol::make_message("renew", req), "renewed", "renew");
  expires_at_ms_ = reply.body.value("expires_at_ms", expires_at_ms_);
}

uint32_t ExecutorClient::create_region(uint64_t bytes) {
  if (lost_ != Errc::ok) fail(lost_, "create_region: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "create_region: the lease was released");
  if (bytes == 0) fail(Errc::invalid_argument, "create_region: a region needs at least one byte");
  if (regions_.size() >= protocol::kMaxRegions)
    fail(Errc::invalid_argument, "create_region: a lease holds at most " + std::to_string(protocol::kMaxRegions) + " regions");
  // The daemon allows the executor 3 control timeouts to map and register a large region.
  auto reply = control_request(protocol::make_message("create_region", protocol::CreateRegionRequest{bytes}),
                               "region_created", "create_region", options_.control_timeout * 4);
  protocol::RegionCreated created;
  try {
    created = reply.as<protocol::RegionCreated>();
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string("create_region: ") + e.what());
  }
  if (created.id != regions_.size() || created.length != bytes)
    fail(Errc::protocol, "create_region: the executor answered with another region");
  regions_.push_back({{created.address, created.key, created.length}, bytes});
  return created.id;
}

protocol::ControlMessage ExecutorClient::control_request(const std::string& msg, const char* expected, const char* what,
                                                         std::chrono::milliseconds wait) {
  try {
    control_.send_frame(msg.data(), msg.size(), net::deadline_in(options_.control_timeout));
    auto deadline = net::deadline_in(wait.count() < 0 ? options_.control_timeout : wait);
    for (;;) {
      auto reply = protocol::ControlMessage::parse(control_.recv_frame(protocol::kMaxControlFrame, deadline));
      if (reply.type == expected) return reply;
      if (reply.type == "error") {
        auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
        fail(from_control(code.value_or(protocol::ControlErrc::internal)),
             std::string(what) + ": " + reply.body.value("message", std::string()));
      }
      if (reply.type == "lease_ended") {
        auto end = reply.as<protocol::LeaseEnded>();
        usage_ = {end.usage.invocations, end.usage.hot_polling_ns, end.usage.compute_ns};
        lost_ = end.reason == protocol::LeaseEndReason::expired           ? Errc::lease_expired
                : end.reason == protocol::LeaseEndReason::revoked         ? Errc::lease_revoked
                : end.reason == protocol::LeaseEndReason::memory_exceeded ? Errc::memory_exceeded
                                                                          : Errc::executor_lost;
        fail(lost_, std::string(what) + ": the lease ended (" + protocol::to_string(end.reason) + (end.detail.empty() ? "" : ": " + end.detail) + ")");
      }
    }
  } catch (const net::NetError& e) {
    fail(Errc::connection_failed, std::string(what) + ": " + e.what());
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string(what) + ": " + e.what());
  }
}

Usage ExecutorClient::usage() {
  if (lost_ != Errc::ok) fail(lost_, "usage: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "usage: the lease was released");
  auto reply = control_request(protocol::make_message("usage"), "usage_report", "usage");
  try {
    auto u = reply.as<protocol::Usage>();
    return {u.invocations, u.hot_polling_ns, u.compute_ns};
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string("usage: ") + e.what());
  }
}

Usage ExecutorClient::release() {
  if (released_) return usage_;
  released_ = true;
  links_.clear();  // closing the endpoints first lets the executor's workers finish
  if (!control_) return usage_;
  try {
    std::string msg = protocol::make_message("release");
    control_.send_frame(msg.data(), msg.size(), net::deadline_in(options_.control_timeout));
    auto deadline = net::deadline_in(options_.control_timeout);
    for (;;) {
      auto reply = protocol::ControlMessage::parse(control_.recv_frame(protocol::kMaxControlFrame, deadline));
      if (reply.type == "lease_ended") {
        auto u = reply.as<protocol::LeaseEnded>().usage;
        usage_ = {u.invocations, u.hot_polling_ns, u.compute_ns};
        break;
      }
    }
  } catch (const std::exception&) {
    // The lease already ended (expired, executor gone): nothing left to release.
  }
  control_ = net::TcpStream();
  return usage_;
}

// --- invocation path ---------------------------------------------------------------------------

void ExecutorClient::mark_lost() noexcept {
  if (lost_ != Errc::ok) return;
  // Cold path: the daemon says why on the control connection, within a moment.
  Errc why = Errc::executor_lost;
  try {
    auto deadline = net::deadline_in(std::chrono::milliseconds(1500));
    while (control_) {
      auto msg = protocol::ControlMessage::parse(control_.recv_frame(protocol::kMaxControlFrame, deadline));
      if (msg.type != "lease_ended") continue;
      auto end = msg.as<protocol::LeaseEnded>();
      usage_ = {end.usage.invocations, end.usage.hot_polling_ns, end.usage.compute_ns};
      if (end.reason == protocol::LeaseEndReason::expired) why = Errc::lease_expired;
      else if (end.reason == protocol::LeaseEndReason::revoked) why = Errc::lease_revoked;
      else if (end.reason == protocol::LeaseEndReason::memory_exceeded) why = Errc::memory_exceeded;  // the kernel ended it at its limit
      break;
    }
  } catch (...) {
  }
  if (why == Errc::executor_lost && protocol::unix_now_ms() >= expires_at_ms_) why = Errc::lease_expired;
  lost_ = why;
}

void ExecutorClient::progress(WorkerLink& link) noexcept {
  fabric::Completion* comps = link.completions;
  int n = link.ep->poll(comps, 16);
  for (int i = 0; i < n; ++i) {
    const auto& c = comps[i];
    if (c.kind == fabric::Completion::Kind::write_received) {
      uint32_t slot = protocol::response_slot(c.imm);
      if (slot >= link.slots.size() || link.slots[slot].call == kNoCall) continue;
      Call& call = link.calls[link.slots[slot].call];
      link.slots[slot].call = kNoCall;
      link.free_slots[link.free_count++] = slot;
      const InvocationStatus status = protocol::response_status(c.imm);
      const size_t size = protocol::response_size(c.imm);
      Errc e = from_status(status);
      // An answer of the wrong kind (a put acknowledged as a result) is the executor's fault.
      if ((status == InvocationStatus::put_done) != (call.kind == Call::Kind::put)) e = Errc::protocol;
      // An abandoned call's buffer may be gone: nothing is copied into it.
      if (e == Errc::ok && call.copy_out && size && !call.abandoned) {
        if (size > call.out_capacity) e = Errc::output_too_large;
        else std::memcpy(call.out, link.staging_out.data() + slot * options_.output_capacity, size);
      }
      complete(link, call, e, e == Errc::ok || e == Errc::function_failed ? size : 0);
    } else if (c.kind == fabric::Completion::Kind::error && c.error == fabric::Errc::peer_lost) {
      mark_lost();
    }
  }
  // Also when nothing freed: a post that met a full send queue (or shm still setting up the
  // path to a new peer) is retried here.
  if (link.queue_count && link.free_count) pump(link);
}

void ExecutorClient::complete(WorkerLink& link, Call& c, Errc result, size_t size) noexcept {
  if (c.abandoned) {
    free_call(link, c);
    return;
  }
  c.state = Call::State::done;
  c.result = result;
  c.size = size;
}

void ExecutorClient::free_call(WorkerLink& link, Call& c) noexcept {
  c.state = Call::State::free;
  c.abandoned = false;
  link.free_calls.push_back(static_cast<uint32_t>(&c - link.calls.data()));  // capacity made at deploy
}

Errc ExecutorClient::new_call(int worker, Call::Kind kind, uint32_t* w_out, uint32_t* index, Invocation* handle) noexcept {
  if (lost_ != Errc::ok) return lost_;
  if (released_) return Errc::invalid_argument;
  if (!handle || worker >= static_cast<int>(links_.size())) return Errc::invalid_argument;
  uint32_t w;
  if (worker >= 0) {
    w = static_cast<uint32_t>(worker);
  } else {
    // A worker with a free slot and nothing queued, else the shortest queue that has room;
    // round-robin on ties.
    const uint32_t n = static_cast<uint32_t>(links_.size());
    w = next_worker_;
    uint32_t best_queue = UINT32_MAX;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t k = (next_worker_ + i) % n;
      WorkerLink& l = links_[k];
      if (l.free_calls.empty()) progress(l);  // abandoned calls' answers give entries back
      if (l.free_calls.empty()) continue;
      if (l.free_count && !l.queue_count) {
        w = k;
        break;
      }
      if (l.queue_count < best_queue) {
        best_queue = l.queue_count;
        w = k;
      }
    }
    next_worker_ = (w + 1) % n;
  }
  WorkerLink& l = links_[w];
  // Answers that arrived free slots for what is queued, and entries of abandoned calls.
  if (!l.free_count || l.free_calls.empty()) progress(l);
  if (l.free_calls.empty()) return Errc::queue_full;
  *index = l.free_calls.back();
  l.free_calls.pop_back();
  Call& c = l.calls[*index];
  c.kind = kind;
  c.abandoned = false;
  c.copy_out = false;
  c.result = Errc::ok;
  c.size = 0;
  ++c.generation;
  *w_out = w;
  *handle = {w, *index, c.generation};
  return Errc::ok;
}

Errc ExecutorClient::enqueue(WorkerLink& l, uint32_t index) noexcept {
  Call& c = l.calls[index];
  if (l.queue_count == 0 && l.free_count) {
    fabric::Errc rc = post(l, index);
    if (rc == fabric::Errc::ok) return Errc::ok;
    if (rc != fabric::Errc::again) {
      const Call::Kind kind = c.kind;
      free_call(l, c);
      if (rc == fabric::Errc::peer_lost) {
        mark_lost();
        return lost_;
      }
      return post_error(rc, kind);
    }
    // again: the send queue is full or (shm) the path to a new peer is still being set up.
  }
  c.state = Call::State::queued;
  l.queue[(l.queue_head + l.queue_count) % l.queue.size()] = index;
  ++l.queue_count;  // the ring holds every call entry: it cannot overflow
  return Errc::ok;
}

void ExecutorClient::pump(WorkerLink& l) noexcept {
  while (l.queue_count && l.free_count && lost_ == Errc::ok) {
    uint32_t index = l.queue[l.queue_head];
    Call& c = l.calls[index];
    if (c.abandoned) {
      free_call(l, c);
    } else {
      fabric::Errc rc = post(l, index);
      if (rc == fabric::Errc::again) return;  // retried at the next progress
      if (rc != fabric::Errc::ok) {
        if (rc == fabric::Errc::peer_lost) mark_lost();
        complete(l, c, rc == fabric::Errc::peer_lost ? lost_ : post_error(rc, c.kind), 0);
      }
    }
    l.queue_head = static_cast<uint32_t>((l.queue_head + 1) % l.queue.size());
    --l.queue_count;
  }
}

fabric::Errc ExecutorClient::post(WorkerLink& l, uint32_t index) noexcept {
  Call& c = l.calls[index];
  const uint32_t slot = l.free_slots[l.free_count - 1];
  SlotState& s = l.slots[slot];
  fabric::Errc rc;
  if (c.kind == Call::Kind::put) {
    // Straight into the region; the imm tells the worker to acknowledge it.
    const RegionInfo& region = regions_[c.region];
    const uint32_t imm = protocol::region_op_imm(slot, protocol::RegionOp::put);
    const Registration* r = c.in_size ? find(c.in, c.in_size) : nullptr;
    if (r) {
      rc = l.ep->write_imm(*r->region, static_cast<size_t>(static_cast<const uint8_t*>(c.in) - r->begin), c.in_size,
                           region.remote, c.offset, imm, 0);
    } else {
      // Staged through the slot; submit_put checked the size, but the source may have been
      // deregistered while the put was queued.
      if (c.in_size > options_.input_capacity) return fabric::Errc::invalid_argument;
      if (c.in_size) std::memcpy(l.staging_in.data() + slot * in_stride_, c.in, c.in_size);
      rc = l.ep->write_imm(*l.staging_in_mr, slot * in_stride_, c.in_size, region.remote, c.offset, imm, 0);
    }
    if (rc != fabric::Errc::ok) return rc;
  } else {
    // Invocations and gets name their output target in the slot's header.
    InvocationHeader h;
    const size_t capacity = std::min<size_t>(c.out_capacity, c.kind == Call::Kind::get ? protocol::kMaxResultSize
                                                                                        : options_.output_capacity);
    h.in_size = c.kind == Call::Kind::get ? sizeof(protocol::RegionGet) : static_cast<uint32_t>(c.in_size);
    h.out_capacity = static_cast<uint32_t>(capacity);
    c.copy_out = false;
    bool reframed = true;  // the header in the executor's slot changes
    if (const Registration* r = capacity ? find(c.out, capacity) : nullptr) {
      auto remote = r->region->remote();
      h.out_address = remote.address + static_cast<uint64_t>(static_cast<const uint8_t*>(c.out) - r->begin);
      h.out_key = remote.key;
    } else {
      // Into the slot's staging: never more than it holds (a get's destination may have been
      // deregistered while it was queued).
      if (capacity > options_.output_capacity) return fabric::Errc::invalid_argument;
      auto remote = l.staging_out_mr->remote();
      h.out_address = remote.address + slot * options_.output_capacity;
      h.out_key = remote.key;
      c.copy_out = true;
    }
    if (c.kind == Call::Kind::get) {
      protocol::RegionGet g{c.region, 0, c.offset, c.out_capacity};
      uint8_t* hdr = l.headers.data() + slot * kHeaderStride;
      std::memcpy(hdr, &h, sizeof h);
      std::memcpy(hdr + sizeof h, &g, sizeof g);
      rc = l.ep->write_imm(*l.headers_mr, slot * size_t{kHeaderStride}, sizeof h + sizeof g, l.input,
                           protocol::slot_header_offset(slot, in_stride_),
                           protocol::region_op_imm(slot, protocol::RegionOp::get), 0);
    } else {
      const int function = c.function;
      const void* in = c.in;
      const size_t in_size = c.in_size;
      // Compact when the slot's header already names this target: the request is the payload alone.
      // A payload beyond the compact size field goes compact too when the header's size is its own.
      const bool same_size = s.framed_in_size == in_size;
      const bool compact = s.framed && s.framed_address == h.out_address && s.framed_key == h.out_key &&
                           s.framed_capacity == h.out_capacity &&
                           (in_size <= protocol::kMaxCompactPayload || same_size) &&
                           static_cast<uint32_t>(function) < protocol::kMaxCompactFunctions;
      const size_t header_bytes = compact ? 0 : sizeof h;
      const uint64_t dst_offset = protocol::slot_payload_offset(slot, in_stride_) - header_bytes;
      const uint32_t size_field = in_size <= protocol::kMaxCompactPayload ? static_cast<uint32_t>(in_size)
                                                                          : protocol::kCompactSizeFromHeader;
      const uint32_t imm = compact ? protocol::compact_request_imm(slot, static_cast<uint32_t>(function), size_field)
                                   : protocol::request_imm(slot, static_cast<uint32_t>(function));
      const Registration* r = in_size ? find(in, in_size) : nullptr;
      if (!r && in_size) {  // unregistered input: header (if any) and payload go from the staging slot
        // Laid out as the executor's slot, so that the copy reads aligned lines too.
        uint8_t* stage = l.staging_in.data() + protocol::slot_header_offset(slot, in_stride_);
        if (!compact) std::memcpy(stage, &h, sizeof h);
        std::memcpy(stage + sizeof h, in, in_size);
        rc = l.ep->write_imm(*l.staging_in_mr, protocol::slot_payload_offset(slot, in_stride_) - header_bytes,
                             header_bytes + in_size, l.input, dst_offset, imm, 0);
      } else {
        if (!compact) std::memcpy(l.headers.data() + slot * kHeaderStride, &h, sizeof h);
        if (compact) {
          rc = l.ep->write_imm(r ? *r->region : *l.headers_mr,
                               r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size,
                               l.input, dst_offset, imm, 0);
        } else {
          fabric::Segment segs[2] = {{l.headers_mr.get(), slot * size_t{kHeaderStride}, sizeof h},
                                     {r ? r->region : l.headers_mr.get(),
                                      r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size}};
          rc = l.ep->write_imm(segs, in_size ? 2 : 1, l.input, dst_offset, imm, 0);
        }
      }
      if (rc == fabric::Errc::ok && compact) reframed = false;
    }
    if (rc != fabric::Errc::ok) return rc;
    if (reframed) s.framed = true;
    if (reframed) {
      s.framed_address = h.out_address;
      s.framed_key = h.out_key;
      s.framed_capacity = h.out_capacity;
      s.framed_in_size = h.in_size;
    }
  }
  --l.free_count;
  s.call = index;
  c.slot = slot;
  c.state = Call::State::posted;
  return fabric::Errc::ok;
}

Errc ExecutorClient::submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            Invocation* handle, int worker) noexcept {
  if (lost_ != Errc::ok) return lost_;
  if (function < 0 || static_cast<size_t>(function) >= functions_.size()) return Errc::unknown_function;
  if (in_size > options_.input_capacity) return Errc::payload_too_large;
  if ((in_size && !in) || (out_capacity && !out)) return Errc::invalid_argument;
  uint32_t w, index;
  Errc e = new_call(worker, Call::Kind::invoke, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.function = function;
  c.in = in;
  c.in_size = in_size;
  c.out = out;
  c.out_capacity = out_capacity;
  return enqueue(links_[w], index);
}

Errc ExecutorClient::submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !src) return Errc::invalid_argument;
  if (bytes > options_.input_capacity && !find(src, bytes)) return Errc::payload_too_large;  // staged: one slot's worth
  uint32_t w, index;
  Errc e = new_call(worker, Call::Kind::put, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.region = region;
  c.offset = offset;
  c.in = src;
  c.in_size = bytes;
  return enqueue(links_[w], index);
}

Errc ExecutorClient::submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !dst) return Errc::invalid_argument;
  if (bytes > protocol::kMaxResultSize || (bytes > options_.output_capacity && !find(dst, bytes)))
    return Errc::output_too_large;
  uint32_t w, index;
  Errc e = new_call(worker, Call::Kind::get, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.region = region;
  c.offset = offset;
  c.out = dst;
  c.out_capacity = bytes;
  return enqueue(links_[w], index);
}

// Splits [0, bytes) into pieces of at most `piece` bytes, up to kMaxSlots of them in flight at a
// time, and waits for all of them. submit_piece(offset, size, handle) starts one.
template <class SubmitPiece>
Errc in_pieces(Executor& ex, size_t bytes, size_t piece, std::chrono::microseconds timeout, SubmitPiece submit_piece) {
  Invocation handles[protocol::kMaxSlots];
  size_t done = 0;
  Errc first = Errc::ok;
  do {
    size_t started = 0;
    while (started < protocol::kMaxSlots && (done < bytes || (bytes == 0 && started == 0))) {
      size_t n = std::min(piece, bytes - done);
      Errc e = submit_piece(done, n, &handles[started]);
      if (e == Errc::queue_full && started > 0) break;  // wait for these first
      if (e != Errc::ok) {
        first = e;
        break;
      }
      ++started;
      done += n;
    }
    for (size_t i = 0; i < started; ++i) {
      Errc e = ex.wait(handles[i], nullptr, timeout);
      if (e == Errc::timeout) ex.abandon(handles[i]);
      if (first == Errc::ok) first = e;
    }
  } while (first == Errc::ok && done < bytes);
  return first;
}

Errc ExecutorClient::put(uint32_t region, uint64_t offset, const void* src, size_t bytes,
                         std::chrono::microseconds timeout) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !src) return Errc::invalid_argument;
  // One write from registered memory; slot-sized pieces through the staging otherwise.
  const size_t piece = bytes && find(src, bytes) ? bytes : std::max<size_t>(options_.input_capacity, 1);
  auto* base = static_cast<const uint8_t*>(src);
  return in_pieces(*this, bytes, piece, timeout, [&](size_t at, size_t n, Invocation* h) {
    return submit_put(region, offset + at, base ? base + at : nullptr, n, h, -1);
  });
}

Errc ExecutorClient::get(uint32_t region, uint64_t offset, void* dst, size_t bytes,
                         std::chrono::microseconds timeout) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !dst) return Errc::invalid_argument;
  const size_t piece = bytes && find(dst, bytes)
                           ? size_t{protocol::kMaxResultSize}
                           : std::clamp<size_t>(options_.output_capacity, 1, protocol::kMaxResultSize);
  auto* base = static_cast<uint8_t*>(dst);
  return in_pieces(*this, bytes, piece, timeout, [&](size_t at, size_t n, Invocation* h) {
    return submit_get(region, offset + at, base ? base + at : nullptr, n, h, -1);
  });
}

Errc ExecutorClient::test(const Invocation& h, bool* done) noexcept {
  if (!handle_ok(h) || !done) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  if (l.calls[h.call].state != Call::State::done) progress(l);
  *done = l.calls[h.call].state == Call::State::done || lost_ != Errc::ok;
  return Errc::ok;
}

Errc ExecutorClient::wait(const Invocation& h, size_t* out_size, std::chrono::microseconds timeout) noexcept {
  if (!handle_ok(h) || links_[h.worker].calls[h.call].abandoned) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  Call& c = l.calls[h.call];
  if (timeout.count() < 0)
    timeout = std::chrono::duration_cast<std::chrono::microseconds>(options_.invocation_timeout);
  // Busy-poll first. Time is kept in cycle-counter ticks, read once per 256 polls: steady_clock
  // can be a syscall (clock/cycle_clock.hpp), which a round trip must not pay.
  uint32_t polls = 0;
  uint64_t start = 0, hot_end = 0, deadline = 0;
  while (c.state != Call::State::done) {
    if (lost_ != Errc::ok) return lost_;
    progress(l);
    if (c.state == Call::State::done || (++polls & 255)) continue;
    uint64_t now = CycleClock::now();
    if (start == 0) {
      start = now;
      hot_end = options_.client_hot_timeout_us < 0
                    ? UINT64_MAX
                    : now + CycleClock::ticks(std::chrono::microseconds(options_.client_hot_timeout_us));
      deadline = now + CycleClock::ticks(timeout);
    }
    if (now >= deadline) return Errc::timeout;
    // A post waiting to be retried (a full send queue, shm still setting up its path) needs
    // polls, not sleeps: no completion would wake the sleep for it.
    if (now >= hot_end && !(l.queue_count && l.free_count)) {
      auto left = std::chrono::nanoseconds(static_cast<int64_t>(CycleClock::to_ns(deadline - now)));
      auto slice = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(50));
      if (l.ep->wait(std::chrono::duration_cast<std::chrono::microseconds>(slice)) == fabric::Errc::peer_lost) {
        progress(l);
        mark_lost();
      }
    }
  }
  Errc e = c.result;
  if (out_size) *out_size = c.size;
  free_call(l, c);
  return e;
}

void ExecutorClient::abandon(const Invocation& h) noexcept {
  if (!handle_ok(h)) return;
  WorkerLink& l = links_[h.worker];
  Call& c = l.calls[h.call];
  // A queued call is dropped when its turn comes; a posted one when its late answer arrives.
  if (c.state == Call::State::done) free_call(l, c);
  else c.abandoned = true;
}

Errc ExecutorClient::invoke(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            size_t* out_size, std::chrono::microseconds timeout) noexcept {
  Invocation h;
  Errc e = submit(function, in, in_size, out, out_capacity, &h, -1);
  if (e != Errc::ok) return e;
  e = wait(h, out_size, timeout);
  if (e == Errc::timeout) abandon(h);
  return e;
}

Errc ExecutorClient::invoke_all(int function, const void* in, size_t in_size, void* const* outs,
                                size_t out_capacity, size_t* out_sizes) noexcept {
  Invocation handles[protocol::kMaxSlots];
  size_t n = std::min<size_t>(links_.size(), protocol::kMaxSlots);
  Errc first = Errc::ok;
  size_t started = 0;
  for (; started < n; ++started) {
    Errc e = submit(function, in, in_size, outs[started], out_capacity, &handles[started], static_cast<int>(started));
    if (e != Errc::ok) {
      first = e;
      break;
    }
  }
  for (size_t i = 0; i < started; ++i) {
    Errc e = wait(handles[i], out_sizes ? &out_sizes[i] : nullptr, std::chrono::microseconds(-1));
    if (e == Errc::timeout) abandon(handles[i]);
    if (first == Errc::ok) first = e;
  }
  return first;
}

}  // namespace

std::unique_ptr<Executor> Executor::deploy(const LeaseGrant& grant, const DeployOptions& options) {
  return std::make_unique<ExecutorClient>(grant, options);
}

}  // namespace rfaas
