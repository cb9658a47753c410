#include "executor/executor_daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "protocol/control.hpp"
#include "protocol/invocation.hpp"

extern char** environ;

namespace rfaas::executor {

using protocol::ControlErrc;
using protocol::MessageError;
using namespace std::chrono_literals;

namespace {

void log(const std::string& line) { std::fprintf(stderr, "rfaas-executord: %s\n", line.c_str()); }

std::string self_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

void send_text(net::TcpStream& s, const std::string& text, std::chrono::milliseconds timeout) {
  s.send_frame(text.data(), text.size(), net::deadline_in(timeout));
}

// Reads the executor's report lines from its stdout pipe, each bounded by a deadline.
class ExecutorReports {
 public:
  explicit ExecutorReports(int fd) : fd_(fd) {}
  ~ExecutorReports() {
    if (fd_ >= 0) ::close(fd_);
  }
  // The next JSON line, or nothing at EOF or when the deadline passes.
  std::optional<nlohmann::json> next(net::Deadline deadline) {
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded()) return j;
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - net::Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  // The usage report, if the executor printed one before exiting.
  protocol::Usage usage(net::Deadline deadline) {
    while (auto j = next(deadline))
      if (j->value("event", "") == "usage") {
        try {
          return j->get<protocol::Usage>();
        } catch (...) {
          break;
        }
      }
    return {};
  }

 private:
  int fd_;
  std::string buffer_;
};

// One running rfaas-executor and its end.
class ExecutorProcess {
 public:
  ExecutorProcess(const std::string& path, const std::vector<std::string>& args, int library_fd) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw MessageError(ControlErrc::executor_failed, "pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, library_fd, 3);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<std::string> argv_s{path};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    // One BLAS thread per worker: the lease owns exactly its cores.
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "OPENBLAS_NUM_THREADS=", 21) != 0 && std::strncmp(*e, "OMP_NUM_THREADS=", 16) != 0)
        env_s.push_back(*e);
    env_s.push_back("OPENBLAS_NUM_THREADS=1");
    env_s.push_back("OMP_NUM_THREADS=1");
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      throw MessageError(ControlErrc::executor_failed, "cannot start " + path + ": " + std::strerror(rc));
    }
    reports_ = std::make_unique<ExecutorReports>(out[0]);
    // glibc 2.36 declares pidfd_open without C linkage; the syscall is the portable spelling.
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  ~ExecutorProcess() {
    terminate();
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  int pidfd() const { return pidfd_; }
  ExecutorReports& reports() { return *reports_; }

  // The wait status once it has exited (non-blocking), or nothing.
  std::optional<int> exited() {
    if (status_) return status_;
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return status_;
  }
  // SIGTERM, then SIGKILL after `grace`; returns the wait status.
  int terminate(std::chrono::milliseconds grace = 2000ms) {
    if (exited()) return *status_;
    ::kill(pid_, SIGTERM);
    auto end = std::chrono::steady_clock::now() + grace;
    while (!exited() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
    if (!exited()) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
      status_ = st;
    }
    return *status_;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
  std::unique_ptr<ExecutorReports> reports_;
};

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

DaemonConfig DaemonConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read config " + path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error("config " + path + " is not a JSON object");
  DaemonConfig c;
  try {
    for (auto& [key, value] : j.items()) {
      if (key == "listen") c.listen = value.get<std::string>();
      else if (key == "node_name") c.node_name = value.get<std::string>();
      else if (key == "secret_file") c.secret_file = value.get<std::string>();
      else if (key == "cores") c.cores = value.get<std::vector<int>>();
      else if (key == "executor_path") c.executor_path = value.get<std::string>();
      else if (key == "fabric_host") c.fabric_host = value.get<std::string>();
      else if (key == "max_library_bytes") c.max_library_bytes = value.get<uint64_t>();
      else if (key == "library_cache_bytes") c.library_cache_bytes = value.get<uint64_t>();
      else if (key == "control_timeout_ms") c.control_timeout_ms = value.get<uint32_t>();
      else throw std::runtime_error("unknown key '" + key + "'");
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("config " + path + ": " + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("config " + path + ": " + e.what());
  }
  return c;
}

static DaemonConfig with_defaults(DaemonConfig c) {
  if (c.node_name.empty()) c.node_name = hostname();
  if (c.executor_path.empty()) c.executor_path = self_dir() + "/rfaas-executor";
  if (c.cores.empty())
    for (long i = 0; i < ::sysconf(_SC_NPROCESSORS_ONLN); ++i) c.cores.push_back(static_cast<int>(i));
  return c;
}

ExecutorDaemon::ExecutorDaemon(DaemonConfig config)
    : config_(with_defaults(std::move(config))),
      secret_(protocol::ClusterSecret::load(config_.secret_file)),
      leases_(config_.cores),
      libraries_(config_.library_cache_bytes) {
  auto hp = net::HostPort::parse(config_.listen);
  listener_ = net::TcpListener::bind(hp.host, hp.port);
}

ExecutorDaemon::~ExecutorDaemon() = default;

std::string ExecutorDaemon::address() const { return net::HostPort{listener_.host(), listener_.port()}.str(); }

void ExecutorDaemon::serve() {
  log("node " + config_.node_name + ", " + std::to_string(leases_.total_cores()) + " cores, control port " + address());
  while (!shutting_down()) {
    net::TcpStream stream;
    try {
      stream = listener_.accept(net::deadline_in(200ms));
    } catch (const net::NetError& e) {
      if (e.code() != net::NetErrc::timeout) log(std::string("accept: ") + e.what());
      continue;
    }
    {
      std::lock_guard lock(sessions_mutex_);
      ++sessions_;
    }
    std::thread([this, s = std::move(stream)]() mutable {
      session(std::move(s));
      std::lock_guard lock(sessions_mutex_);
      if (--sessions_ == 0) sessions_done_.notify_all();
    }).detach();
  }
  // Sessions see shutting_down() within their poll period and revoke their leases.
  std::unique_lock lock(sessions_mutex_);
  sessions_done_.wait_for(lock, 10s, [this] { return sessions_ == 0; });
  log("stopped");
}

void ExecutorDaemon::session(net::TcpStream stream) {
  const auto timeout = std::chrono::milliseconds(config_.control_timeout_ms);
  uint64_t lease_id = 0;
  bool reserved = false;
  try {
    auto msg = protocol::ControlMessage::parse(stream.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout)));
    if (msg.type != "allocate") throw MessageError(ControlErrc::malformed, "expected 'allocate', got '" + msg.type + "'");
    auto req = msg.as<protocol::AllocateRequest>();
    const auto& t = req.token;

    // The token: genuine, for this node, not expired; the request within it.
    if (!t.verify(secret_)) throw MessageError(ControlErrc::bad_token, "lease token does not verify");
    if (t.executor != config_.node_name)
      throw MessageError(ControlErrc::bad_token, "lease token is for node '" + t.executor + "', this is '" +
                                                     config_.node_name + "'");
    if (t.expires_at_ms <= protocol::unix_now_ms())
      throw MessageError(ControlErrc::lease_expired, "lease " + std::to_string(t.lease_id) + " has expired");
    if (req.workers == 0 || req.workers > t.cores)
      throw MessageError(ControlErrc::malformed, "workers must be 1.." + std::to_string(t.cores) + " for this lease");
    if (req.slots == 0 || req.slots > protocol::kMaxSlots)
      throw MessageError(ControlErrc::malformed, "slots must be 1.." + std::to_string(protocol::kMaxSlots));
    if (req.input_capacity > protocol::kMaxInputCapacity || req.output_capacity > protocol::kMaxOutputCapacity)
      throw MessageError(ControlErrc::malformed, "input or output capacity beyond the protocol's limits");
    if (req.functions.size() > protocol::kMaxFunctions) throw MessageError(ControlErrc::malformed, "too many functions");
    uint64_t memory = uint64_t{req.workers} * req.slots *
                      (protocol::input_slot_stride(req.input_capacity) + req.output_capacity);
    if (memory > t.memory_bytes)
      throw MessageError(ControlErrc::no_capacity, "slots need " + std::to_string(memory) + " bytes, the lease grants " +
                                                       std::to_string(t.memory_bytes));
    if (req.library_size > config_.max_library_bytes)
      throw MessageError(ControlErrc::library_mismatch, "library of " + std::to_string(req.library_size) +
                                                            " bytes exceeds this daemon's limit");
    lease_id = t.lease_id;
    auto cores = leases_.reserve(lease_id, req.workers);
    reserved = true;

    // The library: cached, or sent now and checked against its announced hash.
    bool cached = true;
    auto fd = libraries_.open(req.library_sha256);
    if (!fd) {
      cached = false;
      send_text(stream, protocol::make_message("send_library"), timeout);
      auto bytes = stream.recv_frame(config_.max_library_bytes, net::deadline_in(timeout * 6));
      if (bytes.size() != req.library_size || protocol::sha256_hex(bytes.data(), bytes.size()) != req.library_sha256)
        throw MessageError(ControlErrc::library_mismatch, "library bytes do not match the announced size and SHA-256");
      fd = libraries_.insert(req.library_sha256, bytes);
    }

    std::string fn_csv, cores_csv;
    for (auto& f : req.functions) fn_csv += (fn_csv.empty() ? "" : ",") + f;
    for (int c : cores) cores_csv += (cores_csv.empty() ? "" : ",") + std::to_string(c);
    std::vector<std::string> args{"--library-fd",     "3",
                                  "--functions",      fn_csv,
                                  "--workers",        std::to_string(req.workers),
                                  "--cores",          cores_csv,
                                  "--slots",          std::to_string(req.slots),
                                  "--input-capacity", std::to_string(req.input_capacity),
                                  "--output-capacity", std::to_string(req.output_capacity),
                                  "--hot-timeout-us", std::to_string(req.hot_timeout_us),
                                  "--expires-at-ms",  std::to_string(t.expires_at_ms),
                                  "--lease-id",       std::to_string(lease_id),
                                  "--listen",         config_.fabric_host,
                                  "--accept-timeout-ms", std::to_string(config_.control_timeout_ms)};
    net::Fd library(*fd);
    ExecutorProcess executor(config_.executor_path, args, library.get());
    library.reset();
    auto ready = executor.reports().next(net::deadline_in(timeout));
    if (!ready || ready->value("event", "") != "ready") {
      auto code = ready ? protocol::control_errc_from_string(ready->value("code", "")) : std::nullopt;
      std::string detail = ready ? ready->value("detail", "") : "no answer from the executor";
      if (auto st = executor.exited()) detail += " (" + describe_exit(*st) + ")";
      throw MessageError(code.value_or(ControlErrc::executor_failed), detail);
    }
    protocol::Allocated reply{lease_id, ready->value("address", ""), req.workers, cached};
    send_text(stream, protocol::make_message("allocated", reply), timeout);
    log("lease " + std::to_string(lease_id) + ": " + std::to_string(req.workers) + " workers on cores " + cores_csv +
        ", library " + req.library_name + (cached ? " (cached)" : " (received)") + ", executor at " + reply.address);

    // Watch the lease until it ends one way or another.
    protocol::LeaseEnded end;
    for (;;) {
      int64_t left_ms = t.expires_at_ms - protocol::unix_now_ms();
      if (left_ms <= 0) {
        end.reason = "expired";
        end.detail = "lease expired";
        break;
      }
      if (shutting_down()) {
        end.reason = "revoked";
        end.detail = "executor daemon is shutting down";
        break;
      }
      pollfd fds[2] = {{stream.fd(), POLLIN, 0}, {executor.pidfd(), POLLIN, 0}};
      int r = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left_ms, 100)));
      if (r <= 0) continue;
      if (fds[1].revents) {
        int st = *executor.exited();
        end.reason = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? "released" : "executor_crashed";
        end.detail = "executor " + describe_exit(st);
        break;
      }
      if (fds[0].revents) {
        std::vector<uint8_t> frame;
        try {
          frame = stream.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout));
        } catch (const net::NetError&) {
          end.reason = "client_gone";
          break;
        }
        std::string type;
        try {
          type = protocol::ControlMessage::parse(frame).type;
        } catch (const MessageError& e) {
          send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
          continue;
        }
        if (type == "release") {
          end.reason = "released";
          end.detail = "released by the client";
          break;
        }
        send_text(stream, protocol::make_error(ControlErrc::malformed, "unexpected '" + type + "' during a lease"),
                  timeout);
      }
    }
    int st = executor.terminate();
    end.usage = executor.reports().usage(net::deadline_in(1s));
    if (end.reason != "client_gone") {
      try {
        send_text(stream, protocol::make_message("lease_ended", end), timeout);
      } catch (const net::NetError&) {
      }
    }
    log("lease " + std::to_string(lease_id) + " ended: " + end.reason + ", executor " + describe_exit(st) + ", " +
        std::to_string(end.usage.invocations) + " invocations");
  } catch (const MessageError& e) {
    log(std::string("refused a client: ") + to_string(e.code()) + ": " + e.what());
    try {
      send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
    } catch (const net::NetError&) {
    }
  } catch (const net::NetError& e) {
    log(std::string("client connection: ") + e.what());
  } catch (const std::exception& e) {
    log(std::string("internal error: ") + e.what());
    try {
      send_text(stream, protocol::make_error(ControlErrc::internal, e.what()), timeout);
    } catch (...) {
    }
  }
  if (reserved) leases_.release(lease_id);
}

}  // namespace rfaas::executor
