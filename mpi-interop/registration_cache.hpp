// Which memory ranges of a rank are registered with its leased cores' connections. The MPI
// layer asks it before registering (a range inside an existing registration costs nothing) and
// on each offload (to count zero-copy vs copied transfers; the client does its own lookup).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rfaas::mpi {

class RegistrationCache {
 public:
  struct Range {
    const uint8_t* begin;
    size_t size;
  };
  enum class Lookup { covered, new_range, grows_existing };

  // covered: [p, p+n) lies inside one registration. grows_existing: a registration starts at p
  // but is shorter (replace it). new_range: register it.
  Lookup classify(const void* p, size_t n) const noexcept;
  bool covers(const void* p, size_t n) const noexcept { return n == 0 || classify(p, n) == Lookup::covered; }

  void insert(const void* p, size_t n);  // replaces a registration starting at p
  bool erase(const void* p) noexcept;    // by start address; false when there was none
  size_t size() const noexcept { return ranges_.size(); }
  const std::vector<Range>& ranges() const noexcept { return ranges_; }
  void clear() noexcept { ranges_.clear(); }

 private:
  std::vector<Range> ranges_;  // sorted by begin
};

}  // namespace rfaas::mpi
