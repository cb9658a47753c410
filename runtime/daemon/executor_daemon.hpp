// rfaas-executord: one per node. Accepts clients on a TCP control port (length-prefixed JSON,
// runtime/protocol/control.hpp), verifies their lease tokens, takes the function library (or
// finds it cached), starts one rfaas-executor process per lease, and watches the lease until
// it is released, expires, its executor dies, or its client disappears. One thread per
// control connection; a bad client costs only its own thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/broker_link.hpp"
#include "rfaas/fabric/fabric.hpp"
#include "daemon/executor_process.hpp"
#include "daemon/lease_cgroup.hpp"
#include "daemon/lease_table.hpp"
#include "daemon/library_cache.hpp"
#include "net/session_limits.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/lease_token.hpp"

namespace rfaas::daemon {

struct DaemonConfig {
  std::string listen = "127.0.0.1:0";  // control port; port 0 picks one
  std::string node_name;               // tokens must name this node; default: the hostname
  std::string secret_file;             // cluster secret, mode 0600
  std::vector<int> cores;              // cores it may lease; default: all online cores
  std::string executor_path;           // rfaas-executor; default: beside this binary
  std::string fabric_host;  // where executors listen for client endpoints (default: fabric's local host)
  // The executors' transport. Unset: the environment's (fabric::Config::from_env), read once
  // when the daemon starts; rfaas-executord sets it from its own environment.
  std::optional<fabric::Config> fabric;
  uint64_t max_library_bytes = 256ull << 20;
  uint64_t library_cache_bytes = 1ull << 30;
  uint32_t control_timeout_ms = 10'000;  // bound on every wait for a client or an executor
  std::string broker;                   // host:port of the lease broker; empty: direct mode only
  std::string advertise;                // control address given to the broker; default: listen address
  uint64_t memory_bytes = 0;            // memory it offers; default: the node's physical memory
  net::SessionLimits sessions;          // control connections: all, and per peer address
  // Each lease's cgroup: the lease's memory plus this much for the executor itself (its binary,
  // libfabric, the library's code and stacks), and at most this many tasks (processes and threads).
  uint64_t lease_memory_overhead_bytes = 256ull << 20;
  uint32_t max_tasks_per_lease = 1024;

  // Reads a JSON config file; keys as the fields above. Throws std::runtime_error.
  static DaemonConfig from_json_file(const std::string& path);
};

// "rfaas-executord: <line>" on the daemon's log (stderr).
void log(const std::string& line);

class LeaseSession;

class ExecutorDaemon {
 public:
  explicit ExecutorDaemon(DaemonConfig config);
  ~ExecutorDaemon();

  const DaemonConfig& config() const { return config_; }
  std::string address() const;  // host:port of the control port
  // Serves until shutdown(); then revokes the leases still running and returns.
  void serve();
  void shutdown() { shutdown_.store(true); }
  bool shutting_down() const { return shutdown_.load(); }

  LeaseTable& leases() { return leases_; }
  LibraryCache& libraries() { return libraries_; }
  const protocol::ClusterSecret& secret() const { return secret_; }

 private:
  friend class LeaseSession;  // a lease's session uses the daemon's tables, standby and broker link
  void session(net::TcpStream& stream, net::SessionAdmission::Ticket ticket);
  // The executor started ahead of need; replenish_standby() starts the next one once a lease
  // has what it needs.
  std::unique_ptr<ExecutorProcess> take_standby();
  void replenish_standby();

  DaemonConfig config_;
  // This host, for the per-lease choice of provider.
  const std::string host_identity_ = fabric::host_identity();
  // Throws MessageError(policy) for a provider this daemon will not open for that client.
  std::string lease_ofi_provider(const protocol::AllocateRequest& req, const std::string& peer_host) const;
  protocol::ClusterSecret secret_;
  LeaseTable leases_;
  LibraryCache libraries_;
  net::TcpListener listener_;
  std::atomic<bool> shutdown_{false};
  std::unique_ptr<BrokerLink> broker_;
  std::mutex standby_mutex_;
  std::unique_ptr<ExecutorProcess> standby_;
  net::SessionCount sessions_;
  net::SessionAdmission admission_;
  std::unique_ptr<CgroupHierarchy> cgroups_;  // where leases are confined (none: rlimits only)
};

}  // namespace rfaas::daemon
