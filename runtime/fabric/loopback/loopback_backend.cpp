#include "fabric/loopback/loopback_backend.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace rfaas::fabric::loopback {
namespace {

using Clock = std::chrono::steady_clock;

// Registered regions of the process, found by key on the write path without a lock: the key is
// the slot's index in its low 16 bits and a generation above, published last (release), so a
// slot reused after deregistration never matches an old key. A reader takes the fields between
// two reads of the key and uses them only if the key did not change (a sequence lock).
constexpr size_t kMaxRegions = 1 << 16;
struct RegionSlot {
  std::atomic<uint64_t> key{0};
  std::atomic<uint8_t*> base{nullptr};
  std::atomic<size_t> size{0};
  std::atomic<bool> remote_write{false};
};
RegionSlot g_regions[kMaxRegions];
std::mutex g_regions_mutex;
uint64_t g_generation = 0;

// Where a write of `length` bytes to `dst` + `offset` may land, or nullptr.
uint8_t* target_of(const RemoteRegion& dst, uint64_t offset, size_t length) noexcept {
  const RegionSlot& r = g_regions[dst.key & (kMaxRegions - 1)];
  if (dst.key == 0 || r.key.load(std::memory_order_acquire) != dst.key) return nullptr;
  const uint64_t base = reinterpret_cast<uint64_t>(r.base.load(std::memory_order_relaxed));
  const size_t size = r.size.load(std::memory_order_relaxed);
  const bool writable = r.remote_write.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (r.key.load(std::memory_order_relaxed) != dst.key || !writable) return nullptr;  // reused meanwhile
  const uint64_t at = dst.address + offset;
  if (at < base || at + length > base + size || at + length < at) return nullptr;
  return reinterpret_cast<uint8_t*>(at);
}

class LoopbackRegion final : public MemoryRegion {
 public:
  LoopbackRegion(void* data, size_t size, Access access) {
    if (!data || size == 0) throw Error(Errc::invalid_argument, "loopback: cannot register an empty region");
    std::lock_guard lock(g_regions_mutex);
    for (size_t i = 1; i < kMaxRegions; ++i) {
      RegionSlot& r = g_regions[i];
      if (r.key.load(std::memory_order_relaxed) != 0) continue;
      r.base.store(static_cast<uint8_t*>(data), std::memory_order_relaxed);
      r.size.store(size, std::memory_order_relaxed);
      r.remote_write.store(access == Access::remote_write, std::memory_order_relaxed);
      key_ = (++g_generation << 16) | i;
      r.key.store(key_, std::memory_order_release);
      slot_ = &r;
      break;
    }
    if (!slot_) throw Error(Errc::io, "loopback: out of registration slots");
    data_ = data;
    size_ = size;
    remote_base_ = reinterpret_cast<uint64_t>(data);
  }
  ~LoopbackRegion() override {
    std::lock_guard lock(g_regions_mutex);
    slot_->key.store(0, std::memory_order_release);
  }

 private:
  RegionSlot* slot_ = nullptr;
};

// Completions one side hands the other: a single-producer, single-consumer ring.
class Ring {
 public:
  static constexpr size_t kSize = 4096;
  bool push(const Completion& c) noexcept {
    const size_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_.load(std::memory_order_acquire) == kSize) return false;
    slots_[t % kSize] = c;
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }
  bool pop(Completion& c) noexcept {
    const size_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_.load(std::memory_order_acquire)) return false;
    c = slots_[h % kSize];
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  bool full() const noexcept {
    return tail_.load(std::memory_order_relaxed) - head_.load(std::memory_order_acquire) == kSize;
  }
  bool empty() const noexcept { return head_.load(std::memory_order_relaxed) == tail_.load(std::memory_order_acquire); }

 private:
  std::array<Completion, kSize> slots_{};
  std::atomic<size_t> head_{0}, tail_{0};
};

// A connection: what each side receives, and whether each side is gone.
struct Link {
  Ring incoming[2];
  std::atomic<bool> closed[2] = {false, false};
};

class LoopbackEndpoint final : public Endpoint {
 public:
  explicit LoopbackEndpoint(const EndpointConfig& config)
      : config_(config), sent_(std::max<uint32_t>(config.max_outstanding_writes, 1)) {}
  ~LoopbackEndpoint() override {
    if (link_) link_->closed[side_].store(true, std::memory_order_release);
  }

  void connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
               std::chrono::milliseconds timeout) override;

  void attach(std::shared_ptr<Link> link, int side) {
    link_ = std::move(link);
    side_ = side;
  }

  Errc write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                 uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept override {
    Segment s{&src, src_offset, length};
    return write_imm(&s, 1, dst, dst_offset, imm, context);
  }

  Errc write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset, uint32_t imm,
                 uint64_t context) noexcept override {
    if (!link_ || lost_ || link_->closed[1 - side_].load(std::memory_order_acquire)) return Errc::peer_lost;
    if (count < 1 || count > kMaxSegments) return Errc::invalid_argument;
    if (sent_count_ >= sent_.size() || link_->incoming[1 - side_].full()) return Errc::again;
    size_t total = 0;
    for (int i = 0; i < count; ++i) {
      const Segment& s = segments[i];
      if (!s.region || s.offset + s.length > s.region->size()) return Errc::invalid_argument;
      total += s.length;
    }
    uint8_t* at = target_of(dst, dst_offset, total);
    if (!at || dst_offset + total > dst.length) {
      // As a provider reports it: the write fails at completion, the peer hears nothing.
      sent_[(sent_head_ + sent_count_++) % sent_.size()] = {Completion::Kind::error, Errc::remote_access, 0, context};
      return Errc::ok;
    }
    for (int i = 0; i < count; ++i) {
      const Segment& s = segments[i];
      std::memcpy(at, static_cast<const uint8_t*>(s.region->data()) + s.offset, s.length);
      at += s.length;
    }
    link_->incoming[1 - side_].push({Completion::Kind::write_received, Errc::ok, imm, 0});
    sent_[(sent_head_ + sent_count_++) % sent_.size()] = {Completion::Kind::write_sent, Errc::ok, 0, context};
    return Errc::ok;
  }

  int poll(Completion* out, int max) noexcept override {
    int n = 0;
    while (n < max && sent_count_ > 0) {
      out[n++] = sent_[sent_head_];
      sent_head_ = (sent_head_ + 1) % sent_.size();
      --sent_count_;
    }
    if (!link_) return n;
    while (n < max && link_->incoming[side_].pop(out[n])) ++n;
    if (n < max && !lost_reported_ && link_->closed[1 - side_].load(std::memory_order_acquire) &&
        link_->incoming[side_].empty()) {
      lost_ = lost_reported_ = true;
      out[n++] = {Completion::Kind::error, Errc::peer_lost, 0, 0};
    }
    return n;
  }

  Errc wait(std::chrono::microseconds timeout) noexcept override {
    if (config_.wait_mode == WaitMode::none) return Errc::unsupported;
    const auto until = Clock::now() + timeout;
    for (;;) {
      if (sent_count_ > 0 || (link_ && !link_->incoming[side_].empty())) return Errc::ok;
      if (link_ && link_->closed[1 - side_].load(std::memory_order_acquire)) return Errc::peer_lost;
      if (Clock::now() >= until) return Errc::timeout;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  size_t max_inline() const noexcept override { return 0; }
  bool connected() const noexcept override {
    return link_ && !lost_ && !link_->closed[1 - side_].load(std::memory_order_acquire);
  }

 private:
  EndpointConfig config_;
  std::shared_ptr<Link> link_;
  int side_ = 0;
  // This side's own completions (write_sent, errors), read by the same thread that writes: a
  // ring of max_outstanding_writes, made at setup.
  std::vector<Completion> sent_;
  size_t sent_head_ = 0, sent_count_ = 0;
  bool lost_ = false, lost_reported_ = false;
};

// A connector waiting at a listener, and the listener's answer.
struct Request {
  ConnectionData mine, theirs;
  std::shared_ptr<Link> link;
  enum class State { waiting, accepted, refused, abandoned } state = State::waiting;
};

class LoopbackListener;
std::mutex g_listeners_mutex;
std::condition_variable g_listeners_changed;
std::map<std::string, LoopbackListener*> g_listeners;
uint16_t g_next_port = 1;

class LoopbackListener final : public Listener {
 public:
  explicit LoopbackListener(std::string address) : address_(std::move(address)) {}
  ~LoopbackListener() override {
    std::lock_guard lock(g_listeners_mutex);
    g_listeners.erase(address_);
    for (auto& r : waiting_) r->state = Request::State::refused;
    g_listeners_changed.notify_all();
  }
  std::string address() const override { return address_; }

  std::unique_ptr<Endpoint> accept(const EndpointConfig& config, const ConnectionData& mine, ConnectionData& theirs,
                                   std::chrono::milliseconds timeout, const Admit& admit = {}) override {
    const auto until = Clock::now() + timeout;
    std::unique_lock lock(g_listeners_mutex);
    for (;;) {
      if (!g_listeners_changed.wait_until(lock, until, [&] { return !waiting_.empty(); }))
        throw Error(Errc::timeout, "loopback accept: no connector in time");
      auto r = waiting_.front();
      waiting_.pop_front();
      if (r->state == Request::State::abandoned) continue;  // its connect gave up
      if (admit && !admit(r->mine)) {
        r->state = Request::State::refused;
        g_listeners_changed.notify_all();
        continue;
      }
      auto ep = std::make_unique<LoopbackEndpoint>(config);
      r->link = std::make_shared<Link>();
      ep->attach(r->link, 1);
      theirs = r->mine;
      r->theirs = mine;
      r->state = Request::State::accepted;
      g_listeners_changed.notify_all();
      return ep;
    }
  }

  void enqueue(std::shared_ptr<Request> r) { waiting_.push_back(std::move(r)); }

 private:
  std::string address_;
  std::deque<std::shared_ptr<Request>> waiting_;  // under g_listeners_mutex
};

void LoopbackEndpoint::connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
                               std::chrono::milliseconds timeout) {
  if (link_) throw Error(Errc::invalid_argument, "loopback connect: the endpoint is connected already");
  auto r = std::make_shared<Request>();
  r->mine = mine;
  std::unique_lock lock(g_listeners_mutex);
  auto it = g_listeners.find(address);
  if (it == g_listeners.end()) throw Error(Errc::peer_lost, "loopback connect: nothing listens at " + address);
  it->second->enqueue(r);
  g_listeners_changed.notify_all();
  if (!g_listeners_changed.wait_until(lock, Clock::now() + timeout,
                                      [&] { return r->state != Request::State::waiting; })) {
    r->state = Request::State::abandoned;  // an accept after this skips it
    throw Error(Errc::timeout, "loopback connect: not accepted in time");
  }
  if (r->state == Request::State::refused) throw Error(Errc::peer_lost, "loopback connect: refused by " + address);
  theirs = r->theirs;
  attach(r->link, 0);
}

class LoopbackDomain final : public Domain {
 public:
  Backend backend() const noexcept override { return Backend::loopback; }
  std::string provider() const override { return "loopback"; }
  Capabilities capabilities() const noexcept override {
    return {.survives_credential_change = true, .meets_peers_in_dev_shm = false};
  }
  std::unique_ptr<MemoryRegion> register_memory(void* data, size_t size, Access access) override {
    return std::make_unique<LoopbackRegion>(data, size, access);
  }
  std::unique_ptr<Endpoint> create_endpoint(const EndpointConfig& config) override {
    return std::make_unique<LoopbackEndpoint>(config);
  }
  std::unique_ptr<Listener> listen(const std::string& host, uint16_t port) override {
    std::lock_guard lock(g_listeners_mutex);
    if (port == 0) {
      while (g_listeners.count(host + ":" + std::to_string(g_next_port))) ++g_next_port;
      port = g_next_port++;
    }
    std::string address = host + ":" + std::to_string(port);
    if (g_listeners.count(address)) throw Error(Errc::io, "loopback listen: " + address + " is taken");
    auto l = std::make_unique<LoopbackListener>(address);
    g_listeners[address] = l.get();
    return l;
  }
};

}  // namespace

std::unique_ptr<Domain> open_domain(const Config&) { return std::make_unique<LoopbackDomain>(); }

}  // namespace rfaas::fabric::loopback
