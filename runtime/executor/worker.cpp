#include "executor/worker.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "clock/cycle_clock.hpp"

namespace rfaas::executor {

using protocol::InvocationHeader;
using protocol::InvocationStatus;

namespace {
// A warm wait is bounded so that stop() is seen within this time.
constexpr auto kWarmWaitSlice = std::chrono::milliseconds(100);
// While hot, the clock is read once per this many empty polls.
constexpr uint32_t kPollsPerClockRead = 256;
// One writer (the worker's thread): a load and a store, no locked read-modify-write.
inline void add(std::atomic<uint64_t>& counter, uint64_t v) {
  counter.store(counter.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}
}  // namespace

Worker::Worker(fabric::Domain& domain, const WorkerConfig& config, const std::vector<Function>& functions,
               const ResidentRegions& regions)
    : config_(config), functions_(functions), regions_(regions), stride_(protocol::input_slot_stride(config.input_capacity)) {
  input_ = fabric::HostMemory(stride_ * config.slots);
  input_mr_ = domain.register_memory(input_.data(), input_.size(), fabric::Access::remote_write);
  const uint64_t capacity = std::max<uint64_t>(config.output_capacity, 1);
  outputs_.resize(config.slots);
  for (uint32_t s = 0; s < config.slots; ++s) {
    auto& o = outputs_[s];
    // Exact: the lease's memory counts capacity per slot (pages rounded; the guard is not backed).
    o.memory = fabric::HostMemory(capacity, fabric::HostMemory::Fill::exact, fabric::HostMemory::Guard::after);
    o.offset = (o.memory.mapped() - capacity) & ~uint64_t{63};
    o.mr = domain.register_memory(o.memory.data(), o.memory.mapped(), fabric::Access::local);
    output_guard::add(o.memory.guard(), o.memory.guard_size(), config.index, s, config.output_capacity, &running_);
  }
  endpoint_config_.max_outstanding_writes = 2 * config.slots + 8;
  endpoint_config_.wait_mode = config.hot_timeout_us < 0 ? fabric::WaitMode::none : fabric::WaitMode::sleep;
  pending_.reserve(config.slots * 2);
  framed_.assign(config.slots, 0);
}

Worker::~Worker() {
  stop();
  join();
  for (const auto& o : outputs_) output_guard::remove(o.memory.guard());
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

protocol::Usage Worker::usage() const {
  constexpr auto r = std::memory_order_relaxed;
  return {invocations_.load(r), static_cast<uint64_t>(CycleClock::to_ns(hot_ticks_.load(r))),
          static_cast<uint64_t>(CycleClock::to_ns(compute_ticks_.load(r)))};
}

bool Worker::handle(uint32_t imm, uint64_t& mark) {
  using Kind = protocol::DecodedRequest::Kind;
  const protocol::DecodedRequest r = protocol::decode_request(imm, input_.data(), stride_, config_.slots, framed_.data());
  switch (r.kind) {
    case Kind::drop: return true;  // nowhere to answer: a broken client's; drop it
    case Kind::put:  // the bytes are in the region already (this completion says so): acknowledge them
      return answer({r.slot, InvocationStatus::put_done, 0, 0, ack_, outputs_[0].mr.get(), 0});
    case Kind::get: return answer_get(r);
    case Kind::invoke: break;
  }
  const uint32_t slot = r.slot;
  const uint32_t fn = r.function;
  const InvocationHeader& h = r.header;
  uint8_t* payload = input_.data() + protocol::slot_payload_offset(slot, stride_);
  uint64_t capacity = std::min<uint64_t>(h.out_capacity, config_.output_capacity);
  InvocationStatus status = InvocationStatus::ok;
  uint32_t size = 0;
  if (r.reserved_set) {
    status = InvocationStatus::bad_request;  // answered, so that the client's slot comes back
  } else if (fn >= functions_.size()) {
    status = InvocationStatus::unknown_function;
  } else if (h.in_size > config_.input_capacity) {
    status = InvocationStatus::payload_too_large;
  } else {
    const Function& f = functions_[fn];
    uint8_t* out = outputs_[slot].memory.data() + outputs_[slot].offset;
    uint64_t written;
    int32_t failed = 0;
    running_.store(static_cast<int32_t>(fn), std::memory_order_relaxed);
    if (f.reference) {
      written = f.reference(payload, h.in_size, out);
    } else {
      rfaas_call call{payload, h.in_size, out, capacity, 0, regions_.views(), regions_.count(),
                      config_.index, config_.workers, 0};
      failed = f.context(&call);
      written = call.out_size;
    }
    uint64_t end = CycleClock::now();
    add(compute_ticks_, end - mark);  // includes reading the request: a few ns
    mark = end;
    add(invocations_, 1);
    if (failed != 0) {
      status = InvocationStatus::function_failed;
      // The status travels in the size field; one that does not fit still reads as a failure.
      size = static_cast<uint32_t>(failed) & protocol::kMaxResultSize;
      if (size == 0) size = static_cast<uint32_t>(protocol::kMaxResultSize);
    } else if (written > capacity) {
      status = InvocationStatus::output_too_large;
    } else {
      size = static_cast<uint32_t>(written);
    }
  }
  const uint32_t bytes = status == InvocationStatus::ok ? size : 0;
  return answer({slot, status, size, bytes, {h.out_address, h.out_key, h.out_capacity}, outputs_[slot].mr.get(),
                 outputs_[slot].offset});
}

bool Worker::answer_get(const protocol::DecodedRequest& r) {
  const InvocationHeader& h = r.header;
  const protocol::RegionGet& g = r.get;
  fabric::RemoteRegion target{h.out_address, h.out_key, h.out_capacity};
  const uint32_t count = regions_.count();
  if (h.in_size != sizeof g || g.reserved != 0 || g.region >= count || g.offset > regions_.views()[g.region].size ||
      g.length > regions_.views()[g.region].size - g.offset || g.length > h.out_capacity ||
      g.length > protocol::kMaxResultSize)
    return answer({r.slot, InvocationStatus::region_error, 0, 0, target, outputs_[0].mr.get(), 0});
  const auto length = static_cast<uint32_t>(g.length);
  return answer({r.slot, InvocationStatus::ok, length, length, target, &regions_.region(g.region), g.offset});
}

bool Worker::answer(const Reply& r) {
  if (pending_.empty()) {  // the usual case: answer at once
    auto rc = send(r);
    if (rc != fabric::Errc::again) return rc != fabric::Errc::peer_lost;
  }
  // pending_ was sized at setup for every slot twice; a client flooding one slot loses the excess
  // rather than making this path allocate.
  if (pending_.size() < pending_.capacity()) pending_.push_back(r);
  return true;
}

fabric::Errc Worker::send(const Reply& r) noexcept {
  return endpoint_->write_imm(*r.source, r.source_offset, r.bytes, r.target, 0,
                              protocol::response_imm(r.slot, r.status, r.size), 0);
}

bool Worker::send_pending() {
  while (pending_head_ < pending_.size()) {
    auto rc = send(pending_[pending_head_]);
    if (rc == fabric::Errc::again) return true;  // retried after the next poll
    if (rc == fabric::Errc::peer_lost) return false;
    // Any other refusal (the client named a bad target) drops this reply only.
    ++pending_head_;
  }
  pending_.clear();
  pending_head_ = 0;
  return true;
}

void Worker::run() {
  if (config_.core >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(config_.core, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  const uint64_t hot_ticks_limit =
      config_.hot_timeout_us < 0 ? UINT64_MAX : CycleClock::ticks(std::chrono::microseconds(config_.hot_timeout_us));
  fabric::Completion comps[16];
  uint64_t idle_since = CycleClock::now();
  uint32_t empty = 0;
  bool client_gone = false;
  while (!client_gone && !stop_.load(std::memory_order_relaxed)) {
    int n = endpoint_->poll(comps, 16);
    if (n == 0) {
      if (++empty < kPollsPerClockRead) continue;
      empty = 0;
      uint64_t now = CycleClock::now();
      if (now - idle_since < hot_ticks_limit) continue;
      // Warm: block until work arrives, the client goes, or stop().
      add(hot_ticks_, now - idle_since);
      fabric::Errc rc;
      do {
        rc = endpoint_->wait(std::chrono::duration_cast<std::chrono::microseconds>(kWarmWaitSlice));
      } while (rc == fabric::Errc::timeout && !stop_.load(std::memory_order_relaxed));
      if (rc == fabric::Errc::peer_lost) break;
      idle_since = CycleClock::now();
      continue;
    }
    // One clock read per batch and one per function: the time between the last function's end
    // and the next batch counts as polling (posting the replies is part of it).
    uint64_t mark = CycleClock::now();
    add(hot_ticks_, mark - idle_since);
    for (int i = 0; i < n; ++i) {
      const fabric::Completion& c = comps[i];
      if (c.kind == fabric::Completion::Kind::write_received) {
        if (!handle(c.imm, mark)) client_gone = true;
      } else if (c.kind == fabric::Completion::Kind::error && c.error == fabric::Errc::peer_lost) {
        client_gone = true;
      }
    }
    if (!pending_.empty() && !send_pending()) client_gone = true;
    idle_since = mark;
    empty = 0;
  }
  finished_.store(true, std::memory_order_release);
  if (config_.finished_fd >= 0) {
    uint64_t one = 1;
    (void)!::write(config_.finished_fd, &one, sizeof one);
  }
}

}  // namespace rfaas::executor
