#include "client/registration_table.hpp"

#include <algorithm>

namespace rfaas::client {

namespace {
bool before(const RegistrationTable::Range& r, const uint8_t* p) { return r.begin < p; }
}  // namespace

RegistrationTable::Lookup RegistrationTable::classify(const void* p, size_t n) const noexcept {
  if (find(p, n)) return Lookup::covered;
  auto* b = static_cast<const uint8_t*>(p);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), b, before);
  return it != ranges_.end() && it->begin == b ? Lookup::grows_existing : Lookup::new_range;
}

void RegistrationTable::insert(const void* p, size_t n, const fabric::MemoryRegion* region) {
  auto* b = static_cast<const uint8_t*>(p);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), b, before);
  if (it != ranges_.end() && it->begin == b) *it = Range{b, n, region};
  else ranges_.insert(it, Range{b, n, region});
}

bool RegistrationTable::erase(const void* p) noexcept {
  auto* b = static_cast<const uint8_t*>(p);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), b, before);
  if (it == ranges_.end() || it->begin != b) return false;
  ranges_.erase(it);
  return true;
}

void RegistrationTable::erase_region(const fabric::MemoryRegion* region) noexcept {
  std::erase_if(ranges_, [&](const Range& r) { return r.region == region; });
}

}  // namespace rfaas::client
