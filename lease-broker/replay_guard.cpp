#include "replay_guard.hpp"

#include <algorithm>

namespace rfaas::broker {

ReplayGuard::Verdict ReplayGuard::take(const std::string& node, uint64_t incarnation, uint64_t sequence,
                                       int64_t timestamp_ms) {
  if (incarnation == 0 || sequence == 0) return Verdict::unnumbered;
  std::lock_guard lock(mutex_);
  auto [it, added] = nodes_.try_emplace(node);
  Window& w = it->second;
  if (added || w.incarnation != incarnation) {
    // Another start: the daemon restarted, so what it signs now is later than anything the
    // start before signed. A message of an earlier start, replayed, is not.
    if (!added && timestamp_ms <= w.last_timestamp_ms) return Verdict::earlier_start;
    w = Window{incarnation, timestamp_ms, sequence, {}};
    w.seen.set(0);
    return Verdict::fresh;
  }
  if (sequence > w.top) {
    const uint64_t shift = sequence - w.top;
    if (shift >= kWindow) w.seen.reset();
    else w.seen <<= shift;
    w.seen.set(0);
    w.top = sequence;
  } else {
    const uint64_t d = w.top - sequence;
    if (d >= kWindow) return Verdict::too_old;
    if (w.seen.test(d)) return Verdict::replayed;
    w.seen.set(d);
  }
  w.last_timestamp_ms = std::max(w.last_timestamp_ms, timestamp_ms);
  return Verdict::fresh;
}

std::pair<uint64_t, uint64_t> ReplayGuard::position(const std::string& node) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return {0, 0};
  return {it->second.incarnation, it->second.top};
}

const char* to_string(ReplayGuard::Verdict v) {
  switch (v) {
    case ReplayGuard::Verdict::fresh: return "fresh";
    case ReplayGuard::Verdict::replayed: return "replayed";
    case ReplayGuard::Verdict::too_old: return "older than the last 1024 of its node";
    case ReplayGuard::Verdict::earlier_start: return "from an earlier start of its daemon";
    case ReplayGuard::Verdict::unnumbered: return "without an incarnation and sequence number";
  }
  return "unknown";
}

}  // namespace rfaas::broker
