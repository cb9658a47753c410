#include "registration_cache.hpp"

#include <algorithm>

namespace rfaas::mpi {

namespace {
bool before(const RegistrationCache::Range& r, const uint8_t* p) { return r.begin < p; }
}  // namespace

RegistrationCache::Lookup RegistrationCache::classify(const void* p, size_t n) const noexcept {
  auto* b = static_cast<const uint8_t*>(p);
  // The same rule as the client's lookup: only the last registration starting at or before b.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), b,
                             [](const uint8_t* x, const Range& r) { return x < r.begin; });
  if (it == ranges_.begin()) return Lookup::new_range;
  --it;
  if (b + n <= it->begin + it->size) return Lookup::covered;
  return it->begin == b ? Lookup::grows_existing : Lookup::new_range;
}

void RegistrationCache::insert(const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), b, before);
  if (it != ranges_.end() && it->begin == b) it->size = n;
  else ranges_.insert(it, Range{b, n});
}

bool RegistrationCache::erase(const void* p) noexcept {
  auto* b = static_cast<const uint8_t*>(p);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), b, before);
  if (it == ranges_.end() || it->begin != b) return false;
  ranges_.erase(it);
  return true;
}

}  // namespace rfaas::mpi
