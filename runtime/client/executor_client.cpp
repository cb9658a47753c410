// The client side of a lease: control connection to the executor daemon, one fabric endpoint
// per worker, slot bookkeeping, and the invocation path.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "clock/cycle_clock.hpp"
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
    case Errc::busy: return "all input slots busy";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::connection_failed: return "connection failed";
    case Errc::protocol: return "protocol error";
    case Errc::lease_in_use: return "lease already deployed";
    case Errc::not_initialized: return "rfaas is not initialized (call rfaas_mpi_init first)";
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
    case protocol::ControlErrc::no_capacity: return Errc::no_capacity;
    case protocol::ControlErrc::library_mismatch:
    case protocol::ControlErrc::library_load_failed: return Errc::library_load_failed;
    case protocol::ControlErrc::executor_failed: return Errc::executor_lost;
    case protocol::ControlErrc::malformed: return Errc::invalid_argument;
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
  }
  return Errc::protocol;
}

class OwnedBuffer final : public Buffer {
 public:
  OwnedBuffer(fabric::Domain& domain, size_t bytes) : storage_(std::max<size_t>(bytes, 1)) {
    data_ = storage_.data();
    size_ = bytes;
    mr_ = domain.register_memory(storage_.data(), storage_.size(), fabric::Access::remote_write);
  }
  const fabric::MemoryRegion& region() const { return *mr_; }

 private:
  std::vector<uint8_t> storage_;
  std::unique_ptr<fabric::MemoryRegion> mr_;
};

struct SlotState {
  enum class State : uint8_t { free, busy, done, abandoned };
  State state = State::free;
  uint32_t generation = 0;
  InvocationStatus status = InvocationStatus::ok;
  uint32_t size = 0;
  void* copy_to = nullptr;  // result lands in staging; copy here on completion
  size_t copy_capacity = 0;
  // The output target the header in the executor's slot names (the last framed request's):
  // while it stays the same, requests go compact, without a header.
  bool framed = false;
  uint64_t framed_address = 0, framed_key = 0;
  uint32_t framed_capacity = 0;
};

struct WorkerLink {
  std::unique_ptr<fabric::Endpoint> ep;
  fabric::RemoteRegion input;  // the executor's input slots
  std::vector<SlotState> slots;
  std::vector<uint32_t> free_slots;
  uint32_t free_count = 0;
  std::vector<uint8_t> headers;   // kHeaderStride per slot
  std::vector<uint8_t> staging_in;   // header + payload per slot, for unregistered inputs
  std::vector<uint8_t> staging_out;  // output_capacity per slot, for unregistered outputs
  std::unique_ptr<fabric::MemoryRegion> headers_mr, staging_in_mr, staging_out_mr;
  fabric::Completion completions[16];  // progress() fills these: built once, not per poll
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
  void renew(const LeaseGrant& renewed) override;
  int64_t expires_at_ms() const noexcept override { return expires_at_ms_; }
  Usage release() override;

 private:
  const Registration* find(const void* p, size_t n) const noexcept;
  void add_registration(const uint8_t* begin, size_t size, const fabric::MemoryRegion* region);
  void progress(WorkerLink& link) noexcept;
  Errc finish(WorkerLink& link, SlotState& s, uint32_t slot, size_t* out_size) noexcept;
  void mark_lost() noexcept;
  bool handle_ok(const Invocation& h) const noexcept {
    return h.worker < links_.size() && h.slot < links_[h.worker].slots.size() &&
           links_[h.worker].slots[h.slot].generation == h.generation;
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
  std::map<const void*, std::unique_ptr<fabric::MemoryRegion>> user_regions_;
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
  if (options.output_capacity > protocol::kMaxOutputCapacity || options.input_capacity > protocol::kMaxInputCapacity)
    fail(Errc::invalid_argument, "input or output capacity beyond the protocol's limits");

  std::ifstream lib(options.library_path, std::ios::binary);
  if (!lib) fail(Errc::library_load_failed, "cannot read function library " + options.library_path);
  std::vector<uint8_t> library((std::istreambuf_iterator<char>(lib)), std::istreambuf_iterator<char>());

  protocol::AllocateRequest req;
  try {
    req.token = nlohmann::json::parse(grant.token).get<protocol::LeaseToken>();
  } catch (const std::exception& e) {
    fail(Errc::bad_token, std::string("lease token: ") + e.what());
  }
  req.library_sha256 = protocol::sha256_hex(library.data(), library.size());
  req.library_size = library.size();
  req.library_name = options.library_path.substr(options.library_path.rfind('/') + 1);
  req.functions = options.functions;
  req.workers = options.workers;
  req.slots = options.slots;
  req.input_capacity = options.input_capacity;
  req.output_capacity = options.output_capacity;
  req.hot_timeout_us = options.hot_timeout_us;
  lease_id_ = req.token.lease_id;
  expires_at_ms_ = req.token.expires_at_ms;

  protocol::Allocated allocated;
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  auto t_start = Clock::now();
  auto t_phase = t_start;
  try {
    control_ = net::TcpStream::connect(net::HostPort::parse(grant.daemon_address), net::deadline_in(timeout));
    std::string msg = protocol::make_message("allocate", req);
    control_.send_frame(msg.data(), msg.size(), net::deadline_in(timeout));
    timing_.connect_ms = ms_since(t_phase);
    t_phase = Clock::now();
    for (;;) {
      auto reply = protocol::ControlMessage::parse(
          control_.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout * 2)));
      if (reply.type == "send_library") {
        auto t_lib = Clock::now();
        control_.send_frame(library.data(), library.size(), net::deadline_in(timeout * 6));
        timing_.library_ms = ms_since(t_lib);
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
    domain_ = fabric::open_domain(fabric::Config::from_env());
    links_.resize(options.workers);
    for (uint32_t w = 0; w < options.workers; ++w) {
      WorkerLink& l = links_[w];
      l.slots.resize(options.slots);
      l.free_slots.resize(options.slots);
      for (uint32_t s = 0; s < options.slots; ++s) l.free_slots[s] = options.slots - 1 - s;
      l.free_count = options.slots;
      l.headers.resize(kHeaderStride * options.slots);
      l.staging_in.resize(in_stride_ * options.slots);
      l.staging_out.resize(std::max<uint64_t>(options.output_capacity, 1) * options.slots);
      l.headers_mr = domain_->register_memory(l.headers.data(), l.headers.size(), fabric::Access::local);
      l.staging_in_mr = domain_->register_memory(l.staging_in.data(), l.staging_in.size(), fabric::Access::local);
      l.staging_out_mr =
          domain_->register_memory(l.staging_out.data(), l.staging_out.size(), fabric::Access::remote_write);
      fabric::EndpointConfig ec;
      ec.max_outstanding_writes = 2 * options.slots + 8;
      ec.wait_mode = fabric::WaitMode::sleep;
      l.ep = domain_->create_endpoint(ec);
      protocol::WorkerHello hello{w, protocol::kWorkerHelloVersion, lease_id_};
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

std::unique_ptr<Buffer> ExecutorClient::allocate(size_t bytes) {
  auto b = std::make_unique<OwnedBuffer>(*domain_, bytes);
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
  try {
    std::string msg = protocol::make_message("renew", req);
    control_.send_frame(msg.data(), msg.size(), net::deadline_in(options_.control_timeout));
    auto deadline = net::deadline_in(options_.control_timeout);
    for (;;) {
      auto reply = protocol::ControlMessage::parse(control_.recv_frame(protocol::kMaxControlFrame, deadline));
      if (reply.type == "renewed") {
        expires_at_ms_ = reply.body.value("expires_at_ms", expires_at_ms_);
        return;
      }
      if (reply.type == "error") {
        auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
        fail(from_control(code.value_or(protocol::ControlErrc::internal)),
             "renew: " + reply.body.value("message", std::string()));
      }
      if (reply.type == "lease_ended") {
        auto end = reply.as<protocol::LeaseEnded>();
        usage_ = {end.usage.invocations, end.usage.hot_polling_ns, end.usage.compute_ns};
        lost_ = end.reason == "expired" ? Errc::lease_expired
                : end.reason == "revoked" ? Errc::lease_revoked
                                          : Errc::executor_lost;
        fail(lost_, "renew: the lease ended (" + end.reason + ")");
      }
    }
  } catch (const net::NetError& e) {
    fail(Errc::connection_failed, std::string("renew: ") + e.what());
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string("renew: ") + e.what());
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
      if (end.reason == "expired") why = Errc::lease_expired;
      else if (end.reason == "revoked") why = Errc::lease_revoked;
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
      if (slot >= link.slots.size()) continue;
      SlotState& s = link.slots[slot];
      if (s.state == SlotState::State::busy) {
        s.state = SlotState::State::done;
        s.status = protocol::response_status(c.imm);
        s.size = protocol::response_size(c.imm);
      } else if (s.state == SlotState::State::abandoned) {
        s.state = SlotState::State::free;
        link.free_slots[link.free_count++] = slot;
      }
    } else if (c.kind == fabric::Completion::Kind::error && c.error == fabric::Errc::peer_lost) {
      mark_lost();
    }
  }
}

Errc ExecutorClient::submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            Invocation* handle, int worker) noexcept {
  if (lost_ != Errc::ok) return lost_;
  if (released_) return Errc::invalid_argument;
  if (function < 0 || static_cast<size_t>(function) >= functions_.size()) return Errc::unknown_function;
  if (in_size > options_.input_capacity) return Errc::payload_too_large;
  if ((in_size && !in) || (out_capacity && !out) || !handle) return Errc::invalid_argument;
  if (worker >= static_cast<int>(links_.size())) return Errc::invalid_argument;

  // A worker with a free slot: the one asked for, or round-robin.
  uint32_t w = worker >= 0 ? static_cast<uint32_t>(worker) : next_worker_;
  for (uint32_t tries = 0; links_[w].free_count == 0; ++tries) {
    progress(links_[w]);
    if (links_[w].free_count) break;
    if (worker >= 0 || tries + 1 >= links_.size()) return Errc::busy;
    w = (w + 1) % links_.size();
  }
  if (worker < 0) next_worker_ = (w + 1) % links_.size();
  WorkerLink& l = links_[w];
  uint32_t slot = l.free_slots[--l.free_count];
  SlotState& s = l.slots[slot];

  InvocationHeader h;
  h.in_size = static_cast<uint32_t>(in_size);
  size_t capacity = std::min<size_t>(out_capacity, options_.output_capacity);
  h.out_capacity = static_cast<uint32_t>(capacity);
  s.copy_to = nullptr;
  if (const Registration* r = capacity ? find(out, capacity) : nullptr) {
    auto remote = r->region->remote();
    h.out_address = remote.address + static_cast<uint64_t>(static_cast<const uint8_t*>(out) - r->begin);
    h.out_key = remote.key;
  } else {
    auto remote = l.staging_out_mr->remote();
    h.out_address = remote.address + slot * options_.output_capacity;
    h.out_key = remote.key;
    s.copy_to = out;
    s.copy_capacity = capacity;
  }

  // Compact when the slot's header already names this target: the request is the payload alone.
  const bool compact = s.framed && s.framed_address == h.out_address && s.framed_key == h.out_key &&
                       s.framed_capacity == h.out_capacity && in_size <= protocol::kMaxCompactPayload &&
                       static_cast<uint32_t>(function) < protocol::kMaxCompactFunctions;
  const size_t header_bytes = compact ? 0 : sizeof h;
  const uint64_t dst_offset = slot * in_stride_ + sizeof h - header_bytes;
  const uint32_t imm = compact ? protocol::compact_request_imm(slot, static_cast<uint32_t>(function),
                                                               static_cast<uint32_t>(in_size))
                               : protocol::request_imm(slot, static_cast<uint32_t>(function));
  const Registration* r = in_size ? find(in, in_size) : nullptr;
  if (!r && in_size) {  // unregistered input: header (if any) and payload go from the staging slot
    uint8_t* stage = l.staging_in.data() + slot * in_stride_;
    if (!compact) std::memcpy(stage, &h, sizeof h);
    std::memcpy(stage + sizeof h, in, in_size);
  } else if (!compact) {
    std::memcpy(l.headers.data() + slot * kHeaderStride, &h, sizeof h);
  }
  fabric::Errc rc;
  Clock::time_point retry_deadline{};
  for (uint32_t attempt = 0;; ++attempt) {
    if (!r && in_size) {
      rc = l.ep->write_imm(*l.staging_in_mr, slot * in_stride_ + sizeof h - header_bytes, header_bytes + in_size,
                           l.input, dst_offset, imm, 0);
    } else if (compact) {
      rc = l.ep->write_imm(r ? *r->region : *l.headers_mr,
                           r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size, l.input,
                           dst_offset, imm, 0);
    } else {
      fabric::Segment segs[2] = {{l.headers_mr.get(), slot * size_t{kHeaderStride}, sizeof h},
                                 {r ? r->region : l.headers_mr.get(),
                                  r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size}};
      rc = l.ep->write_imm(segs, in_size ? 2 : 1, l.input, dst_offset, imm, 0);
    }
    if (rc != fabric::Errc::again) break;
    // The send queue is full, or (shm) the provider is still setting up the path to a new
    // peer: reap completions and retry, for at most the invocation timeout.
    progress(l);
    if ((attempt & 63) == 63) {
      auto now = Clock::now();
      if (retry_deadline == Clock::time_point{}) retry_deadline = now + options_.invocation_timeout;
      else if (now > retry_deadline) break;
    }
  }
  if (rc != fabric::Errc::ok) {
    l.free_slots[l.free_count++] = slot;
    if (rc == fabric::Errc::again) return Errc::busy;
    if (rc == fabric::Errc::peer_lost) {
      mark_lost();
      return lost_;
    }
    return Errc::protocol;
  }
  if (!compact) {
    s.framed = true;
    s.framed_address = h.out_address;
    s.framed_key = h.out_key;
    s.framed_capacity = h.out_capacity;
  }
  s.state = SlotState::State::busy;
  *handle = {w, slot, ++s.generation};
  return Errc::ok;
}

Errc ExecutorClient::finish(WorkerLink& link, SlotState& s, uint32_t slot, size_t* out_size) noexcept {
  Errc e = from_status(s.status);
  size_t size = s.size;
  if (e == Errc::ok && s.copy_to) {
    if (size > s.copy_capacity) e = Errc::output_too_large;
    else if (size) std::memcpy(s.copy_to, link.staging_out.data() + slot * options_.output_capacity, size);
  }
  if (out_size) *out_size = e == Errc::ok ? size : 0;
  s.state = SlotState::State::free;
  link.free_slots[link.free_count++] = slot;
  return e;
}

Errc ExecutorClient::test(const Invocation& h, bool* done) noexcept {
  if (!handle_ok(h) || !done) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  if (l.slots[h.slot].state == SlotState::State::busy) progress(l);
  *done = l.slots[h.slot].state == SlotState::State::done || lost_ != Errc::ok;
  return Errc::ok;
}

Errc ExecutorClient::wait(const Invocation& h, size_t* out_size, std::chrono::microseconds timeout) noexcept {
  if (!handle_ok(h)) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  SlotState& s = l.slots[h.slot];
  if (s.state != SlotState::State::busy && s.state != SlotState::State::done) return Errc::invalid_argument;
  if (timeout.count() < 0)
    timeout = std::chrono::duration_cast<std::chrono::microseconds>(options_.invocation_timeout);
  // Busy-poll first. Time is kept in cycle-counter ticks, read once per 256 polls: steady_clock
  // can be a syscall (clock/cycle_clock.hpp), which a round trip must not pay.
  uint32_t polls = 0;
  uint64_t start = 0, hot_end = 0, deadline = 0;
  while (s.state == SlotState::State::busy) {
    if (lost_ != Errc::ok) return lost_;
    progress(l);
    if (s.state != SlotState::State::busy || (++polls & 255)) continue;
    uint64_t now = CycleClock::now();
    if (start == 0) {
      start = now;
      hot_end = options_.client_hot_timeout_us < 0
                    ? UINT64_MAX
                    : now + CycleClock::ticks(std::chrono::microseconds(options_.client_hot_timeout_us));
      deadline = now + CycleClock::ticks(timeout);
    }
    if (now >= deadline) return Errc::timeout;
    if (now >= hot_end) {
      auto left = std::chrono::nanoseconds(static_cast<int64_t>(CycleClock::to_ns(deadline - now)));
      auto slice = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(50));
      if (l.ep->wait(std::chrono::duration_cast<std::chrono::microseconds>(slice)) == fabric::Errc::peer_lost) {
        progress(l);
        mark_lost();
      }
    }
  }
  return finish(l, s, h.slot, out_size);
}

void ExecutorClient::abandon(const Invocation& h) noexcept {
  if (!handle_ok(h)) return;
  WorkerLink& l = links_[h.worker];
  SlotState& s = l.slots[h.slot];
  if (s.state == SlotState::State::busy) s.state = SlotState::State::abandoned;
  else if (s.state == SlotState::State::done) finish(l, s, h.slot, nullptr);
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
