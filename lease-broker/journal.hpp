// The broker's journal: one JSON object per line, appended under the broker's lock and made
// durable with sync() before the change it records is answered. sync() is a group commit: one
// fdatasync covers every record written before it started, so concurrent requests share it. On restart, replay() rebuilds the lease book from it. A torn last line
// (the broker died mid-write) is skipped and reported; any earlier damage is an error.
// Compaction keeps replay bounded: compact() writes a snapshot of the lease book (its leases and
// the next lease id) to a new file, makes it durable and renames it over the journal, which then
// goes on from there.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <mutex>
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

  // Records, written in call order (callers serialise them). Throw JournalError; a record that
  // could not be written whole (disk full) leaves nothing behind.
  void grant(const LeaseRecord& r);
  void release(uint64_t lease_id, const std::string& reason);
  void renew(uint64_t lease_id, int64_t expires_at_ms);
  // Returns once every record written before the call is on stable storage. Thread-safe, and
  // called without the broker's lock. Throws JournalError; after a failed sync every later
  // append and sync fails too (the broker then refuses changes until it is restarted).
  void sync();

  // Replaces the journal by one snapshot record of `book` (the caller holds the lock its changes
  // are made under, so nothing is appended meanwhile). Durable when it returns: every record
  // written before counts as synced. Throws JournalError and leaves the journal as it was.
  void compact(const LeaseBook& book);
  // Records since the last snapshot (or since the journal began), replayed ones included.
  uint64_t records_since_snapshot() const { return since_snapshot_; }
  void set_records_since_snapshot(uint64_t n) { since_snapshot_ = n; }

  struct ReplayResult {
    size_t records = 0;
    bool snapshot = false;  // the journal began with a snapshot
    bool torn_tail = false;
    size_t truncated_bytes = 0;  // the torn tail, cut off the file so that new records follow whole ones
  };
  // Applies every record of the journal at `path` (missing file: nothing) to `book`. A torn last
  // record (the broker died mid-write) is truncated away, so the next record starts a line of its
  // own. Throws JournalError for damage before the end, or when the truncation fails.
  static ReplayResult replay(const std::string& path, LeaseBook& book);

 private:
  void append(const nlohmann::json& record);
  int fd_ = -1;
  std::atomic<uint64_t> written_{0};
  std::mutex sync_mutex_;
  uint64_t synced_ = 0;  // guarded by sync_mutex_
  off_t size_ = 0;       // the file's length after the last whole record (appends are serialised)
  std::atomic<bool> failed_{false};  // a sync (or a cut-off) failed: nothing more is recorded
  uint64_t since_snapshot_ = 0;     // appends are serialised by the caller
  std::string path_;
};

}  // namespace rfaas::broker
