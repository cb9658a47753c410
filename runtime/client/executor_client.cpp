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
#include "client/control_channel.hpp"
#include "client/data_path.hpp"
#include "client/registration_table.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/request_codec.hpp"
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
    case Errc::invalid_argument: return "invalid argument";
    case Errc::connection_failed: return "connection failed";
    case Errc::protocol: return "protocol error";
    case Errc::lease_in_use: return "lease already deployed";
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

static_assert(kMaxSlotsPerWorker == protocol::kMaxSlots, "the public limit is the protocol's");

namespace {

using Clock = std::chrono::steady_clock;
using protocol::InvocationHeader;
using protocol::InvocationStatus;
constexpr auto kHeaderStride = 64;  // one cache line per slot header
// How long the daemon has to say why a worker's connection was lost before it counts as executor_lost.
constexpr auto kLossReasonBound = std::chrono::milliseconds(1500);

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

using Registration = client::RegistrationTable::Range;

// The facade: the lease's control channel, its registrations and regions, and the data path.
class ExecutorClient final : public Executor, private client::LeaseWatch {
 public:
  ExecutorClient(const LeaseGrant& grant, const DeployOptions& options);
  ~ExecutorClient() override;

  uint32_t workers() const noexcept override { return path_ ? path_->workers() : 0; }
  uint64_t lease_id() const noexcept override { return lease_id_; }
  bool library_was_cached() const noexcept override { return cached_; }
  DeployTiming deploy_timing() const noexcept override { return timing_; }
  int function(std::string_view name) const noexcept override {
    auto it = std::find(functions_.begin(), functions_.end(), name);
    return it == functions_.end() ? -1 : static_cast<int>(it - functions_.begin());
  }

  std::unique_ptr<Buffer> allocate(size_t bytes) override;
  void register_memory(void* data, size_t bytes) override;
  bool deregister_memory(void* data) override;
  bool registered(const void* data, size_t bytes) const noexcept override { return registrations_.covers(data, bytes); }
  std::vector<std::pair<void*, size_t>> registered_ranges() const override {
    std::vector<std::pair<void*, size_t>> out;
    for (const auto& [p, mr] : user_regions_)
      if (const Registration* r = registrations_.find(p, 1); r && r->region == mr.get())
        out.emplace_back(const_cast<void*>(p), r->size);
    return out;
  }

  Errc invoke(int function, const void* in, size_t in_size, void* out, size_t out_capacity, size_t* out_size,
              std::chrono::microseconds timeout) noexcept override;
  Errc submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity, Invocation* handle,
              int worker) noexcept override;
  Errc wait(const Invocation& handle, size_t* out_size, std::chrono::microseconds timeout) noexcept override;
  Errc test(const Invocation& handle, bool* done) noexcept override;
  void abandon(const Invocation& handle) noexcept override;
  size_t progress(Completed* out, size_t max) noexcept override;
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
  const Registration* find(const void* p, size_t n) const noexcept { return registrations_.find(p, n); }
  friend class OwnedBuffer;
  void forget_registration(const fabric::MemoryRegion* region) noexcept { registrations_.erase_region(region); }
  // After a worker's connection was lost: the daemon says why within kLossReasonBound; until then
  // the lease counts as live (test() says not done, wait() waits for the reason).
  Errc resolve(std::chrono::milliseconds wait) noexcept override;
  // Blocking callers wait for the daemon's reason for a lost connection (bounded).
  Errc settle(Errc e) noexcept {
    if (e != Errc::executor_lost || ended_ != Errc::ok || !lost_) return e;
    while (state(kLossReasonBound) == Errc::ok) {
    }
    return ended_;
  }
  Errc closed() const noexcept { return ended_ != Errc::ok ? ended_ : Errc::invalid_argument; }
  // A control request that heard the lease's end: the data path hears it too.
  template <class F>
  auto on_control(F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const Error&) {
      if (ended_ == Errc::ok) ended_ = control_.ended();
      throw;
    }
  }

  DeployOptions options_;
  std::vector<std::string> functions_;
  uint64_t lease_id_ = 0;
  int64_t expires_at_ms_ = 0;
  bool cached_ = false;
  DeployTiming timing_;
  client::ControlChannel control_;
  std::unique_ptr<fabric::Domain> domain_;
  client::RegistrationTable registrations_;
  std::vector<client::ResidentRegion> regions_;
  std::unique_ptr<client::DataPath> path_;
  std::map<const void*, std::unique_ptr<fabric::MemoryRegion>> user_regions_;
  std::shared_ptr<ExecutorClient*> self_ = std::make_shared<ExecutorClient*>(this);  // for allocate()'s buffers
  Clock::time_point loss_seen_{};  // when a worker's connection was lost
  bool released_ = false;
};

// --- setup -------------------------------------------------------------------------------------

[[noreturn]] void fail(Errc code, const std::string& what) { throw Error(code, what); }

ExecutorClient::ExecutorClient(const LeaseGrant& grant, const DeployOptions& options)
    : options_(options), functions_(options.functions) {
  const auto timeout = options.control_timeout;
  const protocol::LeaseParameters params{options.workers, options.slots, options.input_capacity,
                                         options.output_capacity, options.hot_timeout_us};
  if (std::string why = protocol::lease_parameters_error(params); !why.empty()) fail(Errc::invalid_argument, why);
  if (options.queue_depth > (1u << 20)) fail(Errc::invalid_argument, "queue_depth is at most 2^20 per worker");

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
  req.params = params;
  req.host = fabric::host_identity();
  fabric::Config fabric_config;
  try {
    fabric_config = options.fabric ? *options.fabric : fabric::Config::from_env();  // once, here
  } catch (const fabric::Error& e) {
    fail(Errc::invalid_argument, e.what());
  }
  if (fabric_config.backend == fabric::Backend::ofi) req.ofi_provider = fabric_config.ofi_provider;
  lease_id_ = req.token.lease_id;
  expires_at_ms_ = req.token.expires_at_ms;

  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  auto t_start = Clock::now();
  const protocol::Allocated allocated =
      control_.allocate(grant.daemon_address, req, library, dependencies, timeout, timing_);
  auto t_phase = Clock::now();
  cached_ = allocated.library_cached;
  if (allocated.workers != options.workers) fail(Errc::protocol, "daemon allocated a different number of workers");

  try {
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
    client::DataPathConfig dc;
    dc.functions = static_cast<uint32_t>(functions_.size());
    dc.lease = params;
    dc.queue_depth = options.queue_depth;
    dc.client_hot_timeout_us = options.client_hot_timeout_us;
    dc.invocation_timeout = options.invocation_timeout;
    auto hello = [&](uint32_t w, const fabric::RemoteRegion& ack) {
      protocol::WorkerHello h{w, protocol::kWorkerHelloVersion, lease_id_, ack.address, ack.key, {}};
      protocol::sign_worker_hello(h, hello_key);
      return fabric::make_connection_data(h);
    };
    path_ = std::make_unique<client::DataPath>(*domain_, dc, allocated.address, hello, timeout, registrations_, regions_,
                                               static_cast<client::LeaseWatch&>(*this));
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
  registrations_.insert(b->data(), b->size(), &b->region());
  return b;
}

void ExecutorClient::register_memory(void* data, size_t bytes) {
  if (!data || bytes == 0) fail(Errc::invalid_argument, "register_memory: empty range");
  const auto kind = registrations_.classify(data, bytes);
  if (kind == client::RegistrationTable::Lookup::covered) return;  // travels without a copy already
  std::unique_ptr<fabric::MemoryRegion> mr;
  try {
    mr = domain_->register_memory(data, bytes, fabric::Access::remote_write);
  } catch (const fabric::Error& e) {
    fail(Errc::invalid_argument, e.what());
  }
  registrations_.insert(data, bytes, mr.get());  // replaces a shorter one starting at data
  user_regions_[data] = std::move(mr);           // and only then is that one deregistered
}

bool ExecutorClient::deregister_memory(void* data) {
  auto it = user_regions_.find(data);
  if (it == user_regions_.end()) return false;
  registrations_.erase_region(it->second.get());
  user_regions_.erase(it);
  return true;
}

void ExecutorClient::renew(const LeaseGrant& renewed) {
  if (state() != Errc::ok) fail(ended_, "renew: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "renew: the lease was released");
  protocol::RenewRequest req;
  try {
    req.token = nlohmann::json::parse(renewed.token).get<protocol::LeaseToken>();
  } catch (const std::exception& e) {
    fail(Errc::bad_token, std::string("renewed lease token: ") + e.what());
  }
  if (req.token.lease_id != lease_id_) fail(Errc::bad_token, "renew: the token is for another lease");
  auto reply = on_control([&] { return control_.request(protocol::make_message(protocol::ControlType::renew, req), protocol::ControlType::renewed, "renew"); });
  expires_at_ms_ = reply.body.value("expires_at_ms", expires_at_ms_);
}

uint32_t ExecutorClient::create_region(uint64_t bytes) {
  if (state() != Errc::ok) fail(ended_, "create_region: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "create_region: the lease was released");
  if (bytes == 0) fail(Errc::invalid_argument, "create_region: a region needs at least one byte");
  if (regions_.size() >= protocol::kMaxRegions)
    fail(Errc::invalid_argument, "create_region: a lease holds at most " + std::to_string(protocol::kMaxRegions) + " regions");
  // The daemon allows the executor 3 control timeouts to map and register a large region.
  auto reply = on_control([&] {
    return control_.request(protocol::make_message(protocol::ControlType::create_region, protocol::CreateRegionRequest{bytes}),
                            protocol::ControlType::region_created, "create_region", options_.control_timeout * 4);
  });
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

Usage ExecutorClient::usage() {
  if (state() != Errc::ok) fail(ended_, "usage: the lease is over");
  if (released_ || !control_) fail(Errc::invalid_argument, "usage: the lease was released");
  auto reply = on_control([&] { return control_.request(protocol::make_message(protocol::ControlType::usage), protocol::ControlType::usage_report, "usage"); });
  try {
    auto u = reply.as<protocol::Usage>();
    return {u.invocations, u.hot_polling_ns, u.compute_ns};
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string("usage: ") + e.what());
  }
}

Usage ExecutorClient::release() {
  if (released_) return control_.final_usage();
  released_ = true;
  path_.reset();  // closing the endpoints first lets the executor's workers finish
  return control_.release();
}

// --- invocation path ---------------------------------------------------------------------------

Errc ExecutorClient::resolve(std::chrono::milliseconds wait) noexcept {
  // Cold path: the daemon says why on the control connection, within a moment.
  if (loss_seen_ == Clock::time_point{}) loss_seen_ = Clock::now();
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(loss_seen_ + kLossReasonBound - Clock::now());
  Errc why = control_.poll_end(std::clamp(left, std::chrono::milliseconds(0), wait));
  if (why == Errc::ok && Clock::now() < loss_seen_ + kLossReasonBound) return Errc::ok;
  if (why == Errc::ok) why = Errc::executor_lost;
  if (why == Errc::executor_lost && protocol::unix_now_ms() >= expires_at_ms_) why = Errc::lease_expired;
  ended_ = why;
  return why;
}

Errc ExecutorClient::submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            Invocation* handle, int worker) noexcept {
  return path_ ? path_->submit(function, in, in_size, out, out_capacity, handle, worker) : closed();
}
Errc ExecutorClient::submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  return path_ ? path_->submit_put(region, offset, src, bytes, handle, worker) : closed();
}
Errc ExecutorClient::submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  return path_ ? path_->submit_get(region, offset, dst, bytes, handle, worker) : closed();
}
Errc ExecutorClient::wait(const Invocation& h, size_t* out_size, std::chrono::microseconds timeout) noexcept {
  return path_ ? path_->wait(h, out_size, timeout) : Errc::invalid_argument;  // a negative timeout: the default
}
Errc ExecutorClient::test(const Invocation& h, bool* done) noexcept {
  return path_ ? path_->test(h, done) : Errc::invalid_argument;
}
void ExecutorClient::abandon(const Invocation& h) noexcept {
  if (path_) path_->abandon(h);
}
size_t ExecutorClient::progress(Completed* out, size_t max) noexcept { return path_ ? path_->progress(out, max) : 0; }

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
  if (!path_) return closed();
  if (Errc e = path_->check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !src) return Errc::invalid_argument;
  // One write from registered memory; slot-sized pieces through the staging otherwise.
  const size_t piece = bytes && path_->find(src, bytes) ? bytes : std::max<size_t>(options_.input_capacity, 1);
  auto* base = static_cast<const uint8_t*>(src);
  return in_pieces(*this, bytes, piece, timeout, [&](size_t at, size_t n, Invocation* h) {
    return submit_put(region, offset + at, base ? base + at : nullptr, n, h, -1);
  });
}

Errc ExecutorClient::get(uint32_t region, uint64_t offset, void* dst, size_t bytes,
                         std::chrono::microseconds timeout) noexcept {
  if (!path_) return closed();
  if (Errc e = path_->check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !dst) return Errc::invalid_argument;
  const size_t piece = bytes && path_->find(dst, bytes)
                           ? size_t{protocol::kMaxResultSize}
                           : std::clamp<size_t>(options_.output_capacity, 1, protocol::kMaxResultSize);
  auto* base = static_cast<uint8_t*>(dst);
  return in_pieces(*this, bytes, piece, timeout, [&](size_t at, size_t n, Invocation* h) {
    return submit_get(region, offset + at, base ? base + at : nullptr, n, h, -1);
  });
}

Errc ExecutorClient::invoke(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            size_t* out_size, std::chrono::microseconds timeout) noexcept {
  Invocation h;
  Errc e = submit(function, in, in_size, out, out_capacity, &h, -1);
  if (e != Errc::ok) return settle(e);
  e = wait(h, out_size, timeout);
  if (e == Errc::timeout) abandon(h);
  return e;
}

Errc ExecutorClient::invoke_all(int function, const void* in, size_t in_size, void* const* outs,
                                size_t out_capacity, size_t* out_sizes) noexcept {
  Invocation handles[protocol::kMaxSlots];
  size_t n = std::min<size_t>(workers(), protocol::kMaxSlots);
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
