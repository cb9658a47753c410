// The broker's journal: one JSON object per line, appended and fsync'd before the change it
// records is answered. On restart, replay() rebuilds the lease book from it. A torn last line
// (the broker died mid-write) is skipped and reported; any earlier damage is an error.
#pragma once

#include <stdexcept>
#include <string>

#include "lease_book.hpp"

namespace rfaas::broker {

class JournalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Journal {
 public:
  // Opens (creating, mode 0600) the journal for appending. Throws JournalError.
  explicit Journal(const std::string& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Records, durable when they return (write + fdatasync). Throw JournalError.
  void grant(const LeaseRecord& r);
  void release(uint64_t lease_id, const std::string& reason);
  void renew(uint64_t lease_id, int64_t expires_at_ms);

  struct ReplayResult {
    size_t records = 0;
    bool torn_tail = false;
  };
  // Applies every record of the journal at `path` (missing file: nothing) to `book`.
  static ReplayResult replay(const std::string& path, LeaseBook& book);

 private:
  void append(const nlohmann::json& record);
  int fd_ = -1;
  std::string path_;
};

}  // namespace rfaas::broker
