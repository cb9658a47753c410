// The leases an executor daemon is serving and the cores they hold. A lease id is served at
// most once: at most once at a time, and once a lease was served its id is refused until its
// token expires (a token is not a ticket to come back with after a release). Cores are handed
// out by id and returned when the lease ends.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "protocol/control.hpp"

namespace rfaas::executor {

class LeaseTable {
 public:
  explicit LeaseTable(std::vector<int> core_ids) : free_(std::move(core_ids)), total_(free_.size()) {}

  // The cores for the lease; throws MessageError(lease_active | lease_ended | no_capacity).
  std::vector<int> reserve(uint64_t lease_id, uint32_t cores, int64_t now_ms);
  // Returns the lease's cores. served_until_ms > 0: the lease was served, and its id is refused
  // until kSpentGraceMs after then (its token's latest expiry seen here, renewals included).
  // In memory only: a restarted daemon forgets spent ids (docs/security.md).
  static constexpr int64_t kSpentGraceMs = 24ll * 3600 * 1000;
  void release(uint64_t lease_id, int64_t served_until_ms = 0);
  size_t ended_leases() const;  // ids remembered as served
  // A deploy of this lease was refused: its id is spent as if served until `until_ms` (plus the
  // grace), unless another session holds it or it is spent already. Returns whether it was spent
  // now (the broker is then told the lease ended).
  bool spend(uint64_t lease_id, int64_t until_ms);

  size_t free_cores() const;
  size_t total_cores() const { return total_; }
  size_t active_leases() const;

 private:
  mutable std::mutex mutex_;
  std::vector<int> free_;
  size_t total_;
  std::map<uint64_t, std::vector<int>> active_;
  std::map<uint64_t, int64_t> ended_;  // lease id -> until when it is refused
};

}  // namespace rfaas::executor
