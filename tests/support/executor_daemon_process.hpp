// A real rfaas-executord for integration tests: its own cluster secret in a temp folder, a
// control port on loopback, stopped with SIGTERM (then SIGKILL) when the test ends.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"

namespace rfaas::testing {

class TempDir {
 public:
  // `base`: where (a test whose files leased code must see, by path, uses /var/tmp: each
  // lease's /tmp is its own).
  explicit TempDir(const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    std::string tmpl = (base / "rfaas-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A cluster secret file (32 fixed bytes) at `path`, created with mode 0600: never readable by
// others, not even before its first byte.
inline std::string write_secret(const std::filesystem::path& path) {
  char bytes[32];
  for (int i = 0; i < 32; ++i) bytes[i] = static_cast<char>(i * 7 + 3);
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || ::write(fd, bytes, sizeof bytes) != static_cast<ssize_t>(sizeof bytes))
    throw std::runtime_error("cannot write the test secret " + path.string());
  ::close(fd);
  return path.string();
}

// Waits for a daemon's --ready-file and returns the address in it.
inline std::string wait_ready_file(const std::string& path, ChildProcess& process) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < end) {
    std::ifstream in(path);
    std::string address;
    if (in >> address) return address;
    if (process.wait_for(std::chrono::milliseconds(0))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("daemon did not start");
}

class ExecutorDaemonProcess {
 public:
  static constexpr const char* kNodeName = "test-node";

  // A daemon with its own secret, or (secret_file given) sharing one, e.g. with a broker.
  explicit ExecutorDaemonProcess(std::vector<std::string> extra_args = {}, std::string secret_file = {},
                                 std::string node_name = kNodeName, std::string log_file = {},
                                 const std::map<std::string, std::string>& env = {}) {
    secret_ = secret_file.empty() ? write_secret(dir_.path() / "secret") : secret_file;
    auto ready = (dir_.path() / "ready").string();
    // RFAAS_TEST_DAEMON_HOST: its control port elsewhere than loopback, for a daemon that
    // RFAAS_TEST_PEER_PREFIX puts in another network namespace.
    const char* host = std::getenv("RFAAS_TEST_DAEMON_HOST");
    std::string listen = std::string(host && *host ? host : "127.0.0.1") + ":0";
    std::vector<std::string> argv{RFAAS_EXECUTORD, "--listen", listen, "--node-name", node_name,
                                  "--secret-file", secret_, "--ready-file", ready};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<ChildProcess>(argv, env, log_file);
    address_ = wait_ready_file(ready, *process_);
  }
  ~ExecutorDaemonProcess() {
    process_->kill(SIGTERM);
    process_->wait_for(std::chrono::seconds(15));
  }

  const std::string& address() const { return address_; }
  const std::string& secret_file() const { return secret_; }
  ChildProcess& process() { return *process_; }
  bool alive() { return !process_->wait_for(std::chrono::milliseconds(0)); }

  // Pids of the executor processes this daemon is running now.
  std::vector<pid_t> executors() const {
    std::vector<pid_t> out;
    std::string task_dir = "/proc/" + std::to_string(process_->pid()) + "/task";
    for (auto& t : std::filesystem::directory_iterator(task_dir)) {
      std::ifstream children(t.path() / "children");
      for (pid_t p; children >> p;) out.push_back(p);
    }
    return out;
  }

 private:
  TempDir dir_;
  std::string secret_;
  std::string address_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace rfaas::testing
