#include "fabric/faults/faults_backend.hpp"
#include "text/comma_list.hpp"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <vector>

namespace rfaas::fabric::faults {
namespace {

using Clock = std::chrono::steady_clock;

enum class Kind { drop_write, fail_write, delay_write, corrupt_imm, lose_peer, fail_register, fail_listen,
                  fail_connect, fail_accept, none };
enum class Op { write, register_memory, listen, connect, accept, count };

struct KindName {
  Kind kind;
  const char* name;
  Op op;
};
constexpr KindName kKinds[] = {
    {Kind::drop_write, "drop_write", Op::write},       {Kind::fail_write, "fail_write", Op::write},
    {Kind::delay_write, "delay_write", Op::write},     {Kind::corrupt_imm, "corrupt_imm", Op::write},
    {Kind::lose_peer, "lose_peer", Op::write},         {Kind::fail_register, "fail_register", Op::register_memory},
    {Kind::fail_listen, "fail_listen", Op::listen},    {Kind::fail_connect, "fail_connect", Op::connect},
    {Kind::fail_accept, "fail_accept", Op::accept},
};

struct Rule {
  Kind kind;
  Op op;
  uint64_t nth;
  uint32_t ms;
  std::string text;
};

// The domain's rules and its operation counts, shared with its endpoints and listeners (the
// executor's workers write from their own threads). An operation counts once it happened: a
// write the backend answered with `again` (a full queue, shm still setting up its path) is
// retried by its caller and counted when it goes. Deciding and counting are one step under the
// lock, so each rule fires exactly once whatever the threads do: a test layer, never on the
// undecorated path.
struct Rules {
  std::vector<Rule> rules;
  std::mutex mutex;
  uint64_t counts[static_cast<int>(Op::count)] = {};

  // The rule for the next operation of this class, if any; under the lock.
  const Rule* peek(Op op) const noexcept {
    const uint64_t n = counts[static_cast<int>(op)] + 1;
    for (const Rule& r : rules)
      if (r.op == op && r.nth == n) return &r;
    return nullptr;
  }
  // Counts the operation; says so when a rule fired at it. Under the lock.
  void count(Op op, const Rule* fired) noexcept {
    ++counts[static_cast<int>(op)];
    if (fired) std::fprintf(stderr, "rfaas fabric faults: %s\n", fired->text.c_str());
  }
  void setup(Op op) {
    std::lock_guard lock(mutex);
    const Rule* r = peek(op);
    count(op, r);
    if (r) throw Error(Errc::io, "injected fault " + r->text);
  }
};

std::shared_ptr<Rules> parse(const std::string& spec) {
  auto rules = std::make_shared<Rules>();
  for (const std::string& text : rfaas::text::split_commas(spec)) {
    auto bad = [&](const std::string& why) {
      return Error(Errc::invalid_argument, "fabric faults: '" + text + "': " + why +
                                               " (rules: drop_write@N, fail_write@N, delay_write=MS@N, corrupt_imm@N, "
                                               "lose_peer@N, fail_register@N, fail_listen@N, fail_connect@N, "
                                               "fail_accept@N)");
    };
    const size_t at = text.find('@');
    if (at == std::string::npos) throw bad("no @N");
    std::string name = text.substr(0, at), arg;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      arg = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const KindName* k = nullptr;
    for (const auto& kn : kKinds)
      if (name == kn.name) k = &kn;
    if (!k) throw bad("unknown fault");
    auto number = [&](const std::string& s, uint64_t max) {
      if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos) throw bad("not a number");
      uint64_t v = std::stoull(s);
      if (v == 0 || v > max) throw bad("out of range");
      return v;
    };
    Rule r{k->kind, k->op, number(text.substr(at + 1), uint64_t{1} << 40), 0, text};
    if (k->kind == Kind::delay_write) r.ms = static_cast<uint32_t>(number(arg, 600'000));
    else if (!arg.empty()) throw bad("takes no value");
    for (const Rule& other : rules->rules)
      if (other.op == r.op && other.nth == r.nth) throw bad("another rule already takes that operation");
    rules->rules.push_back(std::move(r));
  }
  return rules;
}

class FaultsEndpoint final : public Endpoint {
 public:
  FaultsEndpoint(std::unique_ptr<Endpoint> inner, std::shared_ptr<Rules> rules)
      : inner_(std::move(inner)), rules_(std::move(rules)) {}

  void connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
               std::chrono::milliseconds timeout) override {
    rules_->setup(Op::connect);
    inner_->connect(address, mine, theirs, timeout);
  }

  Errc write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                 uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept override {
    Segment s{&src, src_offset, length};
    return write_imm(&s, 1, dst, dst_offset, imm, context);
  }

  Errc write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset, uint32_t imm,
                 uint64_t context) noexcept override {
    if (!inner_) return Errc::peer_lost;
    std::lock_guard lock(rules_->mutex);
    const Rule* r = rules_->peek(Op::write);
    const Kind kind = r ? r->kind : Kind::none;
    Errc e = Errc::ok;
    switch (kind) {
      case Kind::fail_write: e = Errc::io; break;
      case Kind::drop_write: injected_.push_back({Completion::Kind::write_sent, Errc::ok, 0, context}); break;
      case Kind::lose_peer: lose(); e = Errc::peer_lost; break;
      case Kind::delay_write: {
        if (count < 1 || count > kMaxSegments) return Errc::invalid_argument;
        Delayed d{{}, count, dst, dst_offset, imm, context, Clock::now() + std::chrono::milliseconds(r->ms)};
        std::copy(segments, segments + count, d.segments);
        delayed_.push_back(d);
        break;
      }
      default:  // an undisturbed write, or one whose immediate is corrupted
        e = inner_->write_imm(segments, count, dst, dst_offset, kind == Kind::corrupt_imm ? imm ^ 0xa5a5a5a5u : imm,
                              context);
        if (e == Errc::again) return e;  // not counted: its caller retries it
        if (e == Errc::ok) in_flight_.push_back(context);
    }
    rules_->count(Op::write, r);
    return e;
  }

  int poll(Completion* out, int max) noexcept override {
    issue_due();
    int n = 0;
    while (n < max && !injected_.empty()) {
      out[n++] = injected_.front();
      injected_.erase(injected_.begin());
    }
    if (n < max && inner_) {
      const int first = n;
      n += inner_->poll(out + n, max - n);
      for (int i = first; i < n; ++i)  // a write that completed is no longer in flight
        if (out[i].kind != Completion::Kind::write_received)
          if (auto it = std::find(in_flight_.begin(), in_flight_.end(), out[i].context); it != in_flight_.end())
            in_flight_.erase(it);
    }
    return n;
  }

  Errc wait(std::chrono::microseconds timeout) noexcept override {
    if (!injected_.empty()) return Errc::ok;
    if (!inner_) return Errc::peer_lost;
    if (!delayed_.empty()) {  // wake for the next delayed write
      auto due = std::chrono::duration_cast<std::chrono::microseconds>(delayed_.front().due - Clock::now());
      timeout = std::clamp(due, std::chrono::microseconds(0), timeout);
    }
    Errc e = inner_->wait(timeout);
    issue_due();
    return e == Errc::timeout && !injected_.empty() ? Errc::ok : e;
  }

  size_t max_inline() const noexcept override { return inner_ ? inner_->max_inline() : 0; }
  bool connected() const noexcept override { return inner_ && inner_->connected(); }

 private:
  struct Delayed {
    Segment segments[kMaxSegments];
    int count;
    RemoteRegion dst;
    uint64_t dst_offset;
    uint32_t imm;
    uint64_t context;
    Clock::time_point due;
  };

  void issue_due() noexcept {
    while (!delayed_.empty() && inner_ && delayed_.front().due <= Clock::now()) {
      const Delayed& d = delayed_.front();
      Errc e = inner_->write_imm(d.segments, d.count, d.dst, d.dst_offset, d.imm, d.context);
      if (e == Errc::again) return;  // retried at the next poll
      if (e == Errc::ok) in_flight_.push_back(d.context);
      else injected_.push_back({Completion::Kind::error, e, 0, d.context});
      delayed_.erase(delayed_.begin());
    }
  }

  // The connection ends here, as a provider ends it: every write still in flight (held back or
  // under way) fails with peer_lost, then the loss is reported once.
  void lose() noexcept {
    inner_.reset();  // the peer sees the connection end
    for (uint64_t c : in_flight_) injected_.push_back({Completion::Kind::error, Errc::peer_lost, 0, c});
    for (const Delayed& d : delayed_) injected_.push_back({Completion::Kind::error, Errc::peer_lost, 0, d.context});
    in_flight_.clear();
    delayed_.clear();
    injected_.push_back({Completion::Kind::error, Errc::peer_lost, 0, 0});
  }

  std::unique_ptr<Endpoint> inner_;
  std::shared_ptr<Rules> rules_;
  // Completions made here (a dropped write's, a lost peer's) and writes held back: a test
  // backend, so plain vectors; the undecorated path never reaches them.
  std::vector<Completion> injected_;
  std::vector<Delayed> delayed_;
  std::vector<uint64_t> in_flight_;  // contexts of the writes the backend has under way
};

class FaultsListener final : public Listener {
 public:
  FaultsListener(std::unique_ptr<Listener> inner, std::shared_ptr<Rules> rules)
      : inner_(std::move(inner)), rules_(std::move(rules)) {}
  std::string address() const override { return inner_->address(); }
  std::unique_ptr<Endpoint> accept(const EndpointConfig& config, const ConnectionData& mine, ConnectionData& theirs,
                                   std::chrono::milliseconds timeout, const Admit& admit = {}) override {
    rules_->setup(Op::accept);
    return std::make_unique<FaultsEndpoint>(inner_->accept(config, mine, theirs, timeout, admit), rules_);
  }
  void prepare(const EndpointConfig& config, size_t count) override { inner_->prepare(config, count); }

 private:
  std::unique_ptr<Listener> inner_;
  std::shared_ptr<Rules> rules_;
};

class FaultsDomain final : public Domain {
 public:
  FaultsDomain(std::unique_ptr<Domain> inner, std::shared_ptr<Rules> rules)
      : inner_(std::move(inner)), rules_(std::move(rules)) {}
  Backend backend() const noexcept override { return inner_->backend(); }
  std::string provider() const override { return inner_->provider(); }
  Capabilities capabilities() const noexcept override { return inner_->capabilities(); }
  std::unique_ptr<MemoryRegion> register_memory(void* data, size_t size, Access access) override {
    rules_->setup(Op::register_memory);
    return inner_->register_memory(data, size, access);
  }
  std::unique_ptr<Endpoint> create_endpoint(const EndpointConfig& config) override {
    return std::make_unique<FaultsEndpoint>(inner_->create_endpoint(config), rules_);
  }
  std::unique_ptr<Listener> listen(const std::string& host, uint16_t port) override {
    rules_->setup(Op::listen);
    return std::make_unique<FaultsListener>(inner_->listen(host, port), rules_);
  }

 private:
  std::unique_ptr<Domain> inner_;
  std::shared_ptr<Rules> rules_;
};

}  // namespace

std::unique_ptr<Domain> wrap(std::unique_ptr<Domain> inner, const std::string& spec) {
  return std::make_unique<FaultsDomain>(std::move(inner), parse(spec));
}

}  // namespace rfaas::fabric::faults
