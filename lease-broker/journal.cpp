#include "journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "net/private_file.hpp"
#include "net/tcp_socket.hpp"

namespace rfaas::broker {

namespace {
// Only our own file: whoever could write the journal could forge the leases a restart replays.
void check_own_file(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022))
    throw JournalError("journal " + path + " is not a regular file of uid " + std::to_string(::geteuid()) +
                       " that only it may write");
}
}  // namespace

Journal::Journal(const std::string& path) : path_(path) {
  // Never through a link, and only our own file: whoever could write the journal could forge
  // the leases a restart replays.
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd_ < 0) throw JournalError("journal " + path + ": " + std::strerror(errno));
  try {
    check_own_file(fd_, path);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  off_t end = ::lseek(fd_, 0, SEEK_END);
  if (end < 0) throw JournalError("journal " + path + ": lseek: " + std::strerror(errno));
  size_ = end;
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(const nlohmann::json& record) {
  if (failed_.load()) throw JournalError("journal " + path_ + " failed to sync before; restart the broker");
  std::string line = record.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      // A partial record (the disk filled mid-line) is cut off again: the journal stays whole
      // records, the request fails with nothing applied, and the next one may succeed.
      if (off > 0 && ::ftruncate(fd_, size_) != 0) failed_.store(true);
      throw JournalError("journal " + path_ + ": write: " + std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  size_ += static_cast<off_t>(line.size());
  written_.fetch_add(1);
  ++since_snapshot_;
}

void Journal::compact(const LeaseBook& book) {
  if (failed_.load()) throw JournalError("journal " + path_ + " failed to sync before; restart the broker");
  nlohmann::json leases = nlohmann::json::array();
  for (auto& [id, l] : book.leases()) leases.push_back(l);
  std::string line =
      nlohmann::json{{"op", "snapshot"}, {"next_lease_id", book.next_lease_id()}, {"leases", leases}}.dump() + "\n";
  const std::string tmp = path_ + ".compact";
  int fd = -1;
  try {
    fd = net::create_new_file(tmp, 0600);  // not through a link planted at the name
  } catch (const std::runtime_error& e) {
    throw JournalError(std::string("journal compaction: ") + e.what());
  }
  auto give_up = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw JournalError(std::string("journal compaction: ") + what + ": " + std::strerror(err));
  };
  for (size_t off = 0; off < line.size();) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      give_up("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) give_up("fdatasync");
  std::lock_guard lock(sync_mutex_);  // no sync() runs on the old file while it is replaced
  // The old journal whole on disk first: should the rename not survive a crash, it is what
  // comes back, with every record acknowledged so far.
  if (::fdatasync(fd_) != 0) {
    failed_.store(true);
    give_up("fdatasync of the journal");
  }
  // The snapshot replaces the journal in one step: a crash leaves the old journal or the new.
  if (::rename(tmp.c_str(), path_.c_str()) != 0) give_up("rename");
  synced_ = written_.load();  // on disk, in the old journal and in the snapshot alike
  // From here the snapshot is the journal: appends go on after it.
  // The snapshot's own descriptor goes on as the journal's, at its end: the name is not opened
  // again, so nothing put at it meanwhile is written to.
  ::close(fd_);
  fd_ = fd;
  // Appends, as the journal's own descriptor: after a cut-off record the next goes at the end.
  if (::fcntl(fd_, F_SETFL, O_APPEND) != 0) {
    failed_.store(true);
    throw JournalError("journal " + path_ + " after compaction: fcntl: " + std::strerror(errno));
  }
  size_ = static_cast<off_t>(line.size());
  since_snapshot_ = 0;
  // The rename durable before anything is appended after it (else a crash could bring back the
  // old journal without those appends): failing that, record nothing more, as after a failed sync.
  std::string dir = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool durable = dfd >= 0 && ::fsync(dfd) == 0;
  int err = errno;
  if (dfd >= 0) ::close(dfd);
  if (!durable) {
    failed_.store(true);
    throw JournalError("journal compaction: fsync of " + dir + ": " + std::strerror(err));
  }
}

void Journal::sync() {
  uint64_t want = written_.load();
  std::lock_guard lock(sync_mutex_);
  // Nothing new since the last sync (status, refused requests): nothing to fail, even after a
  // failed sync, so that reads keep working.
  if (synced_ >= want) return;  // an fdatasync that started after our records covered them
  if (failed_.load()) throw JournalError("journal " + path_ + " failed to sync before; restart the broker");
  uint64_t target = written_.load();
  if (::fdatasync(fd_) != 0) {
    // What reached the disk is unknown now (a failed fdatasync may drop the pages): no more
    // changes are recorded, or granted, until a restart replays what is on disk.
    failed_.store(true);
    throw JournalError("journal " + path_ + ": fdatasync: " + std::strerror(errno));
  }
  synced_ = target;
}

void Journal::grant(const LeaseRecord& r) {
  nlohmann::json j = r;
  j["op"] = "grant";
  append(j);
}

void Journal::release(uint64_t lease_id, const std::string& reason) {
  append({{"op", "release"}, {"lease_id", lease_id}, {"reason", reason}});
}

void Journal::renew(uint64_t lease_id, int64_t expires_at_ms) {
  append({{"op", "renew"}, {"lease_id", lease_id}, {"expires_at_ms", expires_at_ms}});
}

Journal::ReplayResult Journal::replay(const std::string& path, LeaseBook& book) {
  ReplayResult result;
  // The same checks as the constructor's, before a byte is believed: not through a link, not a
  // FIFO (O_NONBLOCK: opening one does not hang the start), ours alone to write.
  int fd = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return result;
    throw JournalError("journal " + path + ": " + std::strerror(errno));
  }
  const net::Fd file(fd);  // closed on every way out
  check_own_file(fd, path);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw JournalError("journal " + path + ": read: " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  size_t pos = 0, line_no = 0, whole = 0;  // whole: bytes of complete, applied records
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    ++line_no;
    if (nl == std::string::npos) {  // no newline: the write of this record never finished
      result.torn_tail = true;
      break;
    }
    auto j = nlohmann::json::parse(text.begin() + static_cast<long>(pos), text.begin() + static_cast<long>(nl), nullptr,
                                   false);
    pos = nl + 1;
    bool last = pos >= text.size();
    try {
      if (j.is_discarded() || !j.is_object()) throw std::runtime_error("not a JSON object");
      std::string op = j.at("op").get<std::string>();
      if (op == "snapshot") {
        if (line_no != 1) throw std::runtime_error("a snapshot after the journal's first record");
        for (auto& l : j.at("leases"))
          if (!book.apply_grant(l.get<LeaseRecord>())) throw std::runtime_error("snapshot grants cores twice");
        book.raise_next_lease_id(j.at("next_lease_id").get<uint64_t>());
        result.snapshot = true;
      } else if (op == "grant") {
        if (!book.apply_grant(j.get<LeaseRecord>())) throw std::runtime_error("grant of cores already granted");
      } else if (op == "release") {
        book.apply_release(j.at("lease_id").get<uint64_t>());
      } else if (op == "renew") {
        book.apply_renew(j.at("lease_id").get<uint64_t>(), j.at("expires_at_ms").get<int64_t>());
      } else {
        throw std::runtime_error("unknown op '" + op + "'");
      }
      ++result.records;
      whole = pos;
    } catch (const std::exception& e) {
      if (last && j.is_discarded()) {
        result.torn_tail = true;
        break;
      }
      throw JournalError("journal " + path + " line " + std::to_string(line_no) + ": " + e.what());
    }
  }
  if (result.torn_tail) {
    // Appending after the fragment would glue the next record to it, and lose that record at
    // the next replay: cut it off now, before the journal is opened for appending.
    result.truncated_bytes = text.size() - whole;
    if (::ftruncate(fd, static_cast<off_t>(whole)) != 0)
      throw JournalError("journal " + path + ": cannot truncate its torn tail: " + std::strerror(errno));
  }
  return result;
}

}  // namespace rfaas::broker
