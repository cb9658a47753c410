#include "lease_book.hpp"

#include <algorithm>

namespace rfaas::broker {

const char* to_string(NodeInfo::State s) {
  switch (s) {
    case NodeInfo::State::active: return "active";
    case NodeInfo::State::draining: return "draining";
    case NodeInfo::State::lost: return "lost";
  }
  return "unknown";
}

void to_json(nlohmann::json& j, const LeaseRecord& r) {
  j = {{"lease_id", r.lease_id}, {"node", r.node}, {"cores", r.cores}, {"memory_bytes", r.memory_bytes},
       {"expires_at_ms", r.expires_at_ms}, {"client", r.client}, {"uid", r.uid}, {"gid", r.gid}, {"job", r.job},
       {"granted_at_ms", r.granted_at_ms}};
}

void from_json(const nlohmann::json& j, LeaseRecord& r) {
  r.lease_id = j.at("lease_id").get<uint64_t>();
  r.node = j.at("node").get<std::string>();
  r.cores = j.at("cores").get<uint32_t>();
  r.memory_bytes = j.at("memory_bytes").get<uint64_t>();
  r.expires_at_ms = j.at("expires_at_ms").get<int64_t>();
  r.client = j.at("client").get<std::string>();
  // Records journaled before leases had owners belong to root (operators manage them).
  r.uid = j.value("uid", uint32_t{0});
  r.gid = j.value("gid", uint32_t{0});
  r.job = j.value("job", std::string());
  // Journaled before leases had a lifetime: its lifetime counts from its current expiry.
  r.granted_at_ms = j.value("granted_at_ms", r.expires_at_ms);
}

uint64_t LeaseBook::cores_of_user(uint32_t uid) const {
  auto held = held_cores_by_uid_.find(uid);
  uint64_t n = held == held_cores_by_uid_.end() ? 0 : held->second;
  for (auto& name : nodes_serving_)  // a lease released here still counts until its daemon ends it
    for (auto& l : nodes_.at(name).serving)
      if (l.uid == uid && !leases_.count(l.lease_id)) n += l.cores;
  return n;
}

LeaseBook::Used LeaseBook::ending(const NodeInfo& node) const {
  Used u;
  for (auto& l : node.serving)
    if (!leases_.count(l.lease_id)) {
      u.cores += l.cores;
      u.memory_bytes += l.memory_bytes;
    }
  return u;
}

std::vector<protocol::ServedLease> LeaseBook::ending_on(const std::string& node) const {
  std::vector<protocol::ServedLease> out;
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return out;
  for (auto& l : it->second.serving)
    if (!leases_.count(l.lease_id)) out.push_back(l);
  return out;
}

void LeaseBook::served_ended(const std::string& node, uint64_t lease_id, int64_t signed_at_ms) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  std::erase_if(it->second.serving, [&](const protocol::ServedLease& l) { return l.lease_id == lease_id; });
  if (it->second.serving.empty()) nodes_serving_.erase(node);
  auto& at = it->second.reported_ended[lease_id];
  at = std::max(at, signed_at_ms);
}

void LeaseBook::upsert_node(const NodeInfo& node) {
  NodeInfo n = node;
  n.state = NodeInfo::State::active;
  if (auto it = nodes_.find(node.name); it != nodes_.end()) {
    const NodeInfo& old = it->second;
    n.drained_by_operator = old.drained_by_operator;
    n.reported_ended = old.reported_ended;
    // Overtaken on the way: the newer list stands. Far older is no heartbeat in flight but the
    // daemon's clock stepped back (or a restarted daemon's is behind): taken.
    constexpr int64_t kInFlightMs = 10'000;
    if (n.signed_at_ms < old.signed_at_ms && old.signed_at_ms - n.signed_at_ms < kInFlightMs) {
      n.serving = old.serving;
      n.signed_at_ms = old.signed_at_ms;
    }
    // A report signed before this heartbeat is in its list already (the daemon frees a lease
    // before it reports it); one signed at or after it may not be.
    std::erase_if(n.reported_ended, [&](const auto& e) { return e.second < n.signed_at_ms; });
    std::erase_if(n.serving, [&](const protocol::ServedLease& l) { return n.reported_ended.count(l.lease_id) > 0; });
  }
  if (n.serving.empty()) nodes_serving_.erase(node.name);
  else nodes_serving_.insert(node.name);
  nodes_[node.name] = std::move(n);
}

bool LeaseBook::set_operator_drain(const std::string& node, bool drained) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return false;
  it->second.drained_by_operator = drained;
  return true;
}

bool LeaseBook::set_state(const std::string& node, NodeInfo::State state) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return false;
  it->second.state = state;
  return true;
}

uint32_t LeaseBook::free_cores(const std::string& node) const {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return 0;
  auto u = used_.find(node);
  uint64_t used = (u == used_.end() ? 0 : u->second.cores) + ending(it->second).cores;
  return used >= it->second.cores ? 0 : static_cast<uint32_t>(it->second.cores - used);
}

uint64_t LeaseBook::free_memory(const std::string& node) const {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return 0;
  auto u = used_.find(node);
  uint64_t used = (u == used_.end() ? 0 : u->second.memory_bytes) + ending(it->second).memory_bytes;
  return used >= it->second.memory_bytes ? 0 : it->second.memory_bytes - used;
}

std::optional<LeaseRecord> LeaseBook::place(const LeaseRequest& request, int64_t now_ms, PlaceRefusal* why) const {
  bool over_share = false, within_share = false;
  if (why) *why = PlaceRefusal::full;
  if (request.cores == 0 || request.duration_ms <= 0) return std::nullopt;
  const NodeInfo* best = nullptr;
  uint32_t best_free = 0;
  // nodes_ and used_ are both sorted by name: walk them together, no lookups per node.
  auto u = used_.begin();
  for (auto& [name, node] : nodes_) {  // name order: ties go to the first
    while (u != used_.end() && u->first < name) ++u;
    if (node.state != NodeInfo::State::active || node.drained_by_operator) continue;
    if (std::find(request.avoid_nodes.begin(), request.avoid_nodes.end(), name) != request.avoid_nodes.end()) continue;
    // At most the cores' share of memory: a 1-core lease does not take a whole node's memory.
    // (Compared as products, in 128 bits: no division per node, no overflow.)
    using u128 = unsigned __int128;
    const bool over = request.max_memory_per_core
                          ? request.memory_bytes > u128{request.max_memory_per_core} * request.cores
                          : u128{request.memory_bytes} * node.cores > u128{node.memory_bytes} * request.cores;
    if (over) {
      over_share = true;
      continue;
    }
    within_share = true;
    Used used = u != used_.end() && u->first == name ? u->second : Used{};
    if (!node.serving.empty()) {
      Used e = ending(node);
      used.cores += e.cores;
      used.memory_bytes += e.memory_bytes;
    }
    uint32_t free = used.cores >= node.cores ? 0 : static_cast<uint32_t>(node.cores - used.cores);
    uint64_t free_mem = used.memory_bytes >= node.memory_bytes ? 0 : node.memory_bytes - used.memory_bytes;
    if (free < request.cores || free_mem < request.memory_bytes) continue;
    if (!best || free < best_free) {
      best = &node;
      best_free = free;
    }
  }
  if (!best) {
    if (why) *why = over_share && !within_share ? PlaceRefusal::memory_share : PlaceRefusal::full;
    return std::nullopt;
  }
  if (why) *why = PlaceRefusal::none;
  return LeaseRecord{next_lease_id_, best->name, request.cores, request.memory_bytes, now_ms + request.duration_ms,
                     request.client, request.uid, request.gid, request.job, now_ms};
}

bool LeaseBook::apply_grant(const LeaseRecord& r) {
  if (leases_.count(r.lease_id)) return false;
  // On replay a node may not have re-registered yet: its leases are kept and counted once it does.
  if (nodes_.count(r.node) && (free_cores(r.node) < r.cores || free_memory(r.node) < r.memory_bytes)) return false;
  leases_[r.lease_id] = r;
  Used& u = used_[r.node];
  u.cores += r.cores;
  u.memory_bytes += r.memory_bytes;
  held_cores_by_uid_[r.uid] += r.cores;
  next_lease_id_ = std::max(next_lease_id_, r.lease_id + 1);
  return true;
}

bool LeaseBook::apply_release(uint64_t lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return false;
  auto u = used_.find(it->second.node);
  if (u != used_.end()) {
    u->second.cores -= it->second.cores;
    u->second.memory_bytes -= it->second.memory_bytes;
    if (u->second.cores == 0 && u->second.memory_bytes == 0) used_.erase(u);
  }
  if (auto h = held_cores_by_uid_.find(it->second.uid); h != held_cores_by_uid_.end() && (h->second -= it->second.cores) == 0)
    held_cores_by_uid_.erase(h);
  leases_.erase(it);
  return true;
}

bool LeaseBook::apply_renew(uint64_t lease_id, int64_t expires_at_ms) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return false;
  it->second.expires_at_ms = expires_at_ms;
  return true;
}

std::vector<LeaseRecord> LeaseBook::expired(int64_t now_ms) const {
  std::vector<LeaseRecord> out;
  for (auto& [id, l] : leases_)
    if (l.expires_at_ms <= now_ms) out.push_back(l);
  return out;
}

std::vector<LeaseRecord> LeaseBook::leases_on(const std::string& node) const {
  std::vector<LeaseRecord> out;
  for (auto& [id, l] : leases_)
    if (l.node == node) out.push_back(l);
  return out;
}

std::optional<LeaseRecord> LeaseBook::lease(uint64_t lease_id) const {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return std::nullopt;
  return it->second;
}

}  // namespace rfaas::broker
