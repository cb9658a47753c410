#include "daemon/executor_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "net/fd_passing.hpp"
#include "rfaas/fabric/fabric.hpp"

extern char** environ;

namespace rfaas::daemon {

using protocol::ControlErrc;
using protocol::MessageError;

ExecutorReports::~ExecutorReports() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<protocol::ExecutorReport> ExecutorReports::next(net::Deadline deadline) {
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (std::exchange(skipping_, false)) continue;  // the end of an overlong line
      protocol::ExecutorReport report;
      try {
        report = protocol::ExecutorReport::parse(line);
        if (report.event == protocol::ExecutorEventType::fault) {
          fault_ = protocol::utf8_prefix(report.as<protocol::FaultReport>().detail, 512);
          continue;
        }
      } catch (const MessageError&) {
        if (report.event == protocol::ExecutorEventType::fault) fault_ = "a fault";
        continue;
      }
      return report;
    }
    // A line longer than any report is not one: dropped up to its end, never buffered whole.
    if (buffer_.size() > kMaxReportLine) {
      buffer_.clear();
      skipping_ = true;
    }
    if (closed_) return std::nullopt;
    // A deadline already past still reads what is there (the session's loop asks so).
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - net::Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) {
      if (left <= 0) return std::nullopt;
      continue;
    }
    char chunk[4096];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) closed_ = true;
    if (n <= 0) return std::nullopt;
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::optional<protocol::FinalUsageReport> ExecutorReports::usage(net::Deadline deadline) {
  while (auto r = next(deadline))
    if (r->event == protocol::ExecutorEventType::usage) {
      try {
        return r->as<protocol::FinalUsageReport>();
      } catch (const MessageError&) {
        break;
      }
    }
  return std::nullopt;
}

ExecutorOutput::ExecutorOutput(int fd, pid_t pid) : fd_(fd), pid_(pid) {
  wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  window_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { run(); });
}

ExecutorOutput::~ExecutorOutput() {
  // Whatever the lease forked may still hold the pipe's other end: stopped, not waited for EOF.
  uint64_t one = 1;
  if (wake_ >= 0) (void)!::write(wake_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  if (wake_ >= 0) ::close(wake_);
  ::close(fd_);
}

std::string ExecutorOutput::label() const {
  uint64_t id = lease_.load();
  return id ? "lease " + std::to_string(id) : "standby executor " + std::to_string(pid_);
}

void ExecutorOutput::emit(std::string& line) {
  auto now = std::chrono::steady_clock::now();
  if (now - window_ >= std::chrono::seconds(1)) {
    if (dropped_)
      std::fprintf(stderr, "rfaas-executord: %s output: %llu bytes dropped (over %zu bytes a second)\n", label().c_str(),
                   static_cast<unsigned long long>(dropped_), kBytesPerSecond);
    window_ = now;
    budget_ = kBytesPerSecond;
    dropped_ = 0;
  }
  if (line.size() > budget_) {
    dropped_ += line.size();
  } else {
    budget_ -= line.size();
    for (char& c : line)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = '?';
    std::fprintf(stderr, "rfaas-executord: %s output: %s\n", label().c_str(), line.c_str());
  }
  line.clear();
}

void ExecutorOutput::run() {
  std::string line;
  bool cut = false;  // inside a line longer than kMaxLine: its rest is dropped
  char chunk[4096];
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      char c = chunk[i];
      if (c == '\n') {
        if (!line.empty() || !cut) emit(line);
        cut = false;
      } else if (line.size() < kMaxLine && !cut) {
        line.push_back(c);
      } else if (!cut) {
        line += " [cut]";
        emit(line);
        cut = true;
      }
    }
  }
  if (!line.empty()) emit(line);
}

bool executor_may_see(const char* entry) {
  static const char* const kExact[] = {"PATH=", "HOME=", "LANG=", "LC_ALL=", "TZ=", "TMPDIR=", "LD_LIBRARY_PATH="};
  // Sanitizer settings too: a sanitized build's executors behave as the daemon that started them.
  // Providers' own variables count: Slingshot's (cxi) credentials, PSM2/PSM3, UCX.
  static const char* const kPrefixes[] = {"FI_",   "RDMAV_", "IBV_",  "MLX5_",
                                          "SLINGSHOT_", "CXI_",     "PSM2_",  "PSM3_", "HFI_",
                                          "UCX_",  "OPENBLAS_CORETYPE=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=",
                                          "LSAN_OPTIONS="};
  for (const char* p : kExact)
    if (std::strncmp(entry, p, std::strlen(p)) == 0) return true;
  for (const char* p : kPrefixes)
    if (std::strncmp(entry, p, std::strlen(p)) == 0) return true;
  return false;
}

ExecutorProcess::ExecutorProcess(const std::string& path, const std::string& fabric_host,
                                 const std::vector<std::string>& fabric) {
  int out[2], err[2], sock[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw MessageError(ControlErrc::executor_failed, "pipe failed");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw MessageError(ControlErrc::executor_failed, "pipe failed");
  }
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) != 0) {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    throw MessageError(ControlErrc::executor_failed, "socketpair failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sock[1], 3);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  // Not the daemon's log: leased code would hold root's file (truncate it, write as the daemon).
  posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> argv_s{path, "--listen", fabric_host};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The executor runs leased code: it gets the environment the transport and the libraries
  // need, nothing else of the daemon's (no RFAAS_SECRET_FILE, no job variables, no tokens).
  // One BLAS thread per worker: the lease owns exactly its cores.
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (executor_may_see(*e)) env_s.push_back(*e);
  env_s.insert(env_s.end(), fabric.begin(), fabric.end());
  env_s.push_back("OPENBLAS_NUM_THREADS=1");
  env_s.push_back("OMP_NUM_THREADS=1");
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  // Its own session and process group: the lease's processes can be signalled as one (and the
  // daemon's terminal or job signals do not reach them before the daemon has revoked the lease).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  int rc = posix_spawn(&pid_, path.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  ::close(sock[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    ::close(sock[0]);
    throw MessageError(ControlErrc::executor_failed, "cannot start " + path + ": " + std::strerror(rc));
  }
  socket_ = sock[0];
  reports_ = std::make_unique<ExecutorReports>(out[0]);
  output_ = std::make_unique<ExecutorOutput>(err[0], pid_);
  // glibc 2.36 declares pidfd_open without C linkage; the syscall is the portable spelling.
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

ExecutorProcess::~ExecutorProcess() {
  // A standby waits for its lease in a read that SIGTERM does not interrupt: the daemon's side
  // closed ends it at once (rather than after the grace).
  if (!assigned_ && socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
  terminate();
  if (pidfd_ >= 0) ::close(pidfd_);
  if (socket_ >= 0) ::close(socket_);
}

void ExecutorProcess::send(const std::string& command, int fd, const char* what) {
  try {
    net::send_with_fd(socket_, command, fd);
  } catch (const net::NetError& e) {
    throw MessageError(ControlErrc::executor_failed, std::string(what) + ": " + e.what());
  }
}

void ExecutorProcess::assign(const protocol::LeaseAssignment& lease, int library_fd,
                             const std::vector<std::pair<std::string, int>>& dependencies) {
  output_->set_lease(lease.lease_id);
  assigned_ = true;
  for (const auto& [name, fd] : dependencies)
    send(protocol::make_command(protocol::DependencyCommand{name}), fd, "handing the lease to the executor");
  send(protocol::make_command(lease), library_fd, "handing the lease to the executor");
}

void ExecutorProcess::renew(int64_t expires_at_ms) {
  send(protocol::make_command(protocol::RenewCommand{expires_at_ms}), -1, "renewing the executor's lease");
}

void ExecutorProcess::create_region(uint64_t bytes, uint64_t seq) {
  send(protocol::make_command(protocol::CreateRegionCommand{bytes, seq}), -1, "asking the executor for a region");
}

void ExecutorProcess::request_usage(uint64_t seq) {
  send(protocol::make_command(protocol::UsageCommand{seq}), -1, "asking the executor for its usage");
}

std::optional<int> ExecutorProcess::exited() {
  if (status_) return status_;
  siginfo_t info{};
  if (::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_) {
    // Not reaped yet, so the group's id is still this executor's and cannot name another group.
    ::kill(-pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    status_ = st;
    fabric::clean_up_after(pid_);  // what a killed executor could not remove
  }
  return status_;
}

int ExecutorProcess::terminate(std::chrono::milliseconds grace) {
  if (exited()) return *status_;
  ::kill(pid_, SIGTERM);
  auto end = std::chrono::steady_clock::now() + grace;
  while (!exited() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (!exited()) {
    ::kill(-pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    status_ = st;
    fabric::clean_up_after(pid_);  // what a killed executor could not remove
  }
  return *status_;
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace rfaas::daemon
