#include "executor/lease_table.hpp"

#include <algorithm>

namespace rfaas::executor {

std::vector<int> LeaseTable::reserve(uint64_t lease_id, uint32_t cores, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  // Ids whose tokens have expired cannot come back anyway: forget them (bounded by the leases
  // served within one lease duration).
  std::erase_if(ended_, [&](const auto& e) { return e.second <= now_ms; });
  if (ended_.count(lease_id))
    throw protocol::MessageError(protocol::ControlErrc::lease_ended,
                                 "lease " + std::to_string(lease_id) + " was served and has ended; its token is spent");
  if (active_.count(lease_id))
    throw protocol::MessageError(protocol::ControlErrc::lease_active,
                                 "lease " + std::to_string(lease_id) + " is already being served");
  if (cores > free_.size())
    throw protocol::MessageError(protocol::ControlErrc::no_capacity, "asked for " + std::to_string(cores) +
                                                                         " cores, " + std::to_string(free_.size()) +
                                                                         " free of " + std::to_string(total_));
  std::vector<int> taken(free_.begin(), free_.begin() + cores);
  free_.erase(free_.begin(), free_.begin() + cores);
  active_[lease_id] = taken;
  return taken;
}

void LeaseTable::release(uint64_t lease_id, int64_t served_until_ms) {
  std::lock_guard lock(mutex_);
  auto it = active_.find(lease_id);
  if (it == active_.end()) return;
  // Remembered a day past the token's expiry: a renewal at the broker after the lease ended
  // (its end report lost) would come back with a later expiry than this daemon saw.
  if (served_until_ms > 0) ended_[lease_id] = served_until_ms + kSpentGraceMs;
  free_.insert(free_.end(), it->second.begin(), it->second.end());
  std::sort(free_.begin(), free_.end());
  active_.erase(it);
}

bool LeaseTable::spend(uint64_t lease_id, int64_t until_ms) {
  std::lock_guard lock(mutex_);
  if (active_.count(lease_id) || ended_.count(lease_id)) return false;
  ended_[lease_id] = until_ms + kSpentGraceMs;
  return true;
}

size_t LeaseTable::free_cores() const {
  std::lock_guard lock(mutex_);
  return free_.size();
}

size_t LeaseTable::ended_leases() const {
  std::lock_guard lock(mutex_);
  return ended_.size();
}

size_t LeaseTable::active_leases() const {
  std::lock_guard lock(mutex_);
  return active_.size();
}

}  // namespace rfaas::executor
