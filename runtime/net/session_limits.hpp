// Admission of control connections for a daemon that serves each on a thread of its own: a cap
// on all connections and on those of one peer address, so that a flood of idle connections from
// one place costs only that place (each connection's reads are bounded by the daemon's control
// timeout, which cuts idle and slow peers off).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace rfaas::net {

struct SessionLimits {
  uint32_t max_sessions = 2048;          // all peers
  uint32_t max_sessions_per_peer = 256;  // one peer address (a node of many ranks leasing at once)
};

class SessionAdmission {
 public:
  explicit SessionAdmission(SessionLimits limits) : limits_(limits) {}

  // True (and counted) when a session from `peer` may start; release(peer) when it ends. A
  // refusal fills `why` at most once a second (with the count of refusals since), so that a
  // flood does not flood the log too; otherwise `why` is left empty.
  bool admit(const std::string& peer, std::string* why);
  void release(const std::string& peer);
  uint32_t sessions() const;

 private:
  SessionLimits limits_;
  mutable std::mutex mutex_;
  uint32_t total_ = 0;
  std::map<std::string, uint32_t> per_peer_;
  std::chrono::steady_clock::time_point last_told_{};
  uint64_t untold_ = 0;  // refusals since the last one told
};

}  // namespace rfaas::net
