// The leases an executor daemon is serving and the cores they hold. A lease id is served at
// most once: at most once at a time, and once a lease was served its id is refused until its
// token expires (a token is not a ticket to come back with after a release). Cores are handed
// out by id and returned when the lease ends.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"

namespace rfaas::daemon {

class LeaseTable {
 public:
  explicit LeaseTable(std::vector<int> core_ids) : free_(std::move(core_ids)), total_(free_.size()) {}

  // The cores for the lease; throws MessageError(lease_active | lease_ended | no_capacity).
  // memory_bytes and uid are what the broker hears the lease holds (serving()).
  std::vector<int> reserve(uint64_t lease_id, uint32_t cores, int64_t now_ms, uint64_t memory_bytes = 0,
                           uint32_t uid = 0);
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

  // The broker's word against the daemon's. admissions() counts reserve() calls: a heartbeat
  // takes it with serving() before it is sent; end_unheld() then marks every lease admitted by
  // then that the broker's answer does not hold (released, expired or revoked there) as ended
  // (a lease admitted after the heartbeat left may be newer than the broker's answer). The
  // session serving a marked lease ends it (ended_by_broker()); its cores come back only when
  // its executor is gone (release()).
  uint64_t admissions() const;
  std::vector<protocol::ServedLease> serving() const;
  std::vector<uint64_t> end_unheld(const std::vector<uint64_t>& held, uint64_t admitted_by);
  bool ended_by_broker(uint64_t lease_id) const;

  size_t free_cores() const;
  size_t total_cores() const { return total_; }
  size_t active_leases() const;

 private:
  mutable std::mutex mutex_;
  std::vector<int> free_;
  size_t total_;
  struct Active {
    std::vector<int> cores;
    uint64_t memory_bytes = 0;
    uint32_t uid = 0;
    uint64_t admission = 0;  // admissions_ when it was reserved
    bool ended_by_broker = false;
  };
  std::map<uint64_t, Active> active_;
  uint64_t admissions_ = 0;
  std::map<uint64_t, int64_t> ended_;  // lease id -> until when it is refused
};

}  // namespace rfaas::daemon
