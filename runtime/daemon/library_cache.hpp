// Function libraries an executor daemon has received, kept as sealed memfds keyed by SHA-256,
// so a client deploying the same library again sends only its hash. Per user: a library is
// cached for the users who sent its bytes, so that no user learns (from the answer or its
// timing) what another deployed; another user's copy of the same bytes is stored once. Bounded
// in bytes; the least recently used libraries are dropped first.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace rfaas::daemon {

class LibraryCache {
 public:
  explicit LibraryCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}
  ~LibraryCache();
  LibraryCache(const LibraryCache&) = delete;
  LibraryCache& operator=(const LibraryCache&) = delete;

  // A new descriptor (the caller closes it) for the library with this hash, if `uid` sent it.
  std::optional<int> open(const std::string& sha256, uint32_t uid);
  // Stores the bytes (already verified against `sha256`) as sent by `uid`; returns a new
  // descriptor for them.
  int insert(const std::string& sha256, const std::vector<uint8_t>& bytes, uint32_t uid);

 private:
  struct Entry {
    std::string sha256;
    int fd;
    uint64_t size;
    std::vector<uint32_t> users;  // who sent these bytes
  };
  // The entry of that hash, moved to the front (or end()); the caller holds mutex_.
  std::list<Entry>::iterator find_locked(const std::string& sha256);
  std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  uint64_t capacity_;
  uint64_t used_ = 0;
};

}  // namespace rfaas::daemon
