// The broker's lease book and journal: placement, no double grant, expiry, renew, replay.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "journal.hpp"
#include "lease_book.hpp"
#include "replay_guard.hpp"

using namespace rfaas::broker;
namespace fs = std::filesystem;

namespace {
NodeInfo node(const std::string& name, uint32_t cores, uint64_t memory = 1ull << 34) {
  NodeInfo n;
  n.name = name;
  n.control_address = name + ":7000";
  n.cores = cores;
  n.memory_bytes = memory;
  return n;
}
LeaseRequest request(uint32_t cores, std::vector<std::string> avoid = {}) {
  return LeaseRequest{cores, 1 << 20, 60'000, std::string("client"), std::move(avoid), 0, 0, ""};
}
LeaseRecord grant(LeaseBook& b, const LeaseRequest& r, int64_t now = 1000) {
  auto rec = b.place(r, now);
  REQUIRE(rec);
  REQUIRE(b.apply_grant(*rec));
  return *rec;
}
struct TempFile {
  fs::path path = fs::temp_directory_path() / ("rfaas-journal-" + std::to_string(getpid()) + "-" + std::to_string(rand()));
  ~TempFile() { fs::remove(path); }
};
}  // namespace

TEST_CASE("placement is best fit, honours avoid lists and never overcommits", "[broker]") {
  LeaseBook b;
  b.upsert_node(node("a", 8));
  b.upsert_node(node("b", 4));
  b.upsert_node(node("c", 4));
  // Best fit: the fewest free cores that fit; ties by name.
  CHECK(grant(b, request(2)).node == "b");
  CHECK(grant(b, request(2)).node == "b");       // b has 2 left: best fit
  CHECK(grant(b, request(3)).node == "c");       // b is full
  CHECK(grant(b, request(4)).node == "a");
  CHECK(grant(b, request(1), 1000).node == "c");  // c has 1 left
  CHECK_FALSE(b.place(request(2, {"a"}), 1000));  // only a has room, and it is avoided
  CHECK(b.free_cores("a") == 4);
  CHECK(b.free_cores("b") == 0);
  CHECK(b.free_cores("c") == 0);
  CHECK_FALSE(b.place(request(5), 1000));         // fits nowhere
  CHECK_FALSE(b.place(request(0), 1000));
  // Lease ids are never reused.
  std::set<uint64_t> ids;
  for (auto& [id, l] : b.leases()) ids.insert(id);
  CHECK(ids.size() == b.leases().size());
}

TEST_CASE("avoid lists, draining and lost nodes are skipped", "[broker]") {
  LeaseBook b;
  b.upsert_node(node("a", 4));
  b.upsert_node(node("b", 4));
  CHECK(grant(b, request(1, {"a"})).node == "b");
  b.set_state("b", NodeInfo::State::draining);
  CHECK(grant(b, request(1)).node == "a");
  b.set_state("a", NodeInfo::State::lost);
  CHECK_FALSE(b.place(request(1), 0));
  b.upsert_node(node("a", 4));  // a heartbeat brings it back
  CHECK(b.place(request(1), 0));
}

TEST_CASE("the same cores are never granted twice", "[broker]") {
  LeaseBook b;
  b.upsert_node(node("a", 2));
  auto r1 = grant(b, request(2));
  LeaseRecord dup = r1;
  dup.lease_id = 99;
  CHECK_FALSE(b.apply_grant(dup));   // a's cores are all taken
  CHECK_FALSE(b.apply_grant(r1));    // the same lease again
  CHECK(b.apply_release(r1.lease_id));
  CHECK(b.apply_grant(dup));
}

TEST_CASE("a heartbeat signed before a lease's end report does not bring its cores back", "[broker]") {
  LeaseBook b;
  auto at = [](int64_t signed_at, std::vector<rfaas::protocol::ServedLease> serving) {
    auto n = node("a", 1);
    n.signed_at_ms = signed_at;
    n.serving = std::move(serving);
    return n;
  };
  b.upsert_node(at(100, {}));
  auto r = grant(b, request(1));
  const rfaas::protocol::ServedLease served{r.lease_id, 1, 1 << 20, 0};
  b.upsert_node(at(200, {served}));
  REQUIRE(b.apply_release(r.lease_id));          // released here by its client
  CHECK(b.free_cores("a") == 0);                 // still served there: ending
  b.served_ended("a", r.lease_id, 300);          // the daemon's end report, signed at 300
  CHECK(b.free_cores("a") == 1);
  b.upsert_node(at(300, {served}));              // in flight while the report was signed
  CHECK(b.free_cores("a") == 1);
  CHECK(b.ending_on("a").empty());
  b.upsert_node(at(250, {served}));              // overtaken by a newer heartbeat
  CHECK(b.free_cores("a") == 1);
  b.upsert_node(at(301, {}));                    // signed after the report: it is forgotten
  CHECK(b.nodes().at("a").reported_ended.empty());
  // A newer heartbeat's list stands against an older one that arrives after it.
  auto r2 = grant(b, request(1));
  b.upsert_node(at(400, {}));
  REQUIRE(b.apply_release(r2.lease_id));
  b.upsert_node(at(350, {{r2.lease_id, 1, 1 << 20, 0}}));
  CHECK(b.free_cores("a") == 1);
  // Far older than the last one is no heartbeat in flight: the daemon's clock stepped back.
  auto r3 = grant(b, request(1));
  b.upsert_node(at(400 - 20'000, {{r3.lease_id, 1, 1 << 20, 0}}));
  CHECK(b.nodes().at("a").serving.size() == 1);
}

TEST_CASE("a lease gets at most its cores' share of a node's memory; a user's cores are counted as leases come and go", "[broker]") {
  LeaseBook b;
  b.upsert_node(node("a", 4, 4ull << 30));  // 1 GiB per core
  LeaseRequest r = request(1);
  PlaceRefusal why = PlaceRefusal::none;
  // One core and the whole node's memory: over its share, named as such (not "full").
  r.memory_bytes = 4ull << 30;
  CHECK_FALSE(b.place(r, 1000, &why));
  CHECK(why == PlaceRefusal::memory_share);
  r.memory_bytes = (1ull << 30) + 1;
  CHECK_FALSE(b.place(r, 1000, &why));
  CHECK(why == PlaceRefusal::memory_share);
  r.memory_bytes = 1ull << 30;
  auto rec = b.place(r, 1000, &why);
  REQUIRE(rec);
  CHECK(why == PlaceRefusal::none);
  CHECK(rec->granted_at_ms == 1000);
  r.cores = 4;
  r.memory_bytes = 4ull << 30;  // all of it, with all the cores
  CHECK(b.place(r, 1000));
  // A broker-wide cap per core, instead of the node's share; no overflow near the top.
  r.cores = 1;
  r.memory_bytes = 2ull << 30;
  r.max_memory_per_core = 2ull << 30;
  CHECK(b.place(r, 1000));
  r.max_memory_per_core = UINT64_MAX;
  r.cores = UINT32_MAX;
  r.memory_bytes = UINT64_MAX;
  CHECK_FALSE(b.place(r, 1000, &why));
  CHECK(why == PlaceRefusal::full);  // within its share, but no node has those cores

  // A user's cores: held here, then ending at the node once released here, then gone.
  LeaseBook u;
  u.upsert_node(node("n", 8));
  LeaseRequest mine = request(3);
  mine.uid = 1001;
  auto l1 = grant(u, mine);
  auto l2 = grant(u, mine);
  LeaseRequest theirs = request(2);
  theirs.uid = 1002;
  grant(u, theirs);
  CHECK(u.cores_of_user(1001) == 6);
  CHECK(u.cores_of_user(1002) == 2);
  NodeInfo serving = node("n", 8);
  serving.serving = {{l1.lease_id, 3, 1 << 20, 1001}, {l2.lease_id, 3, 1 << 20, 1001}};
  serving.signed_at_ms = 2000;
  u.upsert_node(serving);
  REQUIRE(u.apply_release(l1.lease_id));
  CHECK(u.cores_of_user(1001) == 6);  // still served there
  u.served_ended("n", l1.lease_id, 2100);
  CHECK(u.cores_of_user(1001) == 3);
  REQUIRE(u.apply_release(l2.lease_id));
  u.served_ended("n", l2.lease_id, 2200);
  CHECK(u.cores_of_user(1001) == 0);
  CHECK(u.cores_of_user(1002) == 2);
  // Journaled before lifetimes: a record without granted_at_ms counts from its expiry.
  nlohmann::json old = l1;
  old.erase("granted_at_ms");
  CHECK(old.get<LeaseRecord>().granted_at_ms == l1.expires_at_ms);
  CHECK(nlohmann::json(l1).get<LeaseRecord>().granted_at_ms == l1.granted_at_ms);
}

TEST_CASE("leases expire and renew", "[broker]") {
  LeaseBook b;
  b.upsert_node(node("a", 4));
  auto r = grant(b, request(1), 1000);  // expires at 61000
  CHECK(b.expired(60'999).empty());
  CHECK(b.expired(61'000).size() == 1);
  CHECK(b.apply_renew(r.lease_id, 120'000));
  CHECK(b.expired(61'000).empty());
  CHECK_FALSE(b.apply_renew(12345, 1));
}

TEST_CASE("the journal rebuilds the book, a torn tail is skipped and truncated, damage is an error", "[broker][journal]") {
  TempFile f;
  LeaseBook b;
  b.upsert_node(node("a", 4));
  b.upsert_node(node("b", 4));
  uint64_t released;
  {
    Journal j(f.path.string());
    auto r1 = *b.place(request(2), 1000);
    j.grant(r1);
    b.apply_grant(r1);
    auto r2 = *b.place(request(3), 1000);
    j.grant(r2);
    b.apply_grant(r2);
    auto r3 = *b.place(request(1), 1000);
    j.grant(r3);
    b.apply_grant(r3);
    j.release(r1.lease_id, "released");
    b.apply_release(r1.lease_id);
    released = r1.lease_id;
    j.renew(r2.lease_id, 500'000);
    b.apply_renew(r2.lease_id, 500'000);
  }
  CHECK((fs::status(f.path).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);
  LeaseBook restored;  // nodes are re-learned from heartbeats, later
  auto res = Journal::replay(f.path.string(), restored);
  CHECK(res.records == 5);
  CHECK_FALSE(res.torn_tail);
  CHECK(restored.leases().size() == b.leases().size());
  CHECK_FALSE(restored.lease(released));
  for (auto& [id, l] : b.leases()) {
    auto r = restored.lease(id);
    REQUIRE(r);
    CHECK(r->node == l.node);
    CHECK(r->expires_at_ms == l.expires_at_ms);
  }
  CHECK(restored.next_lease_id() == b.next_lease_id());
  // After re-registration the replayed leases hold their cores: no double grant.
  restored.upsert_node(node("a", 4));
  restored.upsert_node(node("b", 4));
  CHECK(restored.free_cores("a") == b.free_cores("a"));
  CHECK(restored.free_cores("b") == b.free_cores("b"));

  // The broker died mid-write: the partial last record is ignored.
  { std::ofstream(f.path, std::ios::app) << R"({"op":"grant","lease_id":77,"no)"; }
  LeaseBook torn;
  res = Journal::replay(f.path.string(), torn);
  CHECK(res.torn_tail);
  CHECK(res.records == 5);
  CHECK_FALSE(torn.lease(77));
  // ... and cut off, so that the next record is whole: it survives the next replay, and that
  // replay finds no tail to skip (before, the record was glued to the fragment and lost).
  CHECK(res.truncated_bytes == std::string(R"({"op":"grant","lease_id":77,"no)").size());
  torn.upsert_node(node("a", 4));
  torn.upsert_node(node("b", 4));
  auto r4 = *torn.place(request(1), 2000);
  {
    Journal j(f.path.string());
    j.grant(r4);
    j.sync();
  }
  LeaseBook again;
  res = Journal::replay(f.path.string(), again);
  CHECK_FALSE(res.torn_tail);
  CHECK(res.records == 6);
  CHECK(again.lease(r4.lease_id));

  // Damage before the end is not silently skipped.
  { std::ofstream(f.path, std::ios::trunc) << "garbage\n" << R"({"op":"release","lease_id":1,"reason":"x"})" << "\n"; }
  LeaseBook damaged;
  CHECK_THROWS_AS(Journal::replay(f.path.string(), damaged), JournalError);
}

// Compaction: the journal becomes one snapshot of the book and goes on after it; a replay of
// snapshot + later records is the book, and no lease id is ever granted again after a restart.
TEST_CASE("a compacted journal replays to the same book and never reuses a lease id", "[broker][journal]") {
  TempFile f;
  LeaseBook b;
  b.upsert_node(node("a", 4));
  uint64_t held = 0, highest = 0;
  {
    Journal j(f.path.string());
    for (int i = 0; i < 50; ++i) {  // many short leases, one held throughout
      auto r = *b.place(request(1), 1000 + i);
      j.grant(r);
      b.apply_grant(r);
      highest = r.lease_id;
      if (i == 3) {
        held = r.lease_id;
        continue;
      }
      j.release(r.lease_id, "released");
      b.apply_release(r.lease_id);
    }
    j.sync();
    CHECK(j.records_since_snapshot() == 99);
    j.compact(b);
    CHECK(j.records_since_snapshot() == 0);
    auto later = *b.place(request(2), 5000);  // appended after the snapshot
    j.grant(later);
    b.apply_grant(later);
    j.sync();
  }
  std::ifstream in(f.path);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  CHECK(lines == 2);  // the snapshot and the grant after it
  CHECK_FALSE(fs::exists(f.path.string() + ".compact"));
  LeaseBook restored;
  auto res = Journal::replay(f.path.string(), restored);
  CHECK(res.snapshot);
  CHECK(res.records == 2);
  CHECK(restored.leases().size() == 2);
  CHECK(restored.lease(held));
  CHECK(restored.next_lease_id() == b.next_lease_id());
  CHECK(restored.next_lease_id() > highest + 1);  // released ids stay spent
  // A snapshot anywhere but first is damage.
  { std::ofstream(f.path, std::ios::app) << R"({"op":"snapshot","next_lease_id":1,"leases":[]})" << "\n"; }
  LeaseBook damaged;
  CHECK_THROWS_AS(Journal::replay(f.path.string(), damaged), JournalError);
}

TEST_CASE("a node's signed messages are taken once, in any order within the window", "[broker]") {
  using V = ReplayGuard::Verdict;
  ReplayGuard g;
  CHECK(g.take("n", 0, 1, 100) == V::unnumbered);
  CHECK(g.take("n", 7, 0, 100) == V::unnumbered);
  CHECK(g.take("n", 7, 10, 100) == V::fresh);
  CHECK(g.take("n", 7, 10, 100) == V::replayed);
  CHECK(g.take("n", 7, 8, 100) == V::fresh);   // overtaken on the way
  CHECK(g.take("n", 7, 8, 100) == V::replayed);
  CHECK(g.take("n", 7, 9, 100) == V::fresh);
  CHECK(g.take("m", 7, 10, 100) == V::fresh);  // another node's numbers are its own
  CHECK(g.take("n", 7, 10 + ReplayGuard::kWindow, 101) == V::fresh);
  CHECK(g.take("n", 7, 10, 101) == V::too_old);  // out of the window
  CHECK(g.take("n", 7, 11, 101) == V::fresh);     // the window's last place
  CHECK(g.take("n", 7, 11, 101) == V::replayed);
  CHECK(g.take("n", 7, 100000, 102) == V::fresh);  // a jump past the window forgets it
  CHECK(g.take("n", 7, 99999, 102) == V::fresh);
  // A new start of the daemon is taken only with a later clock; then the old start is refused.
  CHECK(g.take("n", 8, 1, 102) == V::earlier_start);
  CHECK(g.take("n", 8, 1, 103) == V::fresh);
  CHECK(g.take("n", 7, 100001, 102) == V::earlier_start);  // signed before the new start
  CHECK(g.take("n", 8, 2, 104) == V::fresh);
}
