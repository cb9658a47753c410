#include "daemon/executor_daemon.hpp"

#include "rfaas/fabric/fabric.hpp"

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
#include <future>
#include <system_error>
#include <thread>

#include "daemon/executor_process.hpp"
#include "daemon/lease_session.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"

extern char** environ;

namespace rfaas::daemon {

using protocol::ControlErrc;
using protocol::ControlType;
using protocol::LeaseEndReason;
using protocol::MessageError;
using namespace std::chrono_literals;

void log(const std::string& line) { std::fprintf(stderr, "rfaas-executord: %s\n", line.c_str()); }

namespace {

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
      else if (key == "broker") c.broker = value.get<std::string>();
      else if (key == "advertise") c.advertise = value.get<std::string>();
      else if (key == "memory_bytes") c.memory_bytes = value.get<uint64_t>();
      else if (key == "max_connections") c.sessions.max_sessions = value.get<uint32_t>();
      else if (key == "max_connections_per_peer") c.sessions.max_sessions_per_peer = value.get<uint32_t>();
      else if (key == "max_connections_per_identity") c.sessions.max_sessions_per_identity = value.get<uint32_t>();
      else if (key == "first_frame_timeout_ms") c.sessions.first_frame_timeout_ms = value.get<uint32_t>();
      else if (key == "lease_memory_overhead_bytes") c.lease_memory_overhead_bytes = value.get<uint64_t>();
      else if (key == "max_tasks_per_lease") c.max_tasks_per_lease = value.get<uint32_t>();
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
  if (!c.fabric) c.fabric = fabric::Config::from_env();
  if (c.fabric_host.empty()) {
    // Executors listen where the daemon is reached: its advertised host, unless chosen.
    const fabric::Config& f = *c.fabric;
    c.fabric_host = f.local_host;
    if (!f.local_host_chosen && !c.advertise.empty()) c.fabric_host = net::HostPort::parse(c.advertise).host;
  }
  if (c.cores.empty())
    for (long i = 0; i < ::sysconf(_SC_NPROCESSORS_ONLN); ++i) c.cores.push_back(static_cast<int>(i));
  if (c.memory_bytes == 0)
    c.memory_bytes = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return c;
}

ExecutorDaemon::ExecutorDaemon(DaemonConfig config)
    : config_(with_defaults(std::move(config))),
      secret_(protocol::ClusterSecret::load(config_.secret_file)),
      leases_(config_.cores),
      libraries_(config_.library_cache_bytes),
      admission_(config_.sessions) {
  auto hp = net::HostPort::parse(config_.listen);
  listener_ = net::TcpListener::bind(hp.host, hp.port);
  const std::string swept = sweep_crashed_daemons_cgroups("rfaas-executord-");
  if (!swept.empty()) log("emptied and removed the cgroups of a daemon that is gone: " + swept);
  std::string why;
  cgroups_ = make_daemon_cgroups("rfaas-executord-", &why);
  if (!cgroups_)
    log("leases are not confined by cgroups (" + why + "): executors limit themselves with rlimits; "
        "processes a lease leaves outside its process group survive it (docs/security.md)");
  else
    log("leases confined by " + cgroups_->describe() + ": leased cores, memory, " +
        std::to_string(config_.max_tasks_per_lease) + " tasks each");
  if (::geteuid() != 0)
    log("not root: serves only uid " + std::to_string(::getuid()) + "'s leases (as root, every user's, each as its user)");
}

ExecutorDaemon::~ExecutorDaemon() {
  if (cgroups_) cgroups_->remove();
}

std::string ExecutorDaemon::address() const { return net::HostPort{listener_.host(), listener_.port()}.str(); }

std::unique_ptr<ExecutorProcess> ExecutorDaemon::take_standby() {
  std::unique_ptr<ExecutorProcess> taken;
  {
    std::lock_guard lock(standby_mutex_);
    taken = std::move(standby_);
  }
  // None ready (two leases at once), or it died: a fresh one, which initialises on its own.
  if (!taken || taken->exited()) taken = std::make_unique<ExecutorProcess>(config_.executor_path, config_.fabric_host, config_.fabric->to_variables());
  return taken;
}

void ExecutorDaemon::replenish_standby() {
  std::lock_guard lock(standby_mutex_);
  if (standby_ || shutting_down()) return;
  try {
    standby_ = std::make_unique<ExecutorProcess>(config_.executor_path, config_.fabric_host, config_.fabric->to_variables());
  } catch (const std::exception& e) {
    log(std::string("cannot start a standby executor: ") + e.what());
  }
}

void ExecutorDaemon::serve() {
  replenish_standby();
  if (!config_.broker.empty()) {
    broker_ = std::make_unique<BrokerLink>(config_.broker, config_.node_name,
                                           config_.advertise.empty() ? address() : config_.advertise,
                                           static_cast<uint32_t>(leases_.total_cores()), config_.memory_bytes, secret_, leases_);
    broker_->start();
  }
  log("node " + config_.node_name + ", " + std::to_string(leases_.total_cores()) + " cores, control port " + address());
  net::serve_sessions(
      listener_, admission_, sessions_, [this] { return shutting_down(); },
      [this](net::TcpStream& s, net::SessionAdmission::Ticket ticket) { session(s, ticket); }, log);
  if (broker_) broker_->drain();  // no new leases here while the running ones are revoked
  // Sessions see shutting_down() within their poll period and revoke their leases.
  sessions_.wait_none(10s);
  {
    std::lock_guard standby_lock(standby_mutex_);
    standby_.reset();
  }
  broker_.reset();
  log("stopped");
}

std::string ExecutorDaemon::lease_ofi_provider(const protocol::AllocateRequest& req, const std::string& peer_host) const {
  const fabric::Config& fabric = *config_.fabric;
  if (fabric.backend != fabric::Backend::ofi) return "";
  if (fabric.ofi_provider != "auto") return fabric.ofi_provider;  // the daemon's own choice stands
  // Under auto the client's word is checked, not taken: shm only for a client that reached us
  // over loopback and names this host (shm keeps the node's /dev/shm for the lease, and opens as
  // root), tcp for everyone; nothing else a client names is opened.
  const bool loopback = peer_host == "::1" || peer_host.rfind("127.", 0) == 0;
  const bool same_host = loopback && !req.host.empty() && req.host == host_identity_;
  const std::string& asked = req.ofi_provider;
  if (asked.empty() || asked == "auto") return fabric.ofi_provider_for(same_host);
  if (asked == "tcp" || asked == "tcp;ofi_rxm") return "tcp";
  if (asked == "shm" && same_host) return "shm";
  throw MessageError(ControlErrc::policy, "this node serves clients of its own host over shm and the others over tcp "
                                          "(RFAAS_OFI_PROVIDER=auto here); not over what this client asked for");
}

void ExecutorDaemon::session(net::TcpStream& stream, net::SessionAdmission::Ticket ticket) {
  LeaseSession(*this, stream, ticket).run();
}

}  // namespace rfaas::daemon
