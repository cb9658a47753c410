#include "daemon/lease_table.hpp"

#include <algorithm>

namespace rfaas::daemon {

std::vector<int> LeaseTable::reserve(uint64_t lease_id, uint32_t cores, int64_t now_ms, uint64_t memory_bytes,
                                     uint32_t uid) {
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
  active_[lease_id] = {taken, memory_bytes, uid, ++admissions_, false};
  return taken;
}

void LeaseTable::release(uint64_t lease_id, int64_t served_until_ms) {
  std::lock_guard lock(mutex_);
  auto it = active_.find(lease_id);
  if (it == active_.end()) return;
  // Remembered a day past the token's expiry: a renewal at the broker after the lease ended
  // (its end report lost) would come back with a later expiry than this daemon saw.
  if (served_until_ms > 0) ended_[lease_id] = served_until_ms + kSpentGraceMs;
  free_.insert(free_.end(), it->second.cores.begin(), it->second.cores.end());
  std::sort(free_.begin(), free_.end());
  active_.erase(it);
}

bool LeaseTable::spend(uint64_t lease_id, int64_t until_ms) {
  std::lock_guard lock(mutex_);
  if (active_.count(lease_id) || ended_.count(lease_id)) return false;
  ended_[lease_id] = until_ms + kSpentGraceMs;
  return true;
}

uint64_t LeaseTable::admissions() const {
  std::lock_guard lock(mutex_);
  return admissions_;
}

std::vector<protocol::ServedLease> LeaseTable::serving() const {
  std::lock_guard lock(mutex_);
  std::vector<protocol::ServedLease> out;
  for (const auto& [id, a] : active_)
    out.push_back({id, static_cast<uint32_t>(a.cores.size()), a.memory_bytes, a.uid});
  return out;
}

std::vector<uint64_t> LeaseTable::end_unheld(const std::vector<uint64_t>& held, uint64_t admitted_by) {
  std::lock_guard lock(mutex_);
  std::vector<uint64_t> ended;
  for (auto& [id, a] : active_) {
    if (a.ended_by_broker || a.admission > admitted_by) continue;
    if (std::find(held.begin(), held.end(), id) != held.end()) continue;
    a.ended_by_broker = true;
    ended.push_back(id);
  }
  return ended;
}

bool LeaseTable::ended_by_broker(uint64_t lease_id) const {
  std::lock_guard lock(mutex_);
  auto it = active_.find(lease_id);
  return it != active_.end() && it->second.ended_by_broker;
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

}  // namespace rfaas::daemon
