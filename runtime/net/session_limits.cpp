#include "net/session_limits.hpp"

namespace rfaas::net {

bool SessionAdmission::admit(const std::string& peer, std::string* why) {
  std::lock_guard lock(mutex_);
  std::string reason;
  if (total_ >= limits_.max_sessions) {
    reason = "at the cap of " + std::to_string(limits_.max_sessions) + " connections";
  } else if (auto it = per_peer_.find(peer); it != per_peer_.end() && it->second >= limits_.max_sessions_per_peer) {
    reason = peer + " is at the cap of " + std::to_string(limits_.max_sessions_per_peer) + " connections per peer";
  } else {
    ++per_peer_[peer];
    ++total_;
    return true;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - last_told_ >= std::chrono::seconds(1)) {
    if (why) *why = reason + (untold_ ? " (and " + std::to_string(untold_) + " refused before, untold)" : "");
    last_told_ = now;
    untold_ = 0;
  } else {
    ++untold_;
  }
  return false;
}

void SessionAdmission::release(const std::string& peer) {
  std::lock_guard lock(mutex_);
  auto it = per_peer_.find(peer);
  if (it == per_peer_.end()) return;
  if (--it->second == 0) per_peer_.erase(it);
  --total_;
}

uint32_t SessionAdmission::sessions() const {
  std::lock_guard lock(mutex_);
  return total_;
}

}  // namespace rfaas::net
