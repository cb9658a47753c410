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
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"

extern char** environ;

namespace rfaas::daemon {

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
  if (c.fabric_host.empty()) {
    // Executors listen where the daemon is reached: its advertised host, unless chosen.
    const fabric::Config f = fabric::Config::from_env();
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
  std::string why, swept;
  cgroups_ = CgroupHierarchy::detect("rfaas-executord-", &why, &swept);
  if (!swept.empty()) log("emptied and removed the cgroups of a daemon that is gone: " + swept);
  if (cgroups_.kind() == CgroupHierarchy::Kind::none)
    log("leases are not confined by cgroups (" + why + "): executors limit themselves with rlimits; "
        "processes a lease leaves outside its process group survive it (docs/security.md)");
  else
    log("leases confined by " + cgroups_.describe() + ": leased cores, memory, " +
        std::to_string(config_.max_tasks_per_lease) + " tasks each");
  if (::geteuid() != 0)
    log("not root: serves only uid " + std::to_string(::getuid()) + "'s leases (as root, every user's, each as its user)");
}

ExecutorDaemon::~ExecutorDaemon() { cgroups_.remove(); }

std::string ExecutorDaemon::address() const { return net::HostPort{listener_.host(), listener_.port()}.str(); }

std::unique_ptr<ExecutorProcess> ExecutorDaemon::take_standby() {
  std::unique_ptr<ExecutorProcess> taken;
  {
    std::lock_guard lock(standby_mutex_);
    taken = std::move(standby_);
  }
  // None ready (two leases at once), or it died: a fresh one, which initialises on its own.
  if (!taken || taken->exited()) taken = std::make_unique<ExecutorProcess>(config_.executor_path, config_.fabric_host);
  return taken;
}

void ExecutorDaemon::replenish_standby() {
  std::lock_guard lock(standby_mutex_);
  if (standby_ || shutting_down()) return;
  try {
    standby_ = std::make_unique<ExecutorProcess>(config_.executor_path, config_.fabric_host);
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
  while (!shutting_down()) {
    net::TcpStream stream;
    try {
      stream = listener_.accept(net::deadline_in(200ms));
    } catch (const net::NetError& e) {
      if (e.code() != net::NetErrc::timeout) {
        // Out of descriptors (EMFILE) and the like: pause instead of spinning on the listener.
        log(std::string("accept: ") + e.what());
        std::this_thread::sleep_for(100ms);
      }
      continue;
    }
    std::string why;
    auto ticket = admission_.admit(stream.peer_host(), stream.fd(), &why);
    if (!why.empty()) log("connections: " + why);
    if (!ticket) continue;  // closed as it goes out of scope
    {
      std::lock_guard lock(sessions_mutex_);
      ++sessions_;
    }
    auto ended = [this, ticket] {
      admission_.release(ticket);
      std::lock_guard lock(sessions_mutex_);
      if (--sessions_ == 0) sessions_done_.notify_all();
    };
    try {
      // The stream outlives release(): a pushed-out descriptor is never one reused meanwhile.
      std::thread([this, s = std::move(stream), ticket, ended]() mutable {
        session(s, ticket);
        ended();
      }).detach();
    } catch (const std::system_error& e) {  // no thread to be had: this connection only
      log(std::string("refused a connection: no thread: ") + e.what());
      ended();
    }
  }
  if (broker_) broker_->drain();  // no new leases here while the running ones are revoked
  // Sessions see shutting_down() within their poll period and revoke their leases.
  std::unique_lock lock(sessions_mutex_);
  sessions_done_.wait_for(lock, 10s, [this] { return sessions_ == 0; });
  {
    std::lock_guard standby_lock(standby_mutex_);
    standby_.reset();
  }
  broker_.reset();
  log("stopped");
}

std::string ExecutorDaemon::lease_ofi_provider(const protocol::AllocateRequest& req, const std::string& peer_host) const {
  if (fabric_.backend != fabric::Backend::ofi) return "";
  if (fabric_.ofi_provider != "auto") return fabric_.ofi_provider;  // the daemon's own choice stands
  // Under auto the client's word is checked, not taken: shm only for a client that reached us
  // over loopback and names this host (shm keeps the node's /dev/shm for the lease, and opens as
  // root), tcp for everyone; nothing else a client names is opened.
  const bool loopback = peer_host == "::1" || peer_host.rfind("127.", 0) == 0;
  const bool same_host = loopback && !req.host.empty() && req.host == host_identity_;
  const std::string& asked = req.ofi_provider;
  if (asked.empty() || asked == "auto") return fabric_.ofi_provider_for(same_host);
  if (asked == "tcp" || asked == "tcp;ofi_rxm") return "tcp";
  if (asked == "shm" && same_host) return "shm";
  throw MessageError(ControlErrc::policy, "this node serves clients of its own host over shm and the others over tcp "
                                          "(RFAAS_OFI_PROVIDER=auto here); not over what this client asked for");
}

void ExecutorDaemon::session(net::TcpStream& stream, net::SessionAdmission::Ticket ticket) {
  const auto timeout = std::chrono::milliseconds(config_.control_timeout_ms);
  // A stranger has a short while for its request; a session with a genuine token, the timeout.
  const auto first_wait = std::chrono::milliseconds(std::min(config_.control_timeout_ms, config_.sessions.first_frame_timeout_ms));
  uint64_t lease_id = 0;
  bool reserved = false;
  int64_t served_until_ms = 0;  // once the lease is served: its token's latest expiry
  int64_t genuine_until_ms = 0;  // the token verified for this node: its expiry
  try {
    // A client whose host vanishes (no FIN) ends its lease within the keepalive bound.
    stream.keep_alive(net::kKeepAliveIdle, net::kKeepAliveInterval, net::kKeepAliveProbes);
    auto msg = protocol::ControlMessage::parse(stream.recv_frame(protocol::kMaxControlFrame, net::deadline_in(first_wait)));
    admission_.heard(ticket);  // spoken: a flood of silent connections goes before it
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
    lease_id = t.lease_id;
    genuine_until_ms = t.expires_at_ms;
    if (!admission_.authenticated(ticket, "uid:" + std::to_string(t.uid)))
      throw MessageError(ControlErrc::policy, "uid " + std::to_string(t.uid) + " holds " +
                                                  std::to_string(admission_.limits().max_sessions_per_identity) +
                                                  " control connections to this node already");
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
    if (::geteuid() != 0 && (t.uid != ::getuid() || t.gid != ::getgid()))
      throw MessageError(ControlErrc::not_permitted, "this daemon runs as uid " + std::to_string(::getuid()) + " gid " +
                                                         std::to_string(::getgid()) + " and serves only that user's leases, not uid " +
                                                         std::to_string(t.uid) + " gid " + std::to_string(t.gid));
    if (req.library_size > config_.max_library_bytes)
      throw MessageError(ControlErrc::library_mismatch, "library of " + std::to_string(req.library_size) +
                                                            " bytes exceeds this daemon's limit");
    for (const auto& d : req.dependencies)
      if (d.size > config_.max_library_bytes)
        throw MessageError(ControlErrc::library_mismatch, "dependency " + d.name + " of " + std::to_string(d.size) +
                                                              " bytes exceeds this daemon's limit");
    auto cores = leases_.reserve(lease_id, req.workers, protocol::unix_now_ms(), t.memory_bytes, t.uid);
    reserved = true;
    if (broker_) broker_->report_now();  // a lease the broker does not hold ends before it serves long

    // The library and its dependencies: cached, or sent now and checked against their announced
    // hashes. Dependencies first: the executor loads them before the library.
    bool cached = true;
    auto fetch = [&](const std::string& sha256, uint64_t size, const std::string& what) {
      if (auto fd = libraries_.open(sha256, t.uid)) return net::Fd(*fd);  // cached for this user only
      cached = false;
      send_text(stream, protocol::make_message("send_library", {{"sha256", sha256}}), timeout);
      auto bytes = stream.recv_frame(size, net::deadline_in(timeout * 6));  // as announced, at most
      if (bytes.size() != size || protocol::sha256_hex(bytes.data(), bytes.size()) != sha256)
        throw MessageError(ControlErrc::library_mismatch, what + " bytes do not match the announced size and SHA-256");
      return net::Fd(libraries_.insert(sha256, bytes, t.uid));
    };
    std::vector<std::pair<std::string, net::Fd>> dependencies;
    for (const auto& d : req.dependencies)
      dependencies.emplace_back(d.name, fetch(d.sha256, d.size, "dependency " + d.name));
    net::Fd library = fetch(req.library_sha256, req.library_size, "library");

    std::string cores_csv;
    for (int c : cores) cores_csv += (cores_csv.empty() ? "" : ",") + std::to_string(c);
    protocol::LeaseAssignment assignment;
    assignment.lease_id = lease_id;
    assignment.functions = req.functions;
    assignment.cores = cores;
    assignment.slots = req.slots;
    assignment.input_capacity = req.input_capacity;
    assignment.output_capacity = req.output_capacity;
    assignment.hot_timeout_us = req.hot_timeout_us;
    assignment.expires_at_ms = t.expires_at_ms;
    assignment.accept_timeout_ms = config_.control_timeout_ms;
    assignment.uid = t.uid;
    assignment.gid = t.gid;
    assignment.memory_limit_bytes = t.memory_bytes + config_.lease_memory_overhead_bytes;
    assignment.max_tasks = config_.max_tasks_per_lease;
    assignment.hello_key = protocol::worker_hello_key(t);
    assignment.library_name = protocol::utf8_prefix(req.library_name, 255);
    assignment.ofi_provider = lease_ofi_provider(req, stream.peer_host());
    std::unique_ptr<ExecutorProcess> executor_holder = take_standby();
    ExecutorProcess& executor = *executor_holder;
    // Declared after the executor: destroyed first, killing whatever of the lease is left.
    std::unique_ptr<LeaseCgroup> cgroup;
    if (cgroups_.kind() != CgroupHierarchy::Kind::none) {
      try {
        cgroup = cgroups_.create(lease_id, {cores, assignment.memory_limit_bytes, assignment.max_tasks});
        cgroup->add(executor.pid());
        assignment.confined = true;
      } catch (const CgroupError& e) {
        throw MessageError(ControlErrc::executor_failed, std::string("confining the lease: ") + e.what());
      }
    }
    std::vector<std::pair<std::string, int>> dependency_fds;
    for (auto& [name, fd] : dependencies) dependency_fds.emplace_back(name, fd.get());
    executor.assign(assignment, library.get(), dependency_fds);
    library.reset();
    dependencies.clear();
    auto ready = executor.reports().next(net::deadline_in(timeout));
    if (!ready || ready->value("event", "") != "ready") {
      auto code = ready ? protocol::control_errc_from_string(ready->value("code", "")) : std::nullopt;
      std::string detail = ready ? ready->value("detail", "") : "no answer from the executor";
      if (auto st = executor.exited()) detail += " (" + describe_exit(*st) + ")";
      throw MessageError(code.value_or(ControlErrc::executor_failed), detail);
    }
    protocol::Allocated reply{lease_id, ready->value("address", ""), req.workers, cached, assignment.ofi_provider};
    send_text(stream, protocol::make_message("allocated", reply), timeout);
    // From here the token is spent: presented again, it is refused (LeaseTable).
    served_until_ms = t.expires_at_ms;
    const auto served_since = std::chrono::steady_clock::now();  // what the broker hears was served
    // The next standby starts once this lease's endpoints had time to connect: its libfabric
    // start-up would otherwise compete with them for the node's cores.
    auto replenish_at = std::chrono::steady_clock::now() + 200ms;
    bool replenished = false;
    log("lease " + std::to_string(lease_id) + ": " + std::to_string(req.workers) + " workers on cores " + cores_csv +
        ", library " + req.library_name + (cached ? " (cached)" : " (received)") + ", executor at " + reply.address +
        (reply.ofi_provider.empty() ? "" : " over " + reply.ofi_provider));

    // Watch the lease until it ends one way or another.
    protocol::LeaseEnded end;
    int64_t expires_at_ms = t.expires_at_ms;  // moved by a renewal
    uint64_t memory_left = t.memory_bytes - memory;  // for resident regions
    uint64_t executor_requests = 0;  // regions and usage asked of the executor, by sequence number
    std::optional<protocol::Usage> early_usage;  // its final usage, read while waiting for an answer
    std::string early_ended;
    bool usage_read = false;
    // The executor's answer to request `seq` (a report of kind `a` or `b`), skipping late answers
    // to earlier requests; none by the deadline, or when the executor is ending (its final
    // usage kept for the lease's end).
    auto executor_answer = [&](uint64_t seq, const char* a, const char* b,
                               net::Deadline deadline) -> std::optional<nlohmann::json> {
      while (auto report = executor.reports().next(deadline)) {
        std::string event = report->value("event", "");
        if (event == "usage") {
          early_usage = report->get<protocol::Usage>();
          early_ended = report->value("ended", "");
          return std::nullopt;
        }
        if ((event == a || event == b) && report->value("seq", uint64_t{0}) == seq) return report;
      }
      return std::nullopt;
    };
    for (;;) {
      if (!replenished && std::chrono::steady_clock::now() >= replenish_at) {
        replenish_standby();
        replenished = true;
      }
      int64_t left_ms = expires_at_ms - protocol::unix_now_ms();
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
      if (leases_.ended_by_broker(lease_id)) {
        end.reason = "revoked";
        end.detail = "the lease ended at the broker (released, expired or revoked there)";
        break;
      }
      pollfd fds[2] = {{stream.fd(), POLLIN, 0}, {executor.pidfd(), POLLIN, 0}};
      int r = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left_ms, 100)));
      if (r <= 0) continue;
      if (fds[1].revents) {
        int st = *executor.exited();
        end.reason = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? "released" : "executor_crashed";
        end.detail = "executor " + describe_exit(st);
        if (cgroup && cgroup->memory_exceeded()) {
          end.reason = "memory_exceeded";
          end.detail = "the kernel killed the lease's executor at the lease's memory limit of " +
                       std::to_string(assignment.memory_limit_bytes) + " bytes (" + describe_exit(st) + ")";
        }
        std::string ended;
        end.usage = early_usage ? *early_usage : executor.reports().usage(net::deadline_in(1s), &ended);
        if (early_usage) ended = early_ended;
        usage_read = true;
        if (!executor.reports().fault().empty() && end.reason == "executor_crashed")
          end.detail = executor.reports().fault() + ": executor " + describe_exit(st);
        if (ended == "signal" || shutting_down()) {
          // Stopped from outside (Slurm's scancel signals the whole job): the node is being
          // taken back, and the client must hear that, not a crash.
          end.reason = "revoked";
          end.detail = "executor stopped by a signal: the node is shutting down";
        }
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
        protocol::ControlMessage control;
        try {
          control = protocol::ControlMessage::parse(frame);
          type = control.type;
        } catch (const MessageError& e) {
          send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
          continue;
        }
        if (type == "release") {
          end.reason = "released";
          end.detail = "released by the client";
          break;
        }
        if (type == "create_region") {
          // A resident region, counted against the lease's memory before the executor maps it.
          try {
            auto ask = control.as<protocol::CreateRegionRequest>();
            if (ask.bytes > memory_left)
              throw MessageError(ControlErrc::memory_exceeded,
                                 "a region of " + std::to_string(ask.bytes) + " bytes exceeds the " +
                                     std::to_string(memory_left) + " bytes left of the lease's memory");
            // Reserved before the executor is asked, given back if it cannot.
            memory_left -= ask.bytes;
            const uint64_t seq = ++executor_requests;
            executor.create_region(ask.bytes, seq);
            // Mapping and registering a large region takes a while: a longer bound than a message.
            auto answer = executor_answer(seq, "region", "region_failed", net::deadline_in(timeout * 3));
            if (!answer || answer->value("event", "") != "region") {
              memory_left += ask.bytes;
              if (answer)  // the node could not map or register it (memory, locked-memory limit)
                throw MessageError(ControlErrc::no_capacity, answer->value("detail", std::string("region refused")));
              throw MessageError(ControlErrc::executor_failed, "no answer from the executor");
            }
            protocol::RegionCreated created;
            created.id = answer->value("id", 0u);
            created.address = answer->value("address", uint64_t{0});
            created.key = answer->value("key", uint64_t{0});
            created.length = answer->value("length", uint64_t{0});
            send_text(stream, protocol::make_message("region_created", created), timeout);
          } catch (const MessageError& e) {
            send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
          }
          continue;
        }
        if (type == "usage") {
          // What the lease's workers counted so far (calls, their time on the leased cores).
          try {
            const uint64_t seq = ++executor_requests;
            executor.request_usage(seq);
            auto answer = executor_answer(seq, "usage_now", "usage_now", net::deadline_in(timeout));
            if (!answer) throw MessageError(ControlErrc::executor_failed, "no usage from the executor");
            send_text(stream, protocol::make_message("usage_report", answer->get<protocol::Usage>()), timeout);
          } catch (const MessageError& e) {
            send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
          }
          continue;
        }
        if (type == "renew") {
          // A renewed token from the broker: the same lease on this node, a later expiry.
          try {
            auto renewed = control.as<protocol::RenewRequest>().token;
            if (!renewed.verify(secret_)) throw MessageError(ControlErrc::bad_token, "renewed token does not verify");
            if (renewed.lease_id != lease_id || renewed.executor != config_.node_name || renewed.cores != t.cores ||
                renewed.memory_bytes != t.memory_bytes)
              throw MessageError(ControlErrc::bad_token, "renewed token is not for this lease");
            if (renewed.expires_at_ms <= protocol::unix_now_ms())
              throw MessageError(ControlErrc::lease_expired, "renewed token has expired");
            expires_at_ms = std::max(expires_at_ms, renewed.expires_at_ms);
            served_until_ms = expires_at_ms;
            executor.renew(expires_at_ms);
            send_text(stream, protocol::make_message("renewed", {{"lease_id", lease_id}, {"expires_at_ms", expires_at_ms}}),
                      timeout);
            log("lease " + std::to_string(lease_id) + " renewed");
          } catch (const MessageError& e) {
            send_text(stream, protocol::make_error(e.code(), e.what()), timeout);
          }
          continue;
        }
        send_text(stream, protocol::make_error(ControlErrc::malformed, "unexpected '" + type + "' during a lease"),
                  timeout);
      }
    }
    if (!replenished) replenish_standby();
    int st = executor.terminate();
    if (cgroup) {  // every process of the lease killed, its cgroup gone
      if (auto left = cgroup->close(); !left.empty()) log("lease " + std::to_string(lease_id) + ": cgroup not removed: " + left);
      cgroup.reset();
    }
    if (!usage_read) end.usage = early_usage ? *early_usage : executor.reports().usage(net::deadline_in(1s));
    // The cores are free, here and at the broker, before the client hears the lease ended: it
    // can lease them again at once (a client that releases and leases again, as an MPI job
    // between two rfaas_mpi_init, would otherwise race the report).
    leases_.release(lease_id, served_until_ms);
    reserved = false;
    std::future<void> reported;
    if (broker_) {
      // Measured here, not reported by the executor (which runs the lease's code).
      auto served_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - served_since).count();
      nlohmann::json served{{"cores", req.workers}, {"memory_bytes", t.memory_bytes}, {"served_ms", served_ms}, {"uid", t.uid}};
      auto report = [this, lease_id, usage = end.usage, served, reason = end.reason] {
        broker_->report_usage(lease_id, usage, served, reason);
      };
      try {
        reported = std::async(std::launch::async, report);
      } catch (const std::system_error&) {
        report();
      }
      // A slow broker holds the client's answer 1 s at most: the client waits 1.5 s to hear why
      // its lease ended.
      if (reported.valid()) reported.wait_for(std::chrono::seconds(1));
    }
    if (end.reason != "client_gone") {
      try {
        send_text(stream, protocol::make_message("lease_ended", end), timeout);
      } catch (const net::NetError&) {
      }
    }
    if (reported.valid()) reported.wait();  // report_usage catches what it throws
    const bool explained = end.reason == "memory_exceeded" || !executor.reports().fault().empty();
    log("lease " + std::to_string(lease_id) + " ended: " + end.reason + (explained ? " (" + end.detail + ")" : "") + ", executor " + describe_exit(st) + ", " +
        std::to_string(end.usage.invocations) + " invocations");
  } catch (const MessageError& e) {
    log(std::string("refused a client: ") + to_string(e.code()) + ": " + e.what());
    // A genuine lease whose deploy failed is spent, and the broker hears that it ended, so that
    // its cores are not held until the lease expires (unless another session serves it).
    if (genuine_until_ms > 0 && served_until_ms == 0) {
      bool spent = false;
      if (reserved) {
        leases_.release(lease_id, genuine_until_ms);
        reserved = false;
        spent = true;
      } else if (e.code() != ControlErrc::lease_active && e.code() != ControlErrc::lease_ended) {
        spent = leases_.spend(lease_id, genuine_until_ms);
      }
      if (spent && broker_)
        broker_->report_usage(lease_id, {}, {{"cores", 0}, {"memory_bytes", 0}, {"served_ms", 0}},
                              std::string("deploy_refused: ") + to_string(e.code()));
    }
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
  if (reserved) leases_.release(lease_id, served_until_ms);
}

}  // namespace rfaas::daemon
