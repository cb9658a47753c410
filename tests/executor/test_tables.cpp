// The executor daemon's tables: leases and their cores, the library cache.
#include <unistd.h>

#include <catch2/catch.hpp>

#include "daemon/executor_process.hpp"
#include "daemon/lease_table.hpp"
#include "daemon/library_cache.hpp"
#include "protocol/lease_token.hpp"

using namespace rfaas;
using rfaas::protocol::ControlErrc;

namespace {
ControlErrc reserve_error(daemon::LeaseTable& t, uint64_t id, uint32_t cores, int64_t now_ms = 1000) {
  try {
    t.reserve(id, cores, now_ms);
  } catch (const protocol::MessageError& e) {
    return e.code();
  }
  return ControlErrc::internal;  // "no error" marker for these tests
}

std::string read_all(int fd) {
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}
}  // namespace

TEST_CASE("leases take distinct cores and give them back", "[tables]") {
  daemon::LeaseTable t({4, 5, 6});
  auto a = t.reserve(1, 2, 1000);
  CHECK(a == std::vector<int>{4, 5});
  CHECK(t.free_cores() == 1);
  CHECK(reserve_error(t, 2, 2) == ControlErrc::no_capacity);
  CHECK(reserve_error(t, 1, 1) == ControlErrc::lease_active);  // never the same lease twice
  auto b = t.reserve(3, 1, 1000);
  CHECK(b == std::vector<int>{6});
  CHECK(t.active_leases() == 2);
  t.release(1);
  t.release(1);   // idempotent
  t.release(99);  // unknown: nothing happens
  CHECK(t.free_cores() == 2);
  CHECK(t.reserve(4, 2, 1000) == std::vector<int>{4, 5});
  t.release(3);
  t.release(4);
  CHECK(t.free_cores() == 3);
  CHECK(t.active_leases() == 0);
}

TEST_CASE("a lease served once is refused until its token expires", "[tables]") {
  daemon::LeaseTable t({0, 1});
  t.reserve(7, 1, 1000);
  t.release(7, 5000);  // served; its token (renewals included) expires at 5000
  CHECK(t.free_cores() == 2);
  CHECK(reserve_error(t, 7, 1, 1001) == ControlErrc::lease_ended);
  CHECK(reserve_error(t, 7, 1, 4999) == ControlErrc::lease_ended);
  // and for a day beyond: a renewal the broker granted after the end would expire later
  const int64_t grace = daemon::LeaseTable::kSpentGraceMs;
  CHECK(reserve_error(t, 7, 1, 5000 + grace - 1) == ControlErrc::lease_ended);
  CHECK(t.ended_leases() == 1);
  // A deploy refused before the lease was served leaves the id usable (the client may retry).
  t.reserve(8, 1, 1000);
  t.release(8);
  CHECK(t.reserve(8, 1, 1000) == std::vector<int>{0});
  t.release(8);
  // Then the id is forgotten.
  CHECK(t.reserve(9, 1, 5000 + grace) == std::vector<int>{0});
  CHECK(t.ended_leases() == 0);
  t.release(9);
}

TEST_CASE("the library cache keeps sealed copies and drops the least recently used", "[tables]") {
  daemon::LibraryCache cache(10);  // bytes
  std::vector<uint8_t> a{'a', 'a', 'a', 'a'}, b{'b', 'b', 'b', 'b'}, c{'c', 'c', 'c', 'c'};
  auto ha = protocol::sha256_hex(a.data(), a.size()), hb = protocol::sha256_hex(b.data(), b.size()),
       hc = protocol::sha256_hex(c.data(), c.size());
  CHECK_FALSE(cache.open(ha, 1));
  int fa = cache.insert(ha, a, 1);
  CHECK(read_all(fa) == "aaaa");
  CHECK(::write(fa, "x", 1) < 0);  // sealed: no lease changes what another loads
  ::close(fa);
  ::close(cache.insert(hb, b, 1));
  auto again = cache.open(ha, 1);  // a is now the most recently used
  REQUIRE(again);
  CHECK(read_all(*again) == "aaaa");
  ::close(*again);
  ::close(cache.insert(hc, c, 1));  // 12 bytes > 10: b, the least recently used, goes
  CHECK_FALSE(cache.open(hb, 1));
  auto fc = cache.open(hc, 1);
  REQUIRE(fc);
  ::close(*fc);
  auto fa2 = cache.open(ha, 1);
  REQUIRE(fa2);
  ::close(*fa2);
  // Another user's: not cached for them until they send the bytes too; stored once.
  CHECK_FALSE(cache.open(ha, 2));
  int fa3 = cache.insert(ha, a, 2);
  CHECK(read_all(fa3) == "aaaa");
  ::close(fa3);
  auto fa4 = cache.open(ha, 2);
  REQUIRE(fa4);
  ::close(*fa4);
  auto fc2 = cache.open(hc, 1);  // and c was not dropped for a second copy of a
  REQUIRE(fc2);
  ::close(*fc2);
}

TEST_CASE("executors see only the environment their transport and libraries need", "[tables]") {
  for (const char* yes : {"PATH=/usr/bin", "FI_PROVIDER=shm", "RDMAV_FORK_SAFE=1", "LD_LIBRARY_PATH=/opt/lib", "HOME=/root"})
    CHECK(daemon::executor_may_see(yes));
  // rfaas's own transport variables come from the daemon's fabric configuration, not its environment.
  for (const char* no : {"RFAAS_SECRET_FILE=/etc/rfaas/secret", "RFAAS_BROKER=h:1", "SLURM_JOB_ID=7", "MUNGE_KEY=x",
                         "PATHX=1", "AWS_SECRET_ACCESS_KEY=y", "LD_PRELOAD=/tmp/x.so", "RFAAS_FABRIC=verbs",
                         "RFAAS_OFI_PROVIDER=tcp", "RFAAS_VERBS_GID_INDEX=1", "RFAAS_FABRIC_HOST=10.0.0.1"})
    CHECK_FALSE(daemon::executor_may_see(no));
}
