// The leases an executor daemon is serving and the cores they hold. A lease id is served at
// most once at a time; cores are handed out by id and returned when the lease ends.
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

  // The cores for the lease; throws MessageError(lease_active | no_capacity).
  std::vector<int> reserve(uint64_t lease_id, uint32_t cores);
  void release(uint64_t lease_id);

  size_t free_cores() const;
  size_t total_cores() const { return total_; }
  size_t active_leases() const;

 private:
  mutable std::mutex mutex_;
  std::vector<int> free_;
  size_t total_;
  std::map<uint64_t, std::vector<int>> active_;
};

}  // namespace rfaas::executor
