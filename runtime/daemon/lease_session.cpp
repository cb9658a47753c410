#include "daemon/lease_session.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <system_error>

#include "protocol/invocation.hpp"
#include "text/comma_list.hpp"

namespace rfaas::daemon {

using protocol::ControlErrc;
using protocol::ControlType;
using protocol::LeaseEndReason;
using protocol::MessageError;
using Event = protocol::ExecutorEventType;
using namespace std::chrono_literals;

const char* to_string(LeaseSession::State s) {
  switch (s) {
    case LeaseSession::State::negotiating: return "negotiating";
    case LeaseSession::State::deploying: return "deploying";
    case LeaseSession::State::serving: return "serving";
    case LeaseSession::State::ending: return "ending";
    case LeaseSession::State::done: return "done";
  }
  return "done";
}

LeaseSession::LeaseSession(ExecutorDaemon& daemon, net::TcpStream& stream, net::SessionAdmission::Ticket ticket)
    : d_(daemon), stream_(stream), ticket_(ticket), timeout_(daemon.config_.control_timeout_ms) {}

void LeaseSession::send(const std::string& text) {
  stream_.send_frame(text.data(), text.size(), net::deadline_in(timeout_));
}

void LeaseSession::answer_error(ControlErrc code, const std::string& what) { send(protocol::make_error(code, what)); }

void LeaseSession::run() noexcept {
  try {
    negotiate();
    deploy();
    serve();
    end();
  } catch (const MessageError& e) {
    refuse(e);
  } catch (const net::NetError& e) {
    log(std::string("client connection: ") + e.what());
  } catch (const std::exception& e) {
    log(std::string("internal error: ") + e.what());
    try {
      answer_error(ControlErrc::internal, e.what());
    } catch (...) {
    }
  } catch (...) {
    log("internal error");
  }
  stop_executor();
  if (reserved_) d_.leases_.release(lease_id_, served_until_ms_);
  state_ = State::done;
}

// --- negotiating: the token and the request, the cores, the library --------------------------

void LeaseSession::negotiate() {
  const auto& config = d_.config_;
  // A stranger has a short while for its request; a session with a genuine token, the timeout.
  const auto first_wait = std::chrono::milliseconds(std::min(config.control_timeout_ms, config.sessions.first_frame_timeout_ms));
  // A client whose host vanishes (no FIN) ends its lease within the keepalive bound.
  stream_.keep_alive(net::kKeepAliveIdle, net::kKeepAliveInterval, net::kKeepAliveProbes);
  auto msg = protocol::ControlMessage::parse(stream_.recv_frame(protocol::kMaxControlFrame, net::deadline_in(first_wait)));
  d_.admission_.heard(ticket_);  // spoken: a flood of silent connections goes before it
  if (!msg.is(ControlType::allocate))
    throw MessageError(ControlErrc::malformed, "expected 'allocate', got '" + protocol::utf8_prefix(msg.type, 64) + "'");
  req_ = msg.as<protocol::AllocateRequest>();
  const auto& t = req_.token;

  // The token: genuine, for this node, not expired; the request within it.
  if (!t.verify(d_.secret_)) throw MessageError(ControlErrc::bad_token, "lease token does not verify");
  if (t.executor != config.node_name)
    throw MessageError(ControlErrc::bad_token, "lease token is for node '" + t.executor + "', this is '" + config.node_name + "'");
  if (t.expires_at_ms <= protocol::unix_now_ms())
    throw MessageError(ControlErrc::lease_expired, "lease " + std::to_string(t.lease_id) + " has expired");
  lease_id_ = t.lease_id;
  genuine_until_ms_ = t.expires_at_ms;
  if (!d_.admission_.authenticated(ticket_, "uid:" + std::to_string(t.uid)))
    throw MessageError(ControlErrc::policy, "uid " + std::to_string(t.uid) + " holds " +
                                                std::to_string(d_.admission_.limits().max_sessions_per_identity) +
                                                " control connections to this node already");
  // The parameters' own ranges were checked on parsing (protocol::read_lease_parameters).
  if (req_.params.workers > t.cores)
    throw MessageError(ControlErrc::malformed, "workers must be 1.." + std::to_string(t.cores) + " for this lease");
  if (req_.functions.size() > protocol::kMaxFunctions) throw MessageError(ControlErrc::malformed, "too many functions");
  slot_memory_ = protocol::lease_slot_memory(req_.params);
  if (slot_memory_ > t.memory_bytes)
    throw MessageError(ControlErrc::no_capacity, "slots need " + std::to_string(slot_memory_) + " bytes, the lease grants " +
                                                     std::to_string(t.memory_bytes));
  if (::geteuid() != 0 && (t.uid != ::getuid() || t.gid != ::getgid()))
    throw MessageError(ControlErrc::not_permitted, "this daemon runs as uid " + std::to_string(::getuid()) + " gid " +
                                                       std::to_string(::getgid()) + " and serves only that user's leases, not uid " +
                                                       std::to_string(t.uid) + " gid " + std::to_string(t.gid));
  if (req_.library_size > config.max_library_bytes)
    throw MessageError(ControlErrc::library_mismatch, "library of " + std::to_string(req_.library_size) +
                                                          " bytes exceeds this daemon's limit");
  for (const auto& dep : req_.dependencies)
    if (dep.size > config.max_library_bytes)
      throw MessageError(ControlErrc::library_mismatch, "dependency " + dep.name + " of " + std::to_string(dep.size) +
                                                            " bytes exceeds this daemon's limit");
  cores_ = d_.leases_.reserve(lease_id_, req_.params.workers, protocol::unix_now_ms(), t.memory_bytes, t.uid);
  reserved_ = true;
  if (d_.broker_) d_.broker_->report_now();  // a lease the broker does not hold ends before it serves long

  // The library and its dependencies: cached, or sent now and checked against their announced
  // hashes. Dependencies first: the executor loads them before the library.
  auto fetch = [&](const std::string& sha256, uint64_t size, const std::string& what) {
    if (auto fd = d_.libraries_.open(sha256, t.uid)) return net::Fd(*fd);  // cached for this user only
    cached_ = false;
    send(protocol::make_message(ControlType::send_library, {{"sha256", sha256}}));
    auto bytes = stream_.recv_frame(size, net::deadline_in(timeout_ * 6));  // as announced, at most
    if (bytes.size() != size || protocol::sha256_hex(bytes.data(), bytes.size()) != sha256)
      throw MessageError(ControlErrc::library_mismatch, what + " bytes do not match the announced size and SHA-256");
    return net::Fd(d_.libraries_.insert(sha256, bytes, t.uid));
  };
  for (const auto& dep : req_.dependencies) dependencies_.emplace_back(dep.name, fetch(dep.sha256, dep.size, "dependency " + dep.name));
  library_ = fetch(req_.library_sha256, req_.library_size, "library");
  state_ = State::deploying;
}

// --- deploying: the executor assigned, confined, ready; the client told where -----------------

void LeaseSession::deploy() {
  const auto& config = d_.config_;
  const auto& t = req_.token;
  cores_csv_ = rfaas::text::join_commas(cores_);
  auto& a = assignment_;
  a.lease_id = lease_id_;
  a.functions = req_.functions;
  a.cores = cores_;
  a.params = req_.params;
  a.expires_at_ms = t.expires_at_ms;
  a.accept_timeout_ms = config.control_timeout_ms;
  a.uid = t.uid;
  a.gid = t.gid;
  a.memory_limit_bytes = t.memory_bytes + config.lease_memory_overhead_bytes;
  a.max_tasks = config.max_tasks_per_lease;
  a.hello_key = protocol::worker_hello_key(t);
  a.library_name = protocol::utf8_prefix(req_.library_name, 255);
  a.ofi_provider = d_.lease_ofi_provider(req_, stream_.peer_host());
  executor_ = d_.take_standby();
  if (d_.cgroups_) {
    try {
      cgroup_ = d_.cgroups_->create(lease_id_, {cores_, a.memory_limit_bytes, a.max_tasks});
      cgroup_->add(executor_->pid());
      a.confined = true;
    } catch (const CgroupError& e) {
      throw MessageError(ControlErrc::executor_failed, std::string("confining the lease: ") + e.what());
    }
  }
  std::vector<std::pair<std::string, int>> dependency_fds;
  for (auto& [name, fd] : dependencies_) dependency_fds.emplace_back(name, fd.get());
  executor_->assign(a, library_.get(), dependency_fds);
  library_.reset();
  dependencies_.clear();

  auto ready = executor_->reports().next(net::deadline_in(timeout_));
  std::optional<protocol::ReadyReport> serving;
  protocol::FailedReport failed{ControlErrc::executor_failed, "no answer from the executor"};
  try {
    if (ready && ready->event == Event::ready) serving = ready->as<protocol::ReadyReport>();
    else if (ready && ready->event == Event::failed) failed = ready->as<protocol::FailedReport>();
    else if (ready) failed.detail = std::string("the executor said '") + to_string(ready->event) + "' before it was ready";
  } catch (const MessageError& e) {
    failed.detail = e.what();
  }
  if (!serving) {
    if (auto st = executor_->exited()) failed.detail += " (" + describe_exit(*st) + ")";
    throw MessageError(failed.code, failed.detail);
  }
  protocol::Allocated reply{lease_id_, serving->address, req_.params.workers, cached_, a.ofi_provider};
  send(protocol::make_message(ControlType::allocated, reply));
  // From here the token is spent: presented again, it is refused (LeaseTable).
  served_until_ms_ = t.expires_at_ms;
  expires_at_ms_ = t.expires_at_ms;
  memory_left_ = t.memory_bytes - slot_memory_;
  served_since_ = std::chrono::steady_clock::now();
  // The next standby starts once this lease's endpoints had time to connect: its libfabric
  // start-up would otherwise compete with them for the node's cores.
  replenish_at_ = served_since_ + 200ms;
  log("lease " + std::to_string(lease_id_) + ": " + std::to_string(req_.params.workers) + " workers on cores " + cores_csv_ +
      ", library " + req_.library_name + (cached_ ? " (cached)" : " (received)") + ", executor at " + reply.address +
      (reply.ofi_provider.empty() ? "" : " over " + reply.ofi_provider));
  state_ = State::serving;
}

// --- serving: watched until it ends one way or another ----------------------------------------

void LeaseSession::serve() {
  while (state_ == State::serving) {
    try {
      on_tick();
      if (state_ != State::serving) break;
      if (pending_) on_reports();  // answers already read (buffered) first
      if (pending_ && net::Clock::now() >= pending_->deadline) on_pending_deadline();
      int wait_ms = static_cast<int>(std::clamp<int64_t>(expires_at_ms_ - protocol::unix_now_ms(), 0, 100));
      if (pending_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(pending_->deadline - net::Clock::now()).count();
        wait_ms = static_cast<int>(std::clamp<int64_t>(left, 0, wait_ms));
      }
      // With an answer pending the client's next frame waits in the socket (clients ask one thing
      // at a time); its going away does not.
      const bool reports = pending_ && !executor_->reports().closed();
      pollfd fds[3] = {{stream_.fd(), static_cast<short>(pending_ ? POLLRDHUP : POLLIN), 0},
                       {executor_->pidfd(), POLLIN, 0},
                       {reports ? executor_->reports().fd() : -1, POLLIN, 0}};
      if (::poll(fds, 3, wait_ms) <= 0) continue;
      if (fds[1].revents) {
        on_executor_exit();
        break;
      }
      if (fds[2].revents) on_reports();
      if (fds[0].revents) {
        if (fds[0].events == POLLIN) on_client_frame();
        else finish(LeaseEndReason::client_gone, "");
      }
    } catch (const net::NetError&) {  // the client's connection failed under an answer
      finish(LeaseEndReason::client_gone, "");
    }
  }
}

void LeaseSession::on_tick() {
  if (!replenished_ && std::chrono::steady_clock::now() >= replenish_at_) {
    d_.replenish_standby();
    replenished_ = true;
  }
  if (expires_at_ms_ - protocol::unix_now_ms() <= 0) finish(LeaseEndReason::expired, "lease expired");
  else if (d_.shutting_down()) finish(LeaseEndReason::revoked, "executor daemon is shutting down");
  else if (d_.leases_.ended_by_broker(lease_id_))
    finish(LeaseEndReason::revoked, "the lease ended at the broker (released, expired or revoked there)");
}

void LeaseSession::on_executor_exit() {
  if (pending_) answer_pending_error(ControlErrc::executor_failed, "no answer from the executor");
  const int st = *executor_->exited();
  const bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  LeaseEndReason reason = clean ? LeaseEndReason::released : LeaseEndReason::executor_crashed;
  std::string detail = "executor " + describe_exit(st);
  if (cgroup_ && cgroup_->memory_exceeded()) {
    reason = LeaseEndReason::memory_exceeded;
    detail = "the kernel killed the lease's executor at the lease's memory limit of " +
             std::to_string(assignment_.memory_limit_bytes) + " bytes (" + describe_exit(st) + ")";
  }
  if (!final_usage_) final_usage_ = executor_->reports().usage(net::deadline_in(1s));
  end_.usage = final_usage_ ? final_usage_->usage : protocol::Usage{};
  usage_read_ = true;
  if (!executor_->reports().fault().empty() && reason == LeaseEndReason::executor_crashed)
    detail = executor_->reports().fault() + ": executor " + describe_exit(st);
  if ((final_usage_ && final_usage_->ended == protocol::ExecutorEnd::signal) || d_.shutting_down()) {
    // Stopped from outside (Slurm's scancel signals the whole job): the node is being taken
    // back, and the client must hear that, not a crash.
    reason = LeaseEndReason::revoked;
    detail = "executor stopped by a signal: the node is shutting down";
  }
  finish(reason, std::move(detail));
}

void LeaseSession::on_client_frame() {
  std::vector<uint8_t> frame;
  try {
    frame = stream_.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout_));
  } catch (const net::NetError&) {
    finish(LeaseEndReason::client_gone, "");
    return;
  }
  protocol::ControlMessage m;
  try {
    m = protocol::ControlMessage::parse(frame);
  } catch (const MessageError& e) {
    answer_error(e.code(), e.what());
    return;
  }
  const auto type = protocol::control_type_from_string(m.type);
  if (type == ControlType::release) finish(LeaseEndReason::released, "released by the client");
  else if (type == ControlType::create_region) on_create_region(m);
  else if (type == ControlType::usage) on_usage();
  else if (type == ControlType::renew) on_renew(m);
  else answer_error(ControlErrc::malformed, "unexpected '" + protocol::utf8_prefix(m.type, 64) + "' during a lease");
}

void LeaseSession::on_create_region(const protocol::ControlMessage& m) {
  // A resident region, counted against the lease's memory before the executor maps it.
  try {
    auto ask = m.as<protocol::CreateRegionRequest>();
    if (ask.bytes > memory_left_)
      throw MessageError(ControlErrc::memory_exceeded, "a region of " + std::to_string(ask.bytes) + " bytes exceeds the " +
                                                           std::to_string(memory_left_) + " bytes left of the lease's memory");
    const uint64_t seq = ++executor_requests_;
    executor_->create_region(ask.bytes, seq);
    // Reserved once the executor is asked, given back if it cannot. Mapping and registering a
    // large region takes a while: a longer bound than a message.
    memory_left_ -= ask.bytes;
    pending_ = Pending{ControlType::create_region, seq, ask.bytes, net::deadline_in(timeout_ * 3)};
  } catch (const MessageError& e) {
    answer_error(e.code(), e.what());
  }
}

void LeaseSession::on_usage() {
  // What the lease's workers counted so far (calls, their time on the leased cores).
  try {
    const uint64_t seq = ++executor_requests_;
    executor_->request_usage(seq);
    pending_ = Pending{ControlType::usage, seq, 0, net::deadline_in(timeout_)};
  } catch (const MessageError& e) {
    answer_error(e.code(), e.what());
  }
}

void LeaseSession::on_renew(const protocol::ControlMessage& m) {
  // A renewed token from the broker: the same lease on this node, a later expiry.
  const auto& t = req_.token;
  try {
    auto renewed = m.as<protocol::RenewRequest>().token;
    if (!renewed.verify(d_.secret_)) throw MessageError(ControlErrc::bad_token, "renewed token does not verify");
    if (renewed.lease_id != lease_id_ || renewed.executor != d_.config_.node_name || renewed.cores != t.cores ||
        renewed.memory_bytes != t.memory_bytes)
      throw MessageError(ControlErrc::bad_token, "renewed token is not for this lease");
    if (renewed.expires_at_ms <= protocol::unix_now_ms())
      throw MessageError(ControlErrc::lease_expired, "renewed token has expired");
    expires_at_ms_ = std::max(expires_at_ms_, renewed.expires_at_ms);
    served_until_ms_ = expires_at_ms_;
    executor_->renew(expires_at_ms_);
    send(protocol::make_message(ControlType::renewed, {{"lease_id", lease_id_}, {"expires_at_ms", expires_at_ms_}}));
    log("lease " + std::to_string(lease_id_) + " renewed");
  } catch (const MessageError& e) {
    answer_error(e.code(), e.what());
  }
}

// The executor's answers to the pending request, as far as they have arrived (no waiting): late
// answers to earlier requests are skipped; its final usage means no answer is coming.
void LeaseSession::on_reports() {
  while (pending_) {
    auto r = executor_->reports().next(net::Clock::now());
    if (!r) {
      if (executor_->reports().closed()) answer_pending_error(ControlErrc::executor_failed, "no answer from the executor");
      return;
    }
    if (r->event == Event::usage) {
      try {
        final_usage_ = r->as<protocol::FinalUsageReport>();
      } catch (const MessageError&) {
        final_usage_ = protocol::FinalUsageReport{};
      }
      on_pending_deadline();
      return;
    }
    if (r->seq() != pending_->seq) continue;
    const Pending p = *pending_;
    try {
      if (p.kind == ControlType::usage && r->event == Event::usage_now) {
        auto usage = r->as<protocol::UsageNowReport>().usage;
        pending_.reset();
        send(protocol::make_message(ControlType::usage_report, usage));
      } else if (p.kind == ControlType::create_region && r->event == Event::region) {
        auto region = r->as<protocol::RegionReport>().region;
        pending_.reset();
        send(protocol::make_message(ControlType::region_created, region));
      } else if (p.kind == ControlType::create_region && r->event == Event::region_failed) {
        // The node could not map or register it (memory, locked-memory limit).
        answer_pending_error(ControlErrc::no_capacity, r->as<protocol::RegionFailedReport>().detail);
      }
    } catch (const MessageError& e) {
      answer_pending_error(ControlErrc::executor_failed, std::string("a malformed answer from the executor: ") + e.what());
    }
  }
}

void LeaseSession::on_pending_deadline() {
  answer_pending_error(ControlErrc::executor_failed,
                       pending_ && pending_->kind == ControlType::usage ? "no usage from the executor" : "no answer from the executor");
}

void LeaseSession::answer_pending_error(ControlErrc code, const std::string& what) {
  if (!pending_) return;
  if (pending_->kind == ControlType::create_region) memory_left_ += pending_->bytes;
  pending_.reset();
  answer_error(code, what);
}

void LeaseSession::finish(LeaseEndReason reason, std::string detail) {
  end_.reason = reason;
  end_.detail = std::move(detail);
  pending_.reset();  // the client hears lease_ended instead of its answer
  state_ = State::ending;
}

// --- ending: everything of the lease gone, the cores free, the broker and the client told -----

void LeaseSession::end() {
  if (!replenished_) d_.replenish_standby();
  const int st = executor_->terminate();
  if (cgroup_) {  // every process of the lease killed, its cgroup gone
    if (auto left = cgroup_->close(); !left.empty()) log("lease " + std::to_string(lease_id_) + ": cgroup not removed: " + left);
    cgroup_.reset();
  }
  if (!usage_read_) {
    if (!final_usage_) final_usage_ = executor_->reports().usage(net::deadline_in(1s));
    if (final_usage_) end_.usage = final_usage_->usage;
  }
  // The cores are free, here and at the broker, before the client hears the lease ended: it
  // can lease them again at once (a client that releases and leases again, as an MPI job
  // between two rfaas_mpi_init, would otherwise race the report).
  d_.leases_.release(lease_id_, served_until_ms_);
  reserved_ = false;
  std::future<void> reported;
  if (d_.broker_) {
    // Measured here, not reported by the executor (which runs the lease's code).
    const auto& t = req_.token;
    auto served_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - served_since_).count();
    nlohmann::json served{{"cores", req_.params.workers}, {"memory_bytes", t.memory_bytes}, {"served_ms", served_ms}, {"uid", t.uid}};
    auto report = [broker = d_.broker_.get(), id = lease_id_, usage = end_.usage, served, reason = end_.reason] {
      broker->report_usage(id, usage, served, reason);
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
  if (end_.reason != LeaseEndReason::client_gone) {
    try {
      send(protocol::make_message(ControlType::lease_ended, end_));
    } catch (const net::NetError&) {
    }
  }
  if (reported.valid()) reported.wait();  // report_usage catches what it throws
  const bool explained = end_.reason == LeaseEndReason::memory_exceeded || !executor_->reports().fault().empty();
  log("lease " + std::to_string(lease_id_) + " ended: " + to_string(end_.reason) + (explained ? " (" + end_.detail + ")" : "") +
      ", executor " + describe_exit(st) + ", " + std::to_string(end_.usage.invocations) + " invocations");
  state_ = State::done;
}

// --- refused: before the lease was served --------------------------------------------------------

void LeaseSession::stop_executor() noexcept {
  cgroup_.reset();  // every process of the lease killed first
  executor_.reset();
}

void LeaseSession::refuse(const MessageError& e) {
  stop_executor();  // the cores are not free while anything of the lease still runs on them
  log(std::string("refused a client: ") + to_string(e.code()) + ": " + e.what());
  // A genuine lease whose deploy failed is spent, and the broker hears that it ended, so that
  // its cores are not held until the lease expires (unless another session serves it).
  if (genuine_until_ms_ > 0 && served_until_ms_ == 0) {
    bool spent = false;
    if (reserved_) {
      d_.leases_.release(lease_id_, genuine_until_ms_);
      reserved_ = false;
      spent = true;
    } else if (e.code() != ControlErrc::lease_active && e.code() != ControlErrc::lease_ended) {
      spent = d_.leases_.spend(lease_id_, genuine_until_ms_);
    }
    if (spent && d_.broker_)
      d_.broker_->report_usage(lease_id_, {},
                               {{"cores", 0}, {"memory_bytes", 0}, {"served_ms", 0}, {"refused", to_string(e.code())}},
                               LeaseEndReason::deploy_refused);
  }
  try {
    answer_error(e.code(), e.what());
  } catch (const net::NetError&) {
  }
  state_ = State::done;
}

}  // namespace rfaas::daemon
