// The broker's state: the executor nodes it knows and the leases it has granted on them.
// Pure bookkeeping, no I/O: the broker journals a change before it applies it here.
//
// Placement policy (best fit): among active nodes, not drained by an operator and not in the
// request's avoid list, that have enough free cores and memory, the one with the fewest free
// cores; ties go to the node name that sorts first. Best fit keeps whole nodes free for large requests, and the tie rule
// makes placement deterministic (and testable).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/broker_messages.hpp"

namespace rfaas::broker {

struct NodeInfo {
  enum class State : uint8_t { active, draining, lost };
  std::string name;
  std::string control_address;  // the executor daemon's host:port
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  State state = State::active;
  int64_t last_heartbeat_ms = 0;
  bool drained_by_operator = false;  // rfaas-ctl drain: kept across heartbeats until resume
  // What its daemon said it serves, at its last heartbeat (less the leases it reported ended
  // since). A lease served there but not held here (released, expired, revoked here before its
  // executor was gone) still takes its cores and memory: nothing is granted twice.
  std::vector<protocol::ServedLease> serving;
  // When its daemon signed that heartbeat (the daemon's clock): an older heartbeat, overtaken
  // on the way, does not replace a newer one's list.
  int64_t signed_at_ms = 0;
  // Leases its daemon reported ended, by when it signed the report: a heartbeat signed before
  // (its list taken before the end) must not bring them back. Forgotten once a later one is in.
  std::map<uint64_t, int64_t> reported_ended;
};
const char* to_string(NodeInfo::State);

struct LeaseRecord {
  uint64_t lease_id = 0;
  std::string node;
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  int64_t expires_at_ms = 0;
  std::string client;
  // The owner, as MUNGE authenticated it: only they (or an operator) renew or release it.
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string job;  // the owner's Slurm job, if any
  // When it was granted: renewals never take it past granted_at_ms + the broker's lifetime cap.
  int64_t granted_at_ms = 0;
};
void to_json(nlohmann::json& j, const LeaseRecord& r);
void from_json(const nlohmann::json& j, LeaseRecord& r);

struct LeaseRequest {
  uint32_t cores = 1;
  uint64_t memory_bytes = 0;
  int64_t duration_ms = 0;
  std::string client;
  std::vector<std::string> avoid_nodes;  // e.g. the client's own node
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string job;
  // Policy: the most memory per core asked (0: the node's own share, its memory over its cores).
  uint64_t max_memory_per_core = 0;
};

// Why place() found no node.
enum class PlaceRefusal : uint8_t { none, full, memory_share };

class LeaseBook {
 public:
  // Registration and heartbeats: adds or refreshes a node (its state becomes active). Its
  // serving list is taken unless an already applied heartbeat was signed later, less the
  // leases reported ended at or after it was signed.
  void upsert_node(const NodeInfo& node);
  // The node's daemon reported the lease ended (its executor gone), in a report it signed at
  // `signed_at_ms`: no longer served there.
  void served_ended(const std::string& node, uint64_t lease_id, int64_t signed_at_ms);
  // Leases the node serves that are not held here: ending there, their cores still taken.
  std::vector<protocol::ServedLease> ending_on(const std::string& node) const;
  bool set_state(const std::string& node, NodeInfo::State state);
  bool set_operator_drain(const std::string& node, bool drained);
  const std::map<std::string, NodeInfo>& nodes() const { return nodes_; }

  // Where a request would go, as the record to journal and then apply; nothing if it fits
  // nowhere: `why` says whether some node had room or the memory asked is over every node's
  // share of memory for that many cores.
  std::optional<LeaseRecord> place(const LeaseRequest& request, int64_t now_ms, PlaceRefusal* why = nullptr) const;
  // Applies a journaled change. apply_grant refuses (false) a record whose cores are not free:
  // no lease is ever granted twice for the same cores, replay included.
  bool apply_grant(const LeaseRecord& record);
  bool apply_release(uint64_t lease_id);
  bool apply_renew(uint64_t lease_id, int64_t expires_at_ms);
  // Leases whose expiry has passed (not removed: the caller journals, then releases them).
  std::vector<LeaseRecord> expired(int64_t now_ms) const;
  std::vector<LeaseRecord> leases_on(const std::string& node) const;

  const std::map<uint64_t, LeaseRecord>& leases() const { return leases_; }
  std::optional<LeaseRecord> lease(uint64_t lease_id) const;
  uint32_t free_cores(const std::string& node) const;
  // Held by that user's leases (a counter), and served for them where the lease is no longer
  // held here: O(leases served on nodes with a non-empty serving list).
  uint64_t cores_of_user(uint32_t uid) const;
  uint64_t free_memory(const std::string& node) const;
  uint64_t next_lease_id() const { return next_lease_id_; }
  // A journal snapshot's floor: ids below it were granted before, and are never granted again.
  void raise_next_lease_id(uint64_t next) { next_lease_id_ = std::max(next_lease_id_, next); }

 private:
  std::map<std::string, NodeInfo> nodes_;
  std::map<uint64_t, LeaseRecord> leases_;
  struct Used {
    uint64_t cores = 0, memory_bytes = 0;
  };
  std::map<std::string, Used> used_;  // per node, kept with leases_: placement is O(nodes)
  std::map<uint32_t, uint64_t> held_cores_by_uid_;  // kept with leases_
  std::set<std::string> nodes_serving_;  // nodes whose serving list is not empty
  Used ending(const NodeInfo& node) const;  // served there, not held here: O(leases served there)
  uint64_t next_lease_id_ = 1;
};

}  // namespace rfaas::broker
