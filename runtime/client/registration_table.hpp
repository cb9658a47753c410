// Which memory of the client is registered with the lease's domain, found by address on the
// invocation path: calls whose input or output lies inside one registration travel without a
// copy. One table per lease, for rfaas's own buffers (allocate) and the caller's (register_memory).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::client {

class RegistrationTable {
 public:
  struct Range {
    const uint8_t* begin;
    size_t size;
    const fabric::MemoryRegion* region;
  };
  enum class Lookup { covered, new_range, grows_existing };

  // The registration [p, p+n) lies in, or null. Only the last registration starting at or before
  // p is looked at: one binary search, nothing allocated.
  const Range* find(const void* p, size_t n) const noexcept {  // inline: two per invocation
    auto* b = static_cast<const uint8_t*>(p);
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), b,
                               [](const uint8_t* x, const Range& r) { return x < r.begin; });
    if (it == ranges_.begin()) return nullptr;
    --it;
    return b + n <= it->begin + it->size ? &*it : nullptr;
  }
  // covered: [p, p+n) lies inside one registration. grows_existing: a registration starts at p but
  // is shorter (replace it). new_range: register it.
  Lookup classify(const void* p, size_t n) const noexcept;
  bool covers(const void* p, size_t n) const noexcept { return n == 0 || classify(p, n) == Lookup::covered; }

  void insert(const void* p, size_t n, const fabric::MemoryRegion* region);  // replaces one starting at p
  bool erase(const void* p) noexcept;                       // by start address; false when there was none
  void erase_region(const fabric::MemoryRegion* region) noexcept;
  size_t size() const noexcept { return ranges_.size(); }
  const std::vector<Range>& ranges() const noexcept { return ranges_; }
  void clear() noexcept { ranges_.clear(); }

 private:
  std::vector<Range> ranges_;  // sorted by begin
};

}  // namespace rfaas::client
