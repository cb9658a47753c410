#include "client/data_path.hpp"

#include <algorithm>
#include <cstring>

#include "clock/cycle_clock.hpp"
#include "protocol/invocation.hpp"

namespace rfaas::client {

namespace {
using protocol::InvocationHeader;
using protocol::InvocationStatus;
constexpr auto kHeaderStride = 64;  // one cache line per slot header
constexpr uint32_t kNoCall = UINT32_MAX;

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

// A post refused locally: a staged put or get that no longer fits its slot, else the transport.
Errc post_error(fabric::Errc rc, DataPath::CallKind kind) noexcept {
  if (rc != fabric::Errc::invalid_argument) return Errc::protocol;
  return kind == DataPath::CallKind::put ? Errc::payload_too_large : Errc::output_too_large;
}
}  // namespace

using Registration = RegistrationTable::Range;

// One submitted operation, from submit until wait / abandon. Entries are made at deploy.
struct DataPath::Call {
  enum class State : uint8_t { free, queued, posted, done };
  State state = State::free;
  CallKind kind = CallKind::invoke;
  bool abandoned = false;  // given up by the caller: freed when its answer (or its turn) comes
  bool copy_out = false;   // the answer lands in the slot's staging; copied to `out` on arrival
  bool listed = false;     // in its worker's done ring (once at most), for progress()
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

struct DataPath::SlotState {
  uint32_t call = kNoCall;
  protocol::SlotTarget target;  // what the header in the executor's slot names (request_codec.hpp)
};

struct DataPath::WorkerLink {
  std::unique_ptr<fabric::Endpoint> ep;
  fabric::RemoteRegion input;  // the executor's input slots
  std::vector<SlotState> slots;
  std::vector<uint32_t> free_slots;
  uint32_t free_count = 0;
  std::vector<Call> calls;           // slots + queue_depth entries
  std::vector<uint32_t> free_calls;  // a stack; its capacity is made at deploy
  std::vector<uint32_t> queue;       // a ring of call indices waiting for a slot, in order
  uint32_t queue_head = 0, queue_count = 0;
  std::vector<uint32_t> done;        // a ring of calls completed since progress() last looked
  uint32_t done_head = 0, done_count = 0;
  std::vector<uint8_t> headers;      // kHeaderStride per slot
  fabric::HostMemory staging_in;   // header + payload per slot, for unregistered inputs
  fabric::HostMemory staging_out;  // output_capacity per slot, for unregistered outputs
  std::unique_ptr<fabric::MemoryRegion> headers_mr, staging_in_mr, staging_out_mr;
  fabric::Completion completions[16];  // progress() fills these: built once, not per poll
};

DataPath::DataPath(fabric::Domain& domain, const DataPathConfig& config, const std::string& address,
                   const MakeHello& make_hello, std::chrono::milliseconds timeout,
                   const RegistrationTable& registrations, const std::vector<ResidentRegion>& regions,
                   LeaseWatch& watch)
    : config_(config),
      in_stride_(protocol::input_slot_stride(config.lease.input_capacity)),
      registrations_(registrations),
      regions_(regions),
      watch_(watch) {
    links_.resize(config.lease.workers);
    for (uint32_t w = 0; w < config.lease.workers; ++w) {
      WorkerLink& l = links_[w];
      l.slots.resize(config.lease.slots);
      l.free_slots.resize(config.lease.slots);
      for (uint32_t s = 0; s < config.lease.slots; ++s) l.free_slots[s] = config.lease.slots - 1 - s;
      l.free_count = config.lease.slots;
      const size_t calls = size_t{config.lease.slots} + config.queue_depth;
      l.calls.resize(calls);
      l.free_calls.resize(calls);
      for (size_t c = 0; c < calls; ++c) l.free_calls[c] = static_cast<uint32_t>(calls - 1 - c);
      l.queue.resize(calls);
      l.done.resize(calls);
      l.headers.resize(kHeaderStride * config.lease.slots);
      l.staging_in = fabric::HostMemory(in_stride_ * config.lease.slots);
      l.staging_out = fabric::HostMemory(std::max<uint64_t>(config.lease.output_capacity, 1) * config.lease.slots);
      l.headers_mr = domain.register_memory(l.headers.data(), l.headers.size(), fabric::Access::local);
      l.staging_in_mr = domain.register_memory(l.staging_in.data(), l.staging_in.size(), fabric::Access::local);
      l.staging_out_mr =
          domain.register_memory(l.staging_out.data(), l.staging_out.size(), fabric::Access::remote_write);
      fabric::EndpointConfig ec;
      ec.max_outstanding_writes = 2 * config.lease.slots + 8;
      ec.wait_mode = fabric::WaitMode::sleep;
      l.ep = domain.create_endpoint(ec);
      fabric::ConnectionData theirs;
      l.ep->connect(address, make_hello(w, l.staging_out_mr->remote()), theirs, timeout);
      l.input = fabric::read_connection_data<fabric::RemoteRegion>(theirs);
    }
  CycleClock::ticks_per_ns();  // measured here, once per process, not in the first wait()
}

DataPath::~DataPath() = default;

uint32_t DataPath::workers() const noexcept { return static_cast<uint32_t>(links_.size()); }

bool DataPath::handle_ok(const Invocation& h) const noexcept {
  return h.worker < links_.size() && h.call < links_[h.worker].calls.size() &&
         links_[h.worker].calls[h.call].generation == h.generation &&
         links_[h.worker].calls[h.call].state != Call::State::free;
}

Errc DataPath::loss() noexcept {
  const Errc e = watch_.state();
  return e != Errc::ok ? e : Errc::executor_lost;
}

Errc DataPath::check_region(uint32_t region, uint64_t offset, uint64_t bytes) const noexcept {
  if (region >= regions_.size()) return Errc::no_such_region;
  const uint64_t size = regions_[region].size;
  return offset > size || bytes > size - offset ? Errc::region_out_of_bounds : Errc::ok;
}

void DataPath::poll(WorkerLink& link) noexcept {
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
      if ((status == InvocationStatus::put_done) != (call.kind == CallKind::put)) e = Errc::protocol;
      // An abandoned call's buffer may be gone: nothing is copied into it.
      if (e == Errc::ok && call.copy_out && size && !call.abandoned) {
        if (size > call.out_capacity) e = Errc::output_too_large;
        else std::memcpy(call.out, link.staging_out.data() + slot * config_.lease.output_capacity, size);
      }
      complete(link, call, e, e == Errc::ok || e == Errc::function_failed ? size : 0);
    } else if (c.kind == fabric::Completion::Kind::error && c.error == fabric::Errc::peer_lost) {
      watch_.connection_lost();
    }
  }
  // Also when nothing freed: a post that met a full send queue (or shm still setting up the
  // path to a new peer) is retried here.
  if (link.queue_count && link.free_count) pump(link);
}

void DataPath::complete(WorkerLink& link, Call& c, Errc result, size_t size) noexcept {
  if (c.abandoned) {
    free_call(link, c);
    return;
  }
  c.state = Call::State::done;
  c.result = result;
  c.size = size;
  if (!c.listed) {  // one entry per call: the ring holds every call entry, it cannot overflow
    c.listed = true;
    link.done[(link.done_head + link.done_count) % link.done.size()] = static_cast<uint32_t>(&c - link.calls.data());
    ++link.done_count;
  }
}

size_t DataPath::progress(Executor::Completed* out, size_t max) noexcept {
  size_t n = 0;
  const Errc state = watch_.state();
  for (uint32_t w = 0; w < links_.size(); ++w) {
    WorkerLink& l = links_[w];
    if (state == Errc::ok) poll(l);
    while (n < max && l.done_count) {
      const uint32_t index = l.done[l.done_head];
      l.done_head = static_cast<uint32_t>((l.done_head + 1) % l.done.size());
      --l.done_count;
      Call& c = l.calls[index];
      c.listed = false;
      if (c.state != Call::State::done) continue;  // wait() took it
      out[n++] = {{w, index, c.generation}, c.result, c.size};
      free_call(l, c);
    }
    if (state == Errc::ok) continue;
    // The lease is over: what is still outstanding ends with it.
    for (uint32_t index = 0; index < l.calls.size() && n < max; ++index) {
      Call& c = l.calls[index];
      if (c.state == Call::State::free || c.state == Call::State::done) continue;
      if (c.abandoned) {
        free_call(l, c);
        continue;
      }
      out[n++] = {{w, index, c.generation}, state, 0};
      free_call(l, c);
    }
  }
  return n;
}

void DataPath::free_call(WorkerLink& link, Call& c) noexcept {
  c.state = Call::State::free;
  c.abandoned = false;
  link.free_calls.push_back(static_cast<uint32_t>(&c - link.calls.data()));  // capacity made at deploy
}

Errc DataPath::new_call(int worker, CallKind kind, uint32_t* w_out, uint32_t* index, Invocation* handle) noexcept {
  if (Errc e = watch_.state(); e != Errc::ok) return e;
  if (watch_.lost()) return loss();
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
      if (l.free_calls.empty()) poll(l);  // abandoned calls' answers give entries back
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
  if (!l.free_count || l.free_calls.empty()) poll(l);
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

Errc DataPath::enqueue(WorkerLink& l, uint32_t index) noexcept {
  Call& c = l.calls[index];
  if (l.queue_count == 0 && l.free_count) {
    fabric::Errc rc = post(l, index);
    if (rc == fabric::Errc::ok) return Errc::ok;
    if (rc != fabric::Errc::again) {
      const CallKind kind = c.kind;
      free_call(l, c);
      if (rc == fabric::Errc::peer_lost) {
        watch_.connection_lost();
        return loss();
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

void DataPath::pump(WorkerLink& l) noexcept {
  while (l.queue_count && l.free_count && !watch_.lost()) {
    uint32_t index = l.queue[l.queue_head];
    Call& c = l.calls[index];
    if (c.abandoned) {
      free_call(l, c);
    } else {
      fabric::Errc rc = post(l, index);
      if (rc == fabric::Errc::again) return;  // retried at the next progress
      if (rc != fabric::Errc::ok) {
        if (rc == fabric::Errc::peer_lost) watch_.connection_lost();
        complete(l, c, rc == fabric::Errc::peer_lost ? loss() : post_error(rc, c.kind), 0);
      }
    }
    l.queue_head = static_cast<uint32_t>((l.queue_head + 1) % l.queue.size());
    --l.queue_count;
  }
}

fabric::Errc DataPath::post(WorkerLink& l, uint32_t index) noexcept {
  Call& c = l.calls[index];
  const uint32_t slot = l.free_slots[l.free_count - 1];
  SlotState& s = l.slots[slot];
  fabric::Errc rc;
  if (c.kind == CallKind::put) {
    // Straight into the region; the imm tells the worker to acknowledge it.
    const ResidentRegion& region = regions_[c.region];
    const uint32_t imm = protocol::encode_put(slot);
    const Registration* r = c.in_size ? find(c.in, c.in_size) : nullptr;
    if (r) {
      rc = l.ep->write_imm(*r->region, static_cast<size_t>(static_cast<const uint8_t*>(c.in) - r->begin), c.in_size,
                           region.remote, c.offset, imm, 0);
    } else {
      // Staged through the slot; submit_put checked the size, but the source may have been
      // deregistered while the put was queued.
      if (c.in_size > config_.lease.input_capacity) return fabric::Errc::invalid_argument;
      if (c.in_size) std::memcpy(l.staging_in.data() + slot * in_stride_, c.in, c.in_size);
      rc = l.ep->write_imm(*l.staging_in_mr, slot * in_stride_, c.in_size, region.remote, c.offset, imm, 0);
    }
    if (rc != fabric::Errc::ok) return rc;
  } else {
    // Invocations and gets name their output target in the slot's header.
    InvocationHeader h;
    const size_t capacity = std::min<size_t>(c.out_capacity, c.kind == CallKind::get ? protocol::kMaxResultSize
                                                                                        : config_.lease.output_capacity);
    h.in_size = c.kind == CallKind::get ? sizeof(protocol::RegionGet) : static_cast<uint32_t>(c.in_size);
    h.out_capacity = static_cast<uint32_t>(capacity);
    c.copy_out = false;
    if (const Registration* r = capacity ? find(c.out, capacity) : nullptr) {
      auto remote = r->region->remote();
      h.out_address = remote.address + static_cast<uint64_t>(static_cast<const uint8_t*>(c.out) - r->begin);
      h.out_key = remote.key;
    } else {
      // Into the slot's staging: never more than it holds (a get's destination may have been
      // deregistered while it was queued).
      if (capacity > config_.lease.output_capacity) return fabric::Errc::invalid_argument;
      auto remote = l.staging_out_mr->remote();
      h.out_address = remote.address + slot * config_.lease.output_capacity;
      h.out_key = remote.key;
      c.copy_out = true;
    }
    bool header_written = true;
    if (c.kind == CallKind::get) {
      const protocol::EncodedGet e = protocol::encode_get(slot, in_stride_);
      protocol::RegionGet g{c.region, 0, c.offset, c.out_capacity};
      uint8_t* hdr = l.headers.data() + slot * kHeaderStride;
      std::memcpy(hdr, &h, sizeof h);
      std::memcpy(hdr + sizeof h, &g, sizeof g);
      rc = l.ep->write_imm(*l.headers_mr, slot * size_t{kHeaderStride}, e.bytes, l.input, e.offset, e.imm, 0);
    } else {
      const void* in = c.in;
      const size_t in_size = c.in_size;
      const protocol::EncodedInvocation e =
          protocol::encode_invocation(s.target, slot, in_stride_, static_cast<uint32_t>(c.function), h);
      header_written = !e.compact();
      const Registration* r = in_size ? find(in, in_size) : nullptr;
      if (!r && in_size) {  // unregistered input: header (if any) and payload go from the staging slot
        // Laid out as the executor's slot (the same offsets), so that the copy reads aligned lines too.
        uint8_t* stage = l.staging_in.data() + protocol::slot_header_offset(slot, in_stride_);
        if (header_written) std::memcpy(stage, &h, sizeof h);
        std::memcpy(stage + sizeof h, in, in_size);
        rc = l.ep->write_imm(*l.staging_in_mr, e.offset, e.header_bytes + in_size, l.input, e.offset, e.imm, 0);
      } else if (e.compact()) {
        rc = l.ep->write_imm(r ? *r->region : *l.headers_mr,
                             r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size, l.input,
                             e.offset, e.imm, 0);
      } else {
        std::memcpy(l.headers.data() + slot * kHeaderStride, &h, sizeof h);
        fabric::Segment segs[2] = {{l.headers_mr.get(), slot * size_t{kHeaderStride}, sizeof h},
                                   {r ? r->region : l.headers_mr.get(),
                                    r ? static_cast<size_t>(static_cast<const uint8_t*>(in) - r->begin) : 0, in_size}};
        rc = l.ep->write_imm(segs, in_size ? 2 : 1, l.input, e.offset, e.imm, 0);
      }
    }
    if (rc != fabric::Errc::ok) return rc;
    if (header_written) protocol::record_header(s.target, h);
  }
  --l.free_count;
  s.call = index;
  c.slot = slot;
  c.state = Call::State::posted;
  return fabric::Errc::ok;
}

Errc DataPath::submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                            Invocation* handle, int worker) noexcept {
  if (function < 0 || static_cast<size_t>(function) >= config_.functions) return Errc::unknown_function;
  if (in_size > config_.lease.input_capacity) return Errc::payload_too_large;
  if ((in_size && !in) || (out_capacity && !out)) return Errc::invalid_argument;
  uint32_t w, index;
  Errc e = new_call(worker, CallKind::invoke, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.function = function;
  c.in = in;
  c.in_size = in_size;
  c.out = out;
  c.out_capacity = out_capacity;
  return enqueue(links_[w], index);
}

Errc DataPath::submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !src) return Errc::invalid_argument;
  if (bytes > config_.lease.input_capacity && !find(src, bytes)) return Errc::payload_too_large;  // staged: one slot's worth
  uint32_t w, index;
  Errc e = new_call(worker, CallKind::put, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.region = region;
  c.offset = offset;
  c.in = src;
  c.in_size = bytes;
  return enqueue(links_[w], index);
}

Errc DataPath::submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle,
                                int worker) noexcept {
  if (Errc e = check_region(region, offset, bytes); e != Errc::ok) return e;
  if (bytes && !dst) return Errc::invalid_argument;
  if (bytes > protocol::kMaxResultSize || (bytes > config_.lease.output_capacity && !find(dst, bytes)))
    return Errc::output_too_large;
  uint32_t w, index;
  Errc e = new_call(worker, CallKind::get, &w, &index, handle);
  if (e != Errc::ok) return e;
  Call& c = links_[w].calls[index];
  c.region = region;
  c.offset = offset;
  c.out = dst;
  c.out_capacity = bytes;
  return enqueue(links_[w], index);
}

Errc DataPath::test(const Invocation& h, bool* done) noexcept {
  if (!handle_ok(h) || !done) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  if (l.calls[h.call].state != Call::State::done) poll(l);
  *done = l.calls[h.call].state == Call::State::done || watch_.state() != Errc::ok;
  return Errc::ok;
}

Errc DataPath::wait(const Invocation& h, size_t* out_size, std::chrono::microseconds timeout) noexcept {
  if (!handle_ok(h) || links_[h.worker].calls[h.call].abandoned) return Errc::invalid_argument;
  WorkerLink& l = links_[h.worker];
  Call& c = l.calls[h.call];
  if (timeout.count() < 0)
    timeout = std::chrono::duration_cast<std::chrono::microseconds>(config_.invocation_timeout);
  // Busy-poll first. Time is kept in cycle-counter ticks, read once per 256 polls: steady_clock
  // can be a syscall (clock/cycle_clock.hpp), which a round trip must not pay.
  uint32_t polls = 0;
  uint64_t start = 0, hot_end = 0, deadline = 0;
  while (c.state != Call::State::done) {
    if (Errc e = watch_.state(); e != Errc::ok) return e;
    poll(l);
    if (c.state == Call::State::done || (++polls & 255)) continue;
    uint64_t now = CycleClock::now();
    if (start == 0) {
      start = now;
      hot_end = config_.client_hot_timeout_us < 0
                    ? UINT64_MAX
                    : now + CycleClock::ticks(std::chrono::microseconds(config_.client_hot_timeout_us));
      deadline = now + CycleClock::ticks(timeout);
    }
    if (now >= deadline) return Errc::timeout;
    if (watch_.lost()) {  // the daemon's reason for it is on its way
      watch_.state(std::chrono::milliseconds(std::min<int64_t>(50, CycleClock::to_ns(deadline - now) / 1'000'000 + 1)));
      continue;
    }
    // A post waiting to be retried (a full send queue, shm still setting up its path) needs
    // polls, not sleeps: no completion would wake the sleep for it.
    if (now >= hot_end && !(l.queue_count && l.free_count)) {
      auto left = std::chrono::nanoseconds(static_cast<int64_t>(CycleClock::to_ns(deadline - now)));
      auto slice = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(50));
      if (l.ep->wait(std::chrono::duration_cast<std::chrono::microseconds>(slice)) == fabric::Errc::peer_lost) {
        poll(l);
        watch_.connection_lost();
      }
    }
  }
  Errc e = c.result;
  if (out_size) *out_size = c.size;
  free_call(l, c);
  return e;
}

void DataPath::abandon(const Invocation& h) noexcept {
  if (!handle_ok(h)) return;
  WorkerLink& l = links_[h.worker];
  Call& c = l.calls[h.call];
  // A queued call is dropped when its turn comes; a posted one when its late answer arrives.
  if (c.state == Call::State::done) free_call(l, c);
  else c.abandoned = true;
}

}  // namespace rfaas::client
