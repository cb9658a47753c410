#include "protocol/broker_messages.hpp"

#include "protocol/json_fields.hpp"

namespace rfaas::protocol {

const char* to_string(BrokerType t) {
  switch (t) {
    case BrokerType::register_node: return "register";
    case BrokerType::registered: return "registered";
    case BrokerType::lease: return "lease";
    case BrokerType::lease_granted: return "lease_granted";
    case BrokerType::renew: return "renew";
    case BrokerType::lease_renewed: return "lease_renewed";
    case BrokerType::release: return "release";
    case BrokerType::released: return "released";
    case BrokerType::lease_usage: return "lease_usage";
    case BrokerType::recorded: return "recorded";
    case BrokerType::drain: return "drain";
    case BrokerType::draining: return "draining";
    case BrokerType::status: return "status";
    case BrokerType::admin: return "admin";
    case BrokerType::done: return "done";
    case BrokerType::error: return "error";
  }
  return "error";
}

std::optional<BrokerType> broker_type_from_string(const std::string& s) {
  for (uint8_t i = 0; i <= static_cast<uint8_t>(BrokerType::error); ++i)
    if (s == to_string(static_cast<BrokerType>(i))) return static_cast<BrokerType>(i);
  return std::nullopt;
}

bool ControlMessage::is(BrokerType t) const { return type == to_string(t); }

using detail::field;
using detail::is_hex;
using detail::malformed;

std::string NodeRegistration::canonical() const {
  std::string text = "rfaas-register-v4\n" + purpose + "\n" + node + "\n" + control_address + "\n" +
                     std::to_string(cores) + "\n" + std::to_string(memory_bytes) + "\n" + std::to_string(timestamp_ms) +
                     "\n" + std::to_string(incarnation) + "\n" + std::to_string(sequence);
  for (const auto& l : serving) {
    text.append("\nserving ").append(std::to_string(l.lease_id));
    text.append(" ").append(std::to_string(l.cores));
    text.append(" ").append(std::to_string(l.memory_bytes));
    text.append(" ").append(std::to_string(l.uid));
  }
  return text;
}

void NodeRegistration::sign(const ClusterSecret& secret) { mac = secret.derive(kNodeKey).sign(canonical()); }

bool NodeRegistration::verify(const ClusterSecret& secret) const {
  return secret.derive(kNodeKey).verify(canonical(), mac);
}

void to_json(nlohmann::json& j, const NodeRegistration& m) {
  j = {{"node", m.node}, {"control_address", m.control_address}, {"cores", m.cores},
       {"memory_bytes", m.memory_bytes}, {"timestamp_ms", m.timestamp_ms}, {"mac", m.mac}, {"purpose", m.purpose},
       {"incarnation", m.incarnation}, {"sequence", m.sequence}};
  auto& serving = j["serving"] = nlohmann::json::array();
  for (const auto& l : m.serving)
    serving.push_back({{"lease_id", l.lease_id}, {"cores", l.cores}, {"memory_bytes", l.memory_bytes}, {"uid", l.uid}});
}

void from_json(const nlohmann::json& j, NodeRegistration& m) {
  m.node = field<std::string>(j, "node");
  m.control_address = field<std::string>(j, "control_address");
  m.cores = field<uint32_t>(j, "cores");
  m.memory_bytes = field<uint64_t>(j, "memory_bytes");
  m.timestamp_ms = field<int64_t>(j, "timestamp_ms");
  m.mac = field<std::string>(j, "mac");
  m.purpose = field<std::string>(j, "purpose");
  m.incarnation = field<uint64_t>(j, "incarnation");
  m.sequence = field<uint64_t>(j, "sequence");
  if (m.node.empty() || m.node.size() > 255) malformed("node name must be 1..255 bytes");
  if (m.purpose.empty() || m.purpose.size() > 128) malformed("registration purpose must be 1..128 bytes");
  if (!is_hex(m.mac, 64)) malformed("registration mac must be 64 lowercase hex digits");
  m.serving.clear();
  if (j.contains("serving")) {
    const auto& a = j.at("serving");
    if (!a.is_array() || a.size() > kMaxServedLeases) malformed("serving must be an array of at most 4096 leases");
    for (const auto& l : a) {
      if (!l.is_object()) malformed("serving must hold leases");
      m.serving.push_back({field<uint64_t>(l, "lease_id"), field<uint32_t>(l, "cores"), field<uint64_t>(l, "memory_bytes"),
                           field<uint32_t>(l, "uid")});
    }
  }
}

void to_json(nlohmann::json& j, const LeaseAsk& m) {
  j = {{"cores", m.cores}, {"memory_bytes", m.memory_bytes}, {"duration_ms", m.duration_ms}, {"client", m.client},
       {"avoid_nodes", m.avoid_nodes}, {"job", m.job}};
}

void from_json(const nlohmann::json& j, LeaseAsk& m) {
  m.cores = field<uint32_t>(j, "cores");
  m.memory_bytes = field<uint64_t>(j, "memory_bytes");
  m.duration_ms = field<int64_t>(j, "duration_ms");
  m.client = field<std::string>(j, "client");
  m.job = field<std::string>(j, "job");
  if (m.job.size() > 64) malformed("job must be at most 64 bytes");
  if (!j.contains("avoid_nodes") || !j.at("avoid_nodes").is_array()) malformed("field 'avoid_nodes' must be an array");
  m.avoid_nodes.clear();
  for (auto& n : j.at("avoid_nodes")) {
    if (!n.is_string()) malformed("avoid_nodes must hold node names");
    m.avoid_nodes.push_back(n.get<std::string>());
  }
  if (m.cores == 0 || m.duration_ms <= 0) malformed("a lease needs at least one core and a positive duration");
}

std::string usage_report_purpose(uint64_t lease_id, const nlohmann::json& usage, const nlohmann::json& served,
                                 const std::string& reason) {
  const std::string text = usage.dump() + "\n" + served.dump() + "\n" + reason;
  return "lease_usage:" + std::to_string(lease_id) + ":" + sha256_hex(text.data(), text.size());
}

std::string request_digest(const std::string& type, const nlohmann::json& body) {
  std::string text = "rfaas-request-v1\n" + type + "\n";
  if (body.is_object() && body.contains("credential")) {
    nlohmann::json rest = body;
    rest.erase("credential");
    text += rest.dump();
  } else {
    text += body.dump();
  }
  return sha256_hex(text.data(), text.size());
}

void to_json(nlohmann::json& j, const AdminCommand& m) { j = {{"command", m.command}, {"node", m.node}}; }

void from_json(const nlohmann::json& j, AdminCommand& m) {
  m.command = field<std::string>(j, "command");
  m.node = field<std::string>(j, "node");
}

void to_json(nlohmann::json& j, const LeaseRenewAsk& m) { j = {{"token", m.token}, {"duration_ms", m.duration_ms}}; }

void from_json(const nlohmann::json& j, LeaseRenewAsk& m) {
  if (!j.contains("token")) malformed("missing field 'token'");
  m.token = j.at("token").get<LeaseToken>();
  m.duration_ms = field<int64_t>(j, "duration_ms");
  if (m.duration_ms <= 0) malformed("a renewal needs a positive duration");
}

void to_json(nlohmann::json& j, const LeaseGranted& m) {
  j = {{"lease_id", m.lease_id}, {"daemon_address", m.daemon_address}, {"token", m.token},
       {"expires_at_ms", m.expires_at_ms}};
}

void from_json(const nlohmann::json& j, LeaseGranted& m) {
  m.lease_id = field<uint64_t>(j, "lease_id");
  m.daemon_address = field<std::string>(j, "daemon_address");
  m.token = field<std::string>(j, "token");
  m.expires_at_ms = field<int64_t>(j, "expires_at_ms");
}

}  // namespace rfaas::protocol
