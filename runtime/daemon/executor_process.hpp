// A running rfaas-executor as the daemon sees it. It is started on standby (libfabric up,
// domain and listener open, clock calibrated) and later handed one lease with assign(). Its
// stdout carries its reports, its stderr goes through ExecutorOutput; the destructor stops it
// (SIGTERM, then SIGKILL). It holds no descriptor of the daemon's beyond those two pipes and
// its socket: once it runs as the lease's user, nothing of root's is in its hands.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "protocol/executor_messages.hpp"

namespace rfaas::daemon {

// The executor's report lines, each read with a deadline.
class ExecutorReports {
 public:
  explicit ExecutorReports(int fd) : fd_(fd) {}
  ~ExecutorReports();
  ExecutorReports(const ExecutorReports&) = delete;
  ExecutorReports& operator=(const ExecutorReports&) = delete;
  // The next report, or nothing at EOF or when the deadline passes. Lines that are no report
  // (malformed, an unknown event) and lines longer than kMaxReportLine are skipped, the latter
  // without being held.
  std::optional<protocol::ExecutorReport> next(net::Deadline deadline);
  static constexpr size_t kMaxReportLine = 64 * 1024;
  // The final usage report, if the executor printed one before exiting (nothing if not).
  std::optional<protocol::FinalUsageReport> usage(net::Deadline deadline);
  // What a "fault" report said (a function wrote past its output, output_guard), once read;
  // such lines are taken here and not returned by next().
  const std::string& fault() const { return fault_; }
  // The pipe, for a poll beside other descriptors; closed(): it reached its end (or failed).
  int fd() const { return fd_; }
  bool closed() const { return closed_; }

 private:
  int fd_;
  bool closed_ = false;
  std::string fault_;
  std::string buffer_;
  bool skipping_ = false;  // inside an overlong line
};

// What an executor prints (the leased code's output, libfabric's warnings): read from a pipe by
// a thread of the daemon's, cut into lines of at most kMaxLine bytes with control bytes
// replaced, each written to the daemon's log as "lease N output: ...", at most kBytesPerSecond
// a second (the rest read, dropped and counted). Leased code can neither write the daemon's
// log as the daemon nor block it; a lease that prints too much loses only its own lines.
class ExecutorOutput {
 public:
  ExecutorOutput(int fd, pid_t pid);
  ~ExecutorOutput();
  ExecutorOutput(const ExecutorOutput&) = delete;
  ExecutorOutput& operator=(const ExecutorOutput&) = delete;
  void set_lease(uint64_t lease_id) { lease_.store(lease_id); }
  static constexpr size_t kMaxLine = 1024;
  static constexpr size_t kBytesPerSecond = 64 * 1024;

 private:
  void run();
  void emit(std::string& line);
  std::string label() const;
  int fd_ = -1, wake_ = -1;
  pid_t pid_;
  std::atomic<uint64_t> lease_{0};
  size_t budget_ = kBytesPerSecond;  // the run thread's alone
  uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point window_{};
  std::thread thread_;
};

// Whether a daemon's environment entry ("NAME=value") is passed on to executors: what the
// providers and math libraries read, nothing else (secrets, job variables). rfaas's own transport
// settings are not among them: the daemon hands its executors its fabric configuration.
bool executor_may_see(const char* entry);

class ExecutorProcess {
 public:
  // Starts `path --listen fabric_host` on standby, with `fabric`'s variables
  // (fabric::Config::to_variables) in its environment. Throws MessageError(executor_failed).
  ExecutorProcess(const std::string& path, const std::string& fabric_host, const std::vector<std::string>& fabric);
  ~ExecutorProcess();
  ExecutorProcess(const ExecutorProcess&) = delete;
  ExecutorProcess& operator=(const ExecutorProcess&) = delete;

  // Throws MessageError(executor_failed) if it is gone.
  // Hands over the lease, the library and (first, each in a message of its own) its dependencies.
  void assign(const protocol::LeaseAssignment& lease, int library_fd,
              const std::vector<std::pair<std::string, int>>& dependencies = {});
  // A renewed lease's new expiry, for the executor's own deadline. Throws MessageError.
  void renew(int64_t expires_at_ms);
  // Asks for a resident region; the executor answers with a report ("region" or "region_failed")
  // that carries `seq` back.
  void create_region(uint64_t bytes, uint64_t seq);
  // Asks for what the workers counted so far; the answer is a "usage_now" report with `seq`.
  void request_usage(uint64_t seq);

  int pidfd() const { return pidfd_; }
  pid_t pid() const { return pid_; }
  ExecutorReports& reports() { return *reports_; }
  // The wait status once it has exited (non-blocking), or nothing.
  std::optional<int> exited();
  // SIGTERM, then SIGKILL after `grace`; returns the wait status. The executor leads its own
  // process group: once it has exited, whatever it left in that group is killed too.
  int terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  // One command on the executor's socket; throws MessageError(executor_failed) saying `what` failed.
  void send(const std::string& command, int fd, const char* what);
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int socket_ = -1;  // to the executor's fd 3
  std::optional<int> status_;
  bool assigned_ = false;
  std::unique_ptr<ExecutorReports> reports_;
  std::unique_ptr<ExecutorOutput> output_;
};

std::string describe_exit(int status);

}  // namespace rfaas::daemon
