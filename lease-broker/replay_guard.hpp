// Each message a daemon signs (heartbeat, drain, usage report) is taken once. Per node: the
// daemon's start (incarnation) and a window of its last 1024 sequence numbers, as IPsec's
// anti-replay window: messages may arrive out of order (a daemon signs on several threads),
// but one seen before, one older than the window, or one from an earlier start of the daemon
// is refused. A restarted broker starts with empty windows; a registration's 60 s freshness
// bounds what can be replayed to it then.
#pragma once

#include <bitset>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace rfaas::broker {

class ReplayGuard {
 public:
  enum class Verdict : uint8_t { fresh, replayed, too_old, earlier_start, unnumbered };
  static constexpr uint64_t kWindow = 1024;

  // Takes a genuine (already verified) message's numbers; fresh the first time only.
  Verdict take(const std::string& node, uint64_t incarnation, uint64_t sequence, int64_t timestamp_ms);
  // Where a node's numbers stand (its incarnation, the highest sequence taken): {0, 0} if none.
  // Not secret: a number is refused once taken, whoever knows it.
  std::pair<uint64_t, uint64_t> position(const std::string& node);

 private:
  struct Window {
    uint64_t incarnation = 0;
    int64_t last_timestamp_ms = 0;  // a new start is taken only with a later timestamp
    uint64_t top = 0;               // the highest sequence taken
    std::bitset<kWindow> seen;      // bit d: top - d was taken
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Window> nodes_;
};

const char* to_string(ReplayGuard::Verdict v);

}  // namespace rfaas::broker
