#include "broker.hpp"

#include <pwd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

namespace rfaas::broker {

using protocol::ControlErrc;
using protocol::MessageError;
using namespace std::chrono_literals;

namespace {
void log(const std::string& line) { std::fprintf(stderr, "rfaas-broker: %s\n", line.c_str()); }

LeaseBook replayed_book(const std::string& path, Journal::ReplayResult* result) {
  LeaseBook book;
  *result = Journal::replay(path, book);
  return book;
}
}  // namespace

uint32_t operator_uid(const std::string& user) {
  if (!user.empty() && user.find_first_not_of("0123456789") == std::string::npos) return static_cast<uint32_t>(std::stoul(user));
  struct passwd pw {}, *found = nullptr;
  char buf[4096];
  if (getpwnam_r(user.c_str(), &pw, buf, sizeof buf, &found) != 0 || !found)
    throw std::runtime_error("operator '" + user + "' is not a user of this host");
  return static_cast<uint32_t>(found->pw_uid);
}

BrokerConfig BrokerConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read config " + path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error("config " + path + " is not a JSON object");
  BrokerConfig c;
  for (auto& [key, value] : j.items()) {
    if (key == "listen") c.listen = value.get<std::string>();
    else if (key == "secret_file") c.secret_file = value.get<std::string>();
    else if (key == "journal") c.journal_path = value.get<std::string>();
    else if (key == "heartbeat_timeout_ms") c.heartbeat_timeout_ms = value.get<uint32_t>();
    else if (key == "control_timeout_ms") c.control_timeout_ms = value.get<uint32_t>();
    else if (key == "max_lease_ms") c.max_lease_ms = value.get<int64_t>();
    else if (key == "max_cores_per_lease") c.max_cores_per_lease = value.get<uint32_t>();
    else if (key == "max_cores_per_user") c.max_cores_per_user = value.get<uint32_t>();
    else if (key == "max_lease_lifetime_ms") c.max_lease_lifetime_ms = value.get<int64_t>();
    else if (key == "max_memory_per_core_bytes") c.max_memory_per_core_bytes = value.get<uint64_t>();
    else if (key == "journal_compact_records") c.journal_compact_records = value.get<uint64_t>();
    else if (key == "munge_socket") c.munge_socket = value.get<std::string>();
    else if (key == "operators") {
      for (auto& o : value) c.operator_uids.push_back(operator_uid(o.is_string() ? o.get<std::string>() : std::to_string(o.get<uint32_t>())));
    }
    else if (key == "max_connections") c.sessions.max_sessions = value.get<uint32_t>();
    else if (key == "max_connections_per_peer") c.sessions.max_sessions_per_peer = value.get<uint32_t>();
    else if (key == "max_connections_per_identity") c.sessions.max_sessions_per_identity = value.get<uint32_t>();
    else if (key == "first_frame_timeout_ms") c.sessions.first_frame_timeout_ms = value.get<uint32_t>();
    else if (key == "audiences") c.audiences = value.get<std::vector<std::string>>();
    else throw std::runtime_error("config " + path + ": unknown key '" + key + "'");
  }
  return c;
}

LeaseBroker::LeaseBroker(BrokerConfig config)
    : config_(std::move(config)),
      secret_(protocol::ClusterSecret::load(config_.secret_file)),
      book_(replayed_book(config_.journal_path, &replayed_)),
      journal_(config_.journal_path) {
  if (config_.munge_socket.empty()) config_.munge_socket = auth::client_socket();
  journal_.set_records_since_snapshot(replayed_.records);
  auto hp = net::HostPort::parse(config_.listen);
  listener_ = net::TcpListener::bind(hp.host, hp.port);
}

namespace {
// Who the request being handled on this session's thread proved to be ("uid:N", "node:NAME"),
// for its session's admission (SessionAdmission::authenticated).
thread_local std::string t_proved;
// The address this session's client reached ("host:port", the session's local end): what its
// requests must name as their audience. Empty outside a session (handle() called directly).
thread_local std::string t_reached;
}  // namespace

bool LeaseBroker::registration_valid(const protocol::NodeRegistration& r, const std::string& purpose,
                                     std::string* why) const {
  if (r.purpose != purpose) {
    *why = "registration of '" + r.node + "' is for '" + r.purpose + "', not '" + purpose + "'";
    return false;
  }
  if (!r.verify(secret_)) {
    *why = "registration of '" + r.node + "' does not verify";
    return false;
  }
  int64_t skew = protocol::unix_now_ms() - r.timestamp_ms;
  if (skew > protocol::kRegistrationSkewMs || skew < -protocol::kRegistrationSkewMs) {
    *why = "registration of '" + r.node + "' is stale or from the future";
    return false;
  }
  // Last, once it is known genuine: a forgery cannot use up a node's numbers.
  if (auto v = replay_.take(r.node, r.incarnation, r.sequence, r.timestamp_ms); v != ReplayGuard::Verdict::fresh) {
    *why = "registration of '" + r.node + "' is " + to_string(v);
    return false;
  }
  t_proved = "node:" + r.node;
  return true;
}

protocol::LeaseToken LeaseBroker::token_for(const LeaseRecord& rec, int64_t expires_at_ms) const {
  protocol::LeaseToken t{rec.lease_id, rec.node, rec.cores, rec.memory_bytes, expires_at_ms, rec.client,
                         rec.uid,      rec.gid,  rec.job,   ""};
  t.sign(secret_);
  return t;
}

void LeaseBroker::check_duration(int64_t duration_ms) const {
  if (duration_ms <= 0 || duration_ms > config_.max_lease_ms)
    throw MessageError(ControlErrc::policy, "duration_ms must be 1.." + std::to_string(config_.max_lease_ms) +
                                                " on this broker, not " + std::to_string(duration_ms));
}

auth::Identity LeaseBroker::authenticate(const protocol::ControlMessage& msg) const {
  try {
    auto who = auth::authenticate(msg.type, msg.body, config_.munge_socket);
    // Meant for this broker: a fake broker relaying a user's request to us gets nothing from
    // it (the audience is in what the credential signs).
    if (!t_reached.empty()) {
      const std::string meant = msg.body.value(protocol::kAudienceField, std::string());
      if (meant != t_reached &&
          std::find(config_.audiences.begin(), config_.audiences.end(), meant) == config_.audiences.end())
        throw MessageError(ControlErrc::not_authenticated,
                           meant.empty() ? "the request names no broker it is meant for (an older client?)"
                                         : "the request was meant for the broker at " + meant + ", not this one at " + t_reached);
    }
    t_proved = "uid:" + std::to_string(who.uid);
    return who;
  } catch (const auth::AuthError& e) {
    if (e.code() == auth::AuthErrc::unavailable) {
      log(std::string("cannot check a credential: ") + e.what());
      throw MessageError(ControlErrc::internal, "the broker cannot check credentials (munged unreachable)");
    }
    throw MessageError(ControlErrc::not_authenticated, e.what());
  }
}

bool LeaseBroker::is_operator(const auth::Identity& who) const {
  return who.uid == 0 || std::find(config_.operator_uids.begin(), config_.operator_uids.end(), who.uid) !=
                             config_.operator_uids.end();
}

void LeaseBroker::check_owner(const auth::Identity& who, const LeaseRecord& lease) const {
  if (who.uid != lease.uid && !is_operator(who))
    throw MessageError(ControlErrc::not_permitted, "lease " + std::to_string(lease.lease_id) + " belongs to uid " +
                                                       std::to_string(lease.uid) + ", not to uid " + std::to_string(who.uid));
}

std::string LeaseBroker::release_locked(uint64_t lease_id, const std::string& reason) {
  auto lease = book_.lease(lease_id);
  if (!lease) return "not held";
  journal_.release(lease_id, reason);
  book_.apply_release(lease_id);
  // The node's held heartbeat is answered now: its daemon ends the lease without waiting.
  auto& w = node_waits_[lease->node];
  ++w.generation;
  w.changed.notify_all();
  return reason;
}

std::string LeaseBroker::heartbeat(const protocol::ControlMessage& msg, int64_t now) {
  // A daemon's heartbeat is {"registration": ..., "hold_ms": ...}; a bare registration is one
  // that wants its answer at once.
  const bool wrapped = msg.body.contains("registration");
  auto r = wrapped ? msg.body.at("registration").get<protocol::NodeRegistration>() : msg.as<protocol::NodeRegistration>();
  uint32_t hold_ms = wrapped ? msg.body.value("hold_ms", 0u) : 0;
  hold_ms = std::min(hold_ms, config_.heartbeat_timeout_ms / 2);
  std::string why;
  if (!registration_valid(r, "register", &why)) throw MessageError(ControlErrc::bad_token, why);
  std::unique_lock lock(mutex_);
  bool known = book_.nodes().count(r.node) > 0;
  const bool returning = known && book_.nodes().at(r.node).state == NodeInfo::State::lost;
  book_.upsert_node({r.node, r.control_address, r.cores, r.memory_bytes, NodeInfo::State::active, now, false, r.serving,
                    r.timestamp_ms, {}});
  if (!known) log("node " + r.node + " registered: " + std::to_string(r.cores) + " cores at " + r.control_address);
  if (returning) {
    // Back from lost: its lease set is confirmed now. What it no longer serves (its daemon
    // restarted, the lease ended there while cut off) is over here too; the rest goes on.
    size_t ended = 0;
    for (const auto& l : book_.leases_on(r.node)) {
      const bool served = std::any_of(r.serving.begin(), r.serving.end(),
                                      [&](const protocol::ServedLease& s) { return s.lease_id == l.lease_id; });
      if (!served) {
        release_locked(l.lease_id, "ended: its node came back without it");
        ++ended;
      }
    }
    log("node " + r.node + " is back: " + std::to_string(book_.leases_on(r.node).size()) + " leases go on, " +
        std::to_string(ended) + " it no longer served ended");
  }
  // Held until one of the node's leases ends here, or hold_ms: unless the daemon serves a lease
  // that is not held here, which it must end now.
  if (hold_ms > 0 && book_.ending_on(r.node).empty()) {
    auto& w = node_waits_[r.node];
    const uint64_t seen = w.generation;
    w.changed.wait_for(lock, std::chrono::milliseconds(hold_ms),
                       [&] { return w.generation != seen || shutdown_.load(); });
  }
  nlohmann::json held = nlohmann::json::array();
  for (const auto& l : book_.leases_on(r.node)) held.push_back(l.lease_id);
  return protocol::make_message(protocol::BrokerType::registered, {{"heartbeat_interval_ms", config_.heartbeat_timeout_ms / 4}, {"held", held}});
}

std::string LeaseBroker::handle(const std::vector<uint8_t>& frame) {
  std::string reply = dispatch(frame);
  // Durable before it is answered: what this request journaled (with whatever other requests
  // wrote meanwhile) reaches the disk here, outside the lock, one fdatasync for many.
  try {
    journal_.sync();
  } catch (const JournalError& e) {
    log_journal_error(e);
    return protocol::make_error(ControlErrc::internal, "the broker cannot record the change");
  }
  return reply;
}

// Each message type's handler: a table, not a chain of comparisons.
const std::map<protocol::BrokerType, LeaseBroker::Handler>& LeaseBroker::handlers() {
  using T = protocol::BrokerType;
  static const std::map<T, Handler> table = {
      {T::register_node, &LeaseBroker::heartbeat}, {T::lease, &LeaseBroker::on_lease},
      {T::release, &LeaseBroker::on_release},      {T::lease_usage, &LeaseBroker::on_lease_usage},
      {T::drain, &LeaseBroker::on_drain},          {T::renew, &LeaseBroker::on_renew},
      {T::admin, &LeaseBroker::on_admin},          {T::status, &LeaseBroker::on_status},
  };
  return table;
}

std::string LeaseBroker::dispatch(const std::vector<uint8_t>& frame) {
  try {
    auto msg = protocol::ControlMessage::parse(frame);
    const auto type = protocol::broker_type_from_string(msg.type);
    const auto handler = type ? handlers().find(*type) : handlers().end();
    if (handler == handlers().end())
      throw MessageError(ControlErrc::malformed, "unknown message type '" + msg.type + "'");
    return (this->*handler->second)(msg, protocol::unix_now_ms());
  } catch (const MessageError& e) {
    return protocol::make_error(e.code(), e.what());
  } catch (const JournalError& e) {
    log_journal_error(e);
    return protocol::make_error(ControlErrc::internal, "the broker cannot record the change");
  } catch (const std::exception& e) {
    return protocol::make_error(ControlErrc::malformed, e.what());
  }
}

std::string LeaseBroker::on_lease(const protocol::ControlMessage& msg, int64_t now) {
  auto ask = msg.as<protocol::LeaseAsk>();
  auto who = authenticate(msg);
  // Policy, checked before any arithmetic on what the client sent.
  check_duration(ask.duration_ms);
  if (config_.max_cores_per_lease && ask.cores > config_.max_cores_per_lease)
    throw MessageError(ControlErrc::policy, std::to_string(ask.cores) + " cores asked, this broker grants at most " +
                                                std::to_string(config_.max_cores_per_lease) + " per lease");
  std::lock_guard lock(mutex_);
  if (config_.max_cores_per_user && book_.cores_of_user(who.uid) + ask.cores > config_.max_cores_per_user)
    throw MessageError(ControlErrc::policy, "uid " + std::to_string(who.uid) + " holds " +
                                                std::to_string(book_.cores_of_user(who.uid)) + " cores; this broker grants at most " +
                                                std::to_string(config_.max_cores_per_user) + " per user");
  LeaseRequest req{ask.cores, ask.memory_bytes, ask.duration_ms, ask.client, ask.avoid_nodes, who.uid, who.gid, ask.job,
                   config_.max_memory_per_core_bytes};
  PlaceRefusal refusal = PlaceRefusal::none;
  auto rec = book_.place(req, now, &refusal);
  if (!rec && refusal == PlaceRefusal::memory_share)
    throw MessageError(ControlErrc::policy,
                       std::to_string(ask.memory_bytes) + " bytes asked for " + std::to_string(ask.cores) +
                           " cores; this broker grants at most " +
                           (config_.max_memory_per_core_bytes
                                ? std::to_string(config_.max_memory_per_core_bytes) + " bytes per core"
                                : std::string("a node's memory over its cores, per core")));
  if (!rec)
    throw MessageError(ControlErrc::no_capacity, "no active node has " + std::to_string(ask.cores) +
                                                     " free cores and the memory asked for");
  journal_.grant(*rec);  // synced in handle(), before it is answered
  book_.apply_grant(*rec);
  auto t = token_for(*rec, rec->expires_at_ms);
  protocol::LeaseGranted g{rec->lease_id, book_.nodes().at(rec->node).control_address, nlohmann::json(t).dump(),
                           rec->expires_at_ms};
  return protocol::make_message(protocol::BrokerType::lease_granted, g);
}

std::string LeaseBroker::on_release(const protocol::ControlMessage& msg, int64_t /*now*/) {
  uint64_t id = msg.body.value("lease_id", uint64_t{0});
  auto who = authenticate(msg);
  std::lock_guard lock(mutex_);
  if (auto rec = book_.lease(id)) check_owner(who, *rec);
  release_locked(id, "released");
  return protocol::make_message(protocol::BrokerType::released, {{"lease_id", id}});
}

std::string LeaseBroker::on_lease_usage(const protocol::ControlMessage& msg, int64_t /*now*/) {
  if (!msg.body.contains("registration")) throw MessageError(ControlErrc::malformed, "usage without registration");
  auto r = msg.body.at("registration").get<protocol::NodeRegistration>();
  uint64_t id = msg.body.value("lease_id", uint64_t{0});
  std::string why;
  const nlohmann::json served_json = msg.body.value("served", nlohmann::json());
  const std::string reason = msg.body.value("reason", std::string("unknown"));
  if (!registration_valid(r, protocol::usage_report_purpose(id, msg.body.value("usage", nlohmann::json()), served_json, reason), &why))
    throw MessageError(ControlErrc::bad_token, why);
  auto usage = msg.body.at("usage").get<protocol::Usage>();
  // Accounting from the daemon's own measure; what the executor (the lease's code) said of
  // itself is kept apart, labelled as its word.
  UsageRecord record;
  record.reported = usage;
  std::optional<uint32_t> served_uid;  // whose, as the node's report (signed whole) says
  if (auto served = msg.body.find("served"); served != msg.body.end() && served->is_object()) {
    record.cores = served->value("cores", 0u);
    record.memory_bytes = served->value("memory_bytes", uint64_t{0});
    record.served_ms = served->value("served_ms", uint64_t{0});
    if (auto u = served->find("uid"); u != served->end() && u->is_number_unsigned()) served_uid = u->get<uint32_t>();
  }
  std::lock_guard lock(mutex_);
  auto lease = book_.lease(id);
  if (lease && lease->node != r.node) throw MessageError(ControlErrc::bad_token, "usage for a lease on another node");
  // Released here first: whose it was, as the node's signed report (or serving list) says. A
  // lease admitted and ended between two heartbeats is in no serving list.
  record.uid = lease ? lease->uid : served_uid.value_or(0);
  if (!lease && !served_uid)
    for (const auto& g : book_.ending_on(r.node))
      if (g.lease_id == id) record.uid = g.uid;
  // A reason this broker does not know (a daemon of another version) still ends the lease:
  // refusing the report would hold its cores until the lease expires.
  const auto known = protocol::lease_end_reason_from_string(reason);
  std::string ended = known ? protocol::to_string(*known) : "unknown reason '" + protocol::utf8_prefix(reason, 64) + "'";
  if (known == protocol::LeaseEndReason::deploy_refused && served_json.is_object() && served_json.contains("refused") &&
      served_json.at("refused").is_string())
    ended += ": " + protocol::utf8_prefix(served_json.at("refused").get<std::string>(), 64);
  release_locked(id, "ended: " + ended);  // journaled first
  book_.served_ended(r.node, id, r.timestamp_ms);  // its executor is gone there: its cores are free
  usage_[id] = record;
  return protocol::make_message(protocol::BrokerType::recorded, {{"lease_id", id}});
}

std::string LeaseBroker::on_drain(const protocol::ControlMessage& msg, int64_t /*now*/) {
  if (!msg.body.contains("registration")) throw MessageError(ControlErrc::malformed, "drain without registration");
  auto r = msg.body.at("registration").get<protocol::NodeRegistration>();
  std::string why;
  if (!registration_valid(r, "drain", &why)) throw MessageError(ControlErrc::bad_token, why);
  std::lock_guard lock(mutex_);
  if (book_.set_state(r.node, NodeInfo::State::draining)) log("node " + r.node + " draining");
  return protocol::make_message(protocol::BrokerType::draining, {{"node", r.node}});
}

std::string LeaseBroker::on_renew(const protocol::ControlMessage& msg, int64_t now) {
  auto ask = msg.as<protocol::LeaseRenewAsk>();
  auto who = authenticate(msg);
  check_duration(ask.duration_ms);
  if (!ask.token.verify(secret_)) throw MessageError(ControlErrc::bad_token, "lease token does not verify");
  std::lock_guard lock(mutex_);
  auto rec = book_.lease(ask.token.lease_id);
  if (!rec || rec->node != ask.token.executor)
    throw MessageError(ControlErrc::lease_expired, "lease " + std::to_string(ask.token.lease_id) + " is not held");
  check_owner(who, *rec);
  if (rec->expires_at_ms <= now) throw MessageError(ControlErrc::lease_expired, "lease has expired");
  // Never past its lifetime: a renewal that cannot move the expiry is refused by name.
  const int64_t last = rec->granted_at_ms + config_.max_lease_lifetime_ms;
  int64_t expires = std::min(std::max(rec->expires_at_ms, now + ask.duration_ms), std::max(last, rec->expires_at_ms));
  if (expires <= rec->expires_at_ms && now + ask.duration_ms > rec->expires_at_ms)
    throw MessageError(ControlErrc::policy, "lease " + std::to_string(rec->lease_id) + " reached its lifetime of " +
                                                std::to_string(config_.max_lease_lifetime_ms) +
                                                " ms on this broker: lease again");
  journal_.renew(rec->lease_id, expires);  // synced in handle(), before it is answered
  book_.apply_renew(rec->lease_id, expires);
  auto t = token_for(*rec, expires);
  auto node = book_.nodes().find(rec->node);
  protocol::LeaseGranted g{rec->lease_id, node == book_.nodes().end() ? "" : node->second.control_address,
                           nlohmann::json(t).dump(), expires};
  return protocol::make_message(protocol::BrokerType::lease_renewed, g);
}

std::string LeaseBroker::on_admin(const protocol::ControlMessage& msg, int64_t /*now*/) {
  auto cmd = msg.as<protocol::AdminCommand>();
  auto who = authenticate(msg);
  if (!is_operator(who))
    throw MessageError(ControlErrc::not_permitted, "uid " + std::to_string(who.uid) + " is not an operator of this broker");
  if (cmd.command != "drain_node" && cmd.command != "resume_node")
    throw MessageError(ControlErrc::malformed, "unknown operator command '" + cmd.command + "'");
  std::lock_guard lock(mutex_);
  bool drain = cmd.command == "drain_node";
  if (!book_.set_operator_drain(cmd.node, drain))
    throw MessageError(ControlErrc::malformed, "no node '" + cmd.node + "'");
  log("node " + cmd.node + (drain ? " drained by an operator (running leases continue)" : " resumed by an operator"));
  return protocol::make_message(protocol::BrokerType::done, {{"node", cmd.node}, {"command", cmd.command}});
}

std::string LeaseBroker::on_status(const protocol::ControlMessage& msg, int64_t now) {
  // Nodes for every user; leases and usage: a user's own, an operator's all.
  auto who = authenticate(msg);
  const bool all = is_operator(who);
  std::lock_guard lock(mutex_);
  nlohmann::json nodes = nlohmann::json::array(), leases = nlohmann::json::array(), usage = nlohmann::json::array();
  for (auto& [name, n] : book_.nodes())
    nodes.push_back({{"node", name}, {"address", n.control_address}, {"cores", n.cores}, {"memory_bytes", n.memory_bytes},
                     {"free_cores", book_.free_cores(name)},
                     {"state", n.drained_by_operator && n.state == NodeInfo::State::active ? "drained" : to_string(n.state)},
                     {"heartbeat_age_ms", now - n.last_heartbeat_ms}, {"ending", book_.ending_on(name).size()},
                     {"incarnation", replay_.position(name).first}, {"sequence", replay_.position(name).second}});
  for (auto& [id, l] : book_.leases())
    if (all || l.uid == who.uid) leases.push_back(l);
  for (auto& [id, u] : usage_) {
    if (!all && u.uid != who.uid) continue;
    usage.push_back({{"lease_id", id}, {"uid", u.uid}, {"cores", u.cores}, {"memory_bytes", u.memory_bytes},
                     {"served_ms", u.served_ms}, {"core_ms", u.cores * u.served_ms},
                     {"reported_by_executor", u.reported}});
  }
  return protocol::make_message(protocol::BrokerType::status, {{"nodes", nodes}, {"leases", leases}, {"usage", usage}});
}

void LeaseBroker::session(net::TcpStream& stream, net::SessionAdmission::Ticket ticket) {
  // A stranger has a short while for its first request; a session that proved who it is, the
  // control timeout between requests.
  auto wait = std::chrono::milliseconds(std::min(config_.control_timeout_ms, config_.sessions.first_frame_timeout_ms));
  bool proved = false;
  t_reached = stream.local_address();
  if (t_reached.empty()) t_reached = "(an address this broker could not tell)";  // fails closed: matches no audience
  try {
    for (;;) {
      auto frame = stream.recv_frame(protocol::kMaxControlFrame, net::deadline_in(wait));
      if (!proved) admission_.heard(ticket);  // spoken: a flood of silent ones goes before it
      t_proved.clear();
      std::string reply = handle(frame);
      bool over_cap = false;
      if (!t_proved.empty()) {
        over_cap = !admission_.authenticated(ticket, t_proved);
        proved = proved || !over_cap;
      }
      if (proved) wait = std::chrono::milliseconds(config_.control_timeout_ms);
      stream.send_frame(reply.data(), reply.size(), net::deadline_in(std::chrono::milliseconds(config_.control_timeout_ms)));
      if (over_cap) return;  // answered; that identity holds enough sessions already
    }
  } catch (const net::NetError& e) {
    if (e.code() == net::NetErrc::too_large) {
      std::string reply = protocol::make_error(ControlErrc::malformed, e.what());
      try {
        stream.send_frame(reply.data(), reply.size(), net::deadline_in(1s));
      } catch (...) {
      }
    }
  }
}

void LeaseBroker::sweep() {
  sweep_locked();
  try {
    journal_.sync();
  } catch (const JournalError& e) {
    log_journal_error(e);
  }
}

void LeaseBroker::log_journal_error(const JournalError& e) {
  // The sweeper retries every 200 ms: the same failure is logged once, not five times a second.
  std::lock_guard lock(journal_log_mutex_);
  if (e.what() == last_journal_error_) return;
  last_journal_error_ = e.what();
  log(std::string("journal: ") + e.what());
}

void LeaseBroker::sweep_locked() {
  std::lock_guard lock(mutex_);
  int64_t now = protocol::unix_now_ms();
  if (config_.journal_compact_records && journal_.records_since_snapshot() >= config_.journal_compact_records) {
    try {
      const uint64_t records = journal_.records_since_snapshot();
      journal_.compact(book_);
      log("journal compacted: " + std::to_string(records) + " records into a snapshot of " +
          std::to_string(book_.leases().size()) + " leases");
    } catch (const JournalError& e) {
      log_journal_error(e);  // the journal is as it was; tried again at the next sweep
    }
  }
  try {
    for (auto& l : book_.expired(now)) {
      release_locked(l.lease_id, "expired");
      log("lease " + std::to_string(l.lease_id) + " expired");
    }
    for (auto& [name, n] : book_.nodes()) {
      if (n.state == NodeInfo::State::lost || now - n.last_heartbeat_ms <= config_.heartbeat_timeout_ms) continue;
      book_.set_state(name, NodeInfo::State::lost);
      // Its leases stay held, cores and all: its daemon, cut off, may still serve them to their
      // tokens' expiry, so nothing of the node is granted again until it confirms its lease set
      // (its next heartbeat) or they expire. A partition costs capacity, never a core twice.
      log("node " + name + " lost (no heartbeat for " + std::to_string(now - n.last_heartbeat_ms) + " ms); its " +
          std::to_string(book_.leases_on(name).size()) + " leases are held until it returns or they expire");
    }
  } catch (const JournalError& e) {
    log_journal_error(e);
  }
}

void LeaseBroker::serve() {
  log("listening on " + address() + ", " + std::to_string(book_.leases().size()) + " leases from the journal (" +
      std::to_string(replayed_.records) + " records" + (replayed_.snapshot ? ", from a snapshot" : "") + (replayed_.torn_tail ? ", a torn tail of " + std::to_string(replayed_.truncated_bytes) + " bytes truncated" : "") + ")");
  std::thread sweeper([this] {
    while (!shutdown_.load()) {
      sweep();
      std::this_thread::sleep_for(200ms);
    }
  });
  net::serve_sessions(
      listener_, admission_, sessions_, [this] { return shutdown_.load(); },
      [this](net::TcpStream& s, net::SessionAdmission::Ticket ticket) { session(s, ticket); }, log);
  sweeper.join();
  // Sessions end within their read timeout; wait for them before the state goes away.
  sessions_.wait_none(std::chrono::milliseconds(config_.control_timeout_ms) + 1s);
  log("stopped");
}

}  // namespace rfaas::broker
