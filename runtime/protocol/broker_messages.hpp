// Messages to and from the lease broker (frames and framing as in control.hpp).
//   executor daemon -> broker: "register" NodeRegistration (also the heartbeat), "lease_usage"
//   client -> broker:          "lease" LeaseAsk, "renew" LeaseRenewAsk, "release" {lease_id}
//   executor daemon -> broker: "drain" {registration} when it shuts down
//   rfaas-ctl -> broker:       "status", "admin" AdminCommand
//   broker -> client:          "lease_granted" LeaseGranted, "released", "status" {...}, "error"
// Users' requests (lease, renew, release, status, admin) carry a MUNGE credential in the body's
// "credential" field whose payload is request_digest() of the rest of the message
// (runtime/auth): the broker learns who asks, and the credential is good for that request only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/control.hpp"
#include "protocol/lease_token.hpp"

namespace rfaas::protocol {

// The broker's message types (the header comment above says who sends which). "status" is both
// rfaas-ctl's question and the broker's answer.
enum class BrokerType : uint8_t {
  register_node,  // "register": a daemon's registration, also its heartbeat
  registered,
  lease,
  lease_granted,
  renew,
  lease_renewed,
  release,
  released,
  lease_usage,
  recorded,
  drain,
  draining,
  status,
  admin,
  done,
  error,
};
const char* to_string(BrokerType);
std::optional<BrokerType> broker_type_from_string(const std::string&);
inline std::string make_message(BrokerType type, nlohmann::json body = nlohmann::json::object()) {
  return make_message(to_string(type), std::move(body));
}

// A daemon's registration and heartbeat, and the credential of its other messages, signed with
// the cluster secret's kNodeKey key. `purpose` binds it to one message: "register", "drain",
// or "lease_usage:<lease id>" (the broker refuses it for any other), so a registration seen on
// the wire is not a credential for draining the node or ending its leases. The timestamp bounds
// replays: the broker refuses registrations more than kRegistrationSkewMs old or ahead.
// A lease a daemon is serving, as its heartbeats tell the broker (signed with them): the broker
// counts its cores and memory as taken until the daemon no longer serves it, whatever its own
// book says (a lease released at the broker holds its core until its executor is gone there).
struct ServedLease {
  uint64_t lease_id = 0;
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  uint32_t uid = 0;
  bool operator==(const ServedLease&) const = default;
};
inline constexpr size_t kMaxServedLeases = 4096;

struct NodeRegistration {
  std::string node;
  std::string control_address;
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  int64_t timestamp_ms = 0;
  std::string mac;
  std::string purpose = "register";
  std::vector<ServedLease> serving;  // a heartbeat's: the leases the daemon serves as it sends it
  // Against replays: which start of the daemon signed it (any number, new at each start) and
  // its place among that start's messages (1, 2, ...). The broker takes each pair once.
  uint64_t incarnation = 0;
  uint64_t sequence = 0;

  std::string canonical() const;
  void sign(const ClusterSecret& secret);
  bool verify(const ClusterSecret& secret) const;
};
inline constexpr int64_t kRegistrationSkewMs = 60'000;
// What a daemon's usage report signs as its registration's purpose: the lease and a digest of
// everything it says of it (the executor's word, the daemon's measure, the reason), so that no
// part of the report can be changed on the way (whose usage, how much).
std::string usage_report_purpose(uint64_t lease_id, const nlohmann::json& usage, const nlohmann::json& served,
                                 const std::string& reason);

// rfaas-ctl -> broker: an operator's command on a node ("drain_node": no new leases on it,
// running ones continue; "resume_node": leasable again). Its MUNGE credential must be root's or
// a configured operator's.
struct AdminCommand {
  std::string command;
  std::string node;
};

// What a request's credential carries: SHA-256 over "rfaas-request-v1", the type and the body
// as compact JSON (keys sorted), without its "credential" field.
std::string request_digest(const std::string& type, const nlohmann::json& body);
// Every user's request names the broker it is meant for: the address ("host:port") the client
// connected to, in this body field, covered by the digest. A broker takes only requests meant
// for it, so a fake broker that relays a user's request gets nothing from it.
inline constexpr const char* kAudienceField = "audience";

struct LeaseAsk {
  uint32_t cores = 1;
  uint64_t memory_bytes = 1ull << 30;
  int64_t duration_ms = 600'000;
  std::string client;
  std::vector<std::string> avoid_nodes;
  std::string job;  // SLURM_JOB_ID of the asking process, if it runs in a Slurm job
};

// Client -> broker: extend a lease it holds (the current token proves it), to now + duration.
struct LeaseRenewAsk {
  LeaseToken token;
  int64_t duration_ms = 600'000;
};

struct LeaseGranted {
  uint64_t lease_id = 0;
  std::string daemon_address;
  std::string token;  // the signed LeaseToken as JSON text
  int64_t expires_at_ms = 0;
};

void to_json(nlohmann::json& j, const NodeRegistration& m);
void to_json(nlohmann::json& j, const LeaseRenewAsk& m);
void to_json(nlohmann::json& j, const AdminCommand& m);
void from_json(const nlohmann::json& j, AdminCommand& m);
void from_json(const nlohmann::json& j, LeaseRenewAsk& m);
void from_json(const nlohmann::json& j, NodeRegistration& m);
void to_json(nlohmann::json& j, const LeaseAsk& m);
void from_json(const nlohmann::json& j, LeaseAsk& m);
void to_json(nlohmann::json& j, const LeaseGranted& m);
void from_json(const nlohmann::json& j, LeaseGranted& m);

}  // namespace rfaas::protocol
