// The loopback backend and the faults decorator over it: in one process, no provider.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <atomic>
#include <exception>
#include <map>
#include <string>

#include "rfaas/fabric/fabric.hpp"
#include "support/env_guard.hpp"
#include "support/test_thread.hpp"

using namespace std::chrono_literals;
namespace fabric = rfaas::fabric;
using fabric::Completion;
using fabric::Errc;

namespace {

using rfaas::testing::TestThread;


// Sets (or, with nullptr, unsets) a variable for the scope, then puts it back.
struct SetEnv {
  rfaas::testing::EnvGuard guard;
  SetEnv(const char* name, const char* value) : guard(name) {
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
};

fabric::Config loopback(const std::string& faults = "") {
  fabric::Config c;
  c.backend = fabric::Backend::loopback;
  c.faults = faults;
  return c;
}

// Two connected endpoints of one domain, each side with a registered buffer the other may write.
struct Pair {
  std::unique_ptr<fabric::Domain> domain;
  std::vector<uint8_t> a_buf = std::vector<uint8_t>(4096, 0), b_buf = std::vector<uint8_t>(4096, 0);
  std::unique_ptr<fabric::MemoryRegion> a_mr, b_mr;
  std::unique_ptr<fabric::Endpoint> a, b;  // a connected, b accepted
  fabric::RemoteRegion a_sees_b, b_sees_a;

  explicit Pair(const fabric::Config& config, fabric::EndpointConfig ecfg = {}) : domain(fabric::open_domain(config)) {
    a_mr = domain->register_memory(a_buf.data(), a_buf.size(), fabric::Access::remote_write);
    b_mr = domain->register_memory(b_buf.data(), b_buf.size(), fabric::Access::remote_write);
    auto listener = domain->listen("loop", 0);
    a = domain->create_endpoint(ecfg);
    fabric::ConnectionData a_theirs, b_theirs;
    TestThread connector([&] {
      a->connect(listener->address(), fabric::make_connection_data(a_mr->remote()), a_theirs, 5s);
    });
    b = listener->accept(ecfg, fabric::make_connection_data(b_mr->remote()), b_theirs, 5s);
    connector.join();
    a_sees_b = fabric::read_connection_data<fabric::RemoteRegion>(a_theirs);
    b_sees_a = fabric::read_connection_data<fabric::RemoteRegion>(b_theirs);
  }
};

// Completions of `ep` until `want` arrived or `limit` passed.
std::vector<Completion> drain(fabric::Endpoint& ep, size_t want, std::chrono::milliseconds limit = 2s) {
  std::vector<Completion> got;
  const auto until = std::chrono::steady_clock::now() + limit;
  Completion c[8];
  while (got.size() < want && std::chrono::steady_clock::now() < until) {
    int n = ep.poll(c, 8);
    got.insert(got.end(), c, c + n);
    if (n == 0) ep.wait(10ms);
  }
  return got;
}

}  // namespace

TEST_CASE("loopback: a write lands in the peer's memory with its immediate; the writer sees it sent",
          "[fabric][loopback]") {
  Pair p(loopback());
  std::memcpy(p.a_buf.data(), "hello", 5);
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 5, p.a_sees_b, 100, 77, 1234) == Errc::ok);
  auto sent = drain(*p.a, 1);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].kind == Completion::Kind::write_sent);
  CHECK(sent[0].context == 1234);
  auto got = drain(*p.b, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].kind == Completion::Kind::write_received);
  CHECK(got[0].imm == 77);
  CHECK(std::memcmp(p.b_buf.data() + 100, "hello", 5) == 0);

  // Two segments gathered into one contiguous range, and back the other way.
  std::memcpy(p.b_buf.data() + 2000, "head", 4);
  std::memcpy(p.b_buf.data() + 3000, "-payload", 8);
  fabric::Segment segs[2] = {{p.b_mr.get(), 2000, 4}, {p.b_mr.get(), 3000, 8}};
  REQUIRE(p.b->write_imm(segs, 2, p.b_sees_a, 10, 5, 9) == Errc::ok);
  got = drain(*p.a, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].imm == 5);
  CHECK(std::memcmp(p.a_buf.data() + 10, "head-payload", 12) == 0);
}

TEST_CASE("loopback: a wrong key or a write past the region fails with remote_access; the peer hears nothing",
          "[fabric][loopback]") {
  Pair p(loopback());
  fabric::RemoteRegion wrong = p.a_sees_b;
  wrong.key ^= 0x10000;  // another generation of the same slot
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, wrong, 0, 1, 1) == Errc::ok);
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 4092, 2, 2) == Errc::ok);  // 4 bytes too far
  auto c = drain(*p.a, 2);
  REQUIRE(c.size() == 2);
  for (int i = 0; i < 2; ++i) {
    CHECK(c[i].kind == Completion::Kind::error);
    CHECK(c[i].error == Errc::remote_access);
    CHECK(c[i].context == static_cast<uint64_t>(i + 1));
  }
  CHECK(drain(*p.b, 1, 100ms).empty());
  // A region registered for local use only is not a target.
  std::vector<uint8_t> local(64);
  auto local_mr = p.domain->register_memory(local.data(), local.size(), fabric::Access::local);
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, local_mr->remote(), 0, 3, 3) == Errc::ok);
  c = drain(*p.a, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].error == Errc::remote_access);
}

TEST_CASE("loopback: an endpoint gone is a peer lost to the other end, once", "[fabric][loopback]") {
  Pair p(loopback());
  p.b.reset();
  CHECK(p.a->wait(1s) == Errc::peer_lost);
  auto c = drain(*p.a, 1);
  REQUIRE(c.size() == 1);
  CHECK(c[0].kind == Completion::Kind::error);
  CHECK(c[0].error == Errc::peer_lost);
  CHECK(drain(*p.a, 1, 50ms).empty());  // reported once
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::peer_lost);
  CHECK_FALSE(p.a->connected());
}

TEST_CASE("loopback: writes beyond the outstanding limit wait for completions to be polled", "[fabric][loopback]") {
  fabric::EndpointConfig ecfg;
  ecfg.max_outstanding_writes = 2;
  Pair p(loopback(), ecfg);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::ok);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 2, 2) == Errc::ok);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 3, 3) == Errc::again);
  CHECK(drain(*p.a, 2).size() == 2);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 3, 3) == Errc::ok);
}

TEST_CASE("loopback: set-up is bounded and refusals are named", "[fabric][loopback]") {
  auto domain = fabric::open_domain(loopback());
  CHECK(domain->provider() == "loopback");
  CHECK(domain->capabilities().survives_credential_change);
  CHECK_FALSE(domain->capabilities().meets_peers_in_dev_shm);
  auto listener = domain->listen("loop", 0);
  fabric::ConnectionData theirs;
  auto t0 = std::chrono::steady_clock::now();
  try {
    (void)listener->accept({}, {}, theirs, 100ms);
    FAIL("accepted with no connector");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == Errc::timeout);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  auto ep = domain->create_endpoint();
  try {
    ep->connect("loop:65000", {}, theirs, 100ms);
    FAIL("connected to nothing");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == Errc::peer_lost);
  }
  // A connector that admit refuses sees its connect fail; the next, admitted, gets in.
  std::vector<uint64_t> seen;
  int refused = 0;
  std::unique_ptr<fabric::Endpoint> good;
  TestThread clients([&] {
    for (uint64_t v : {1, 42}) {
      auto c = domain->create_endpoint();
      fabric::ConnectionData t;
      try {
        c->connect(listener->address(), fabric::make_connection_data(v), t, 2s);
        good = std::move(c);
      } catch (const fabric::Error&) {
        ++refused;
      }
    }
  });
  auto server = listener->accept({}, fabric::make_connection_data(uint64_t{7}), theirs, 5s,
                                 [&](const fabric::ConnectionData& cd) {
                                   seen.push_back(fabric::read_connection_data<uint64_t>(cd));
                                   return seen.back() == 42;
                                 });
  clients.join();
  CHECK(refused == 1);
  CHECK(seen == std::vector<uint64_t>{1, 42});
  CHECK(fabric::read_connection_data<uint64_t>(theirs) == 42);
  REQUIRE(good);
  CHECK(good->connected());
  CHECK(server->connected());
}

TEST_CASE("faults: a dropped write is reported sent and never arrives; the writes around it do",
          "[fabric][faults]") {
  Pair p(loopback("drop_write@2"));
  for (uint32_t i = 1; i <= 3; ++i) REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, i, i) == Errc::ok);
  auto sent = drain(*p.a, 3);
  REQUIRE(sent.size() == 3);
  for (auto& c : sent) CHECK(c.kind == Completion::Kind::write_sent);
  auto got = drain(*p.b, 3, 300ms);
  REQUIRE(got.size() == 2);
  CHECK(got[0].imm == 1);
  CHECK(got[1].imm == 3);
}

TEST_CASE("faults: a failed write, a corrupted immediate, a delayed write", "[fabric][faults]") {
  Pair p(loopback("fail_write@1,corrupt_imm@2,delay_write=150@3"));
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::io);
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 2, 2) == Errc::ok);
  auto got = drain(*p.b, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].imm == (2u ^ 0xa5a5a5a5u));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 3, 3) == Errc::ok);
  // Held back however often the writer polls; its poll issues it once due.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Completion c[8];
    while (!stop.load()) {
      p.a->poll(c, 8);
      std::this_thread::sleep_for(1ms);
    }
  });
  CHECK(drain(*p.b, 1, 100ms).empty());
  got = drain(*p.b, 1);
  const auto arrived = std::chrono::steady_clock::now() - t0;
  stop.store(true);
  writer.join();
  REQUIRE(got.size() == 1);
  CHECK(got[0].imm == 3);
  CHECK(arrived >= 150ms);
  CHECK(arrived < 1s);
}

TEST_CASE("faults: a write answered with again counts when it goes; a rule fires once among threads",
          "[fabric][faults]") {
  {
    fabric::EndpointConfig ecfg;
    ecfg.max_outstanding_writes = 1;
    Pair p(loopback("drop_write@3"), ecfg);
    REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::ok);
    REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 2, 2) == Errc::again);  // not counted
    REQUIRE(drain(*p.a, 1).size() == 1);
    REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 2, 2) == Errc::ok);  // the second write
    REQUIRE(drain(*p.a, 1).size() == 1);
    REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 3, 3) == Errc::ok);  // the third: dropped
    auto got = drain(*p.b, 3, 300ms);
    REQUIRE(got.size() == 2);
    CHECK(got[0].imm == 1);
    CHECK(got[1].imm == 2);
  }
  // Two connections of one domain written from two threads: the 500th write of the domain is
  // dropped, once.
  Pair p(loopback("drop_write@500"));
  fabric::EndpointConfig ecfg;
  auto listener = p.domain->listen("loop", 0);
  auto c = p.domain->create_endpoint(ecfg);
  fabric::ConnectionData t1, t2;
  TestThread connector([&] { c->connect(listener->address(), {}, t1, 5s); });
  auto d = listener->accept(ecfg, {}, t2, 5s);
  connector.join();
  auto writes = [&](fabric::Endpoint& ep) {
    for (uint32_t i = 0; i < 400; ++i) {
      Errc e;
      while ((e = ep.write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, i, i)) == Errc::again) drain(ep, 1, 10ms);
      REQUIRE(e == Errc::ok);
      drain(ep, 1, 10ms);
    }
  };
  std::thread one([&] { writes(*p.a); });
  std::thread two([&] { writes(*c); });
  one.join();
  two.join();
  // Both sent to b's memory; b hears a's writes, d hears c's.
  const size_t heard = drain(*p.b, 400, 2s).size() + drain(*d, 400, 2s).size();
  CHECK(heard == 799);
}

TEST_CASE("faults: the peer lost at a chosen write, seen at both ends", "[fabric][faults]") {
  Pair p(loopback("lose_peer@2"));
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::ok);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 2, 2) == Errc::peer_lost);
  auto c = drain(*p.a, 2);
  bool lost = false;
  for (auto& x : c) lost |= x.kind == Completion::Kind::error && x.error == Errc::peer_lost;
  CHECK(lost);
  CHECK(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 3, 3) == Errc::peer_lost);
  auto b = drain(*p.b, 2);
  REQUIRE(b.size() == 2);
  CHECK(b[0].imm == 1);
  CHECK(b[1].kind == Completion::Kind::error);
  CHECK(b[1].error == Errc::peer_lost);
}

TEST_CASE("faults: each set-up step can fail, by name", "[fabric][faults]") {
  auto fails = [](const char* rule, auto step) {
    auto domain = fabric::open_domain(loopback(rule));
    try {
      step(*domain);
      FAIL(std::string("no failure for ") + rule);
    } catch (const fabric::Error& e) {
      CHECK(e.code() == Errc::io);
      CHECK(std::string(e.what()).find(rule) != std::string::npos);
    }
  };
  std::vector<uint8_t> buf(64);
  fails("fail_register@1", [&](fabric::Domain& d) { d.register_memory(buf.data(), buf.size(), fabric::Access::local); });
  fails("fail_listen@1", [&](fabric::Domain& d) { d.listen("loop", 0); });
  fails("fail_connect@1", [&](fabric::Domain& d) {
    auto l = d.listen("loop", 0);
    fabric::ConnectionData t;
    d.create_endpoint()->connect(l->address(), {}, t, 1s);
  });
  fails("fail_accept@1", [&](fabric::Domain& d) {
    fabric::ConnectionData t;
    (void)d.listen("loop", 0)->accept({}, {}, t, 1s);
  });
  // The second registration fails, not the first.
  auto d = fabric::open_domain(loopback("fail_register@2"));
  CHECK_NOTHROW(d->register_memory(buf.data(), buf.size(), fabric::Access::local));
  CHECK_THROWS_AS(d->register_memory(buf.data(), buf.size(), fabric::Access::local), fabric::Error);
}

TEST_CASE("faults: rules that do not parse are named; the environment chooses the decorator", "[fabric][faults]") {
  for (const char* bad : {"drop_write", "drop_write@0", "nonsense@1", "drop_write=5@1", "delay_write@1",
                          "fail_write@x", "drop_write@2,lose_peer@2"}) {
    try {
      fabric::open_domain(loopback(bad));
      FAIL(std::string("accepted ") + bad);
    } catch (const fabric::Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      const std::string spec = bad, rule = spec.substr(spec.rfind(',') == std::string::npos ? 0 : spec.rfind(',') + 1);
      CHECK(std::string(e.what()).find(rule) != std::string::npos);
    }
  }
  {
    SetEnv env("RFAAS_FABRIC", "faults:loopback");
    SetEnv rules("RFAAS_FABRIC_FAULTS", nullptr);
    CHECK_THROWS_AS(fabric::Config::from_env(), fabric::Error);
  }
  SetEnv env("RFAAS_FABRIC", "faults:loopback");
  SetEnv rules("RFAAS_FABRIC_FAULTS", "drop_write@1");
  auto c = fabric::Config::from_env();
  CHECK(c.backend == fabric::Backend::loopback);
  CHECK(c.faults == "drop_write@1");
  Pair p(c);
  REQUIRE(p.a->write_imm(*p.a_mr, 0, 8, p.a_sees_b, 0, 1, 1) == Errc::ok);
  CHECK(drain(*p.b, 1, 200ms).empty());
}

TEST_CASE("a fabric configuration reads back from the variables it writes for a child process", "[fabric][config]") {
  fabric::Config c;
  c.backend = fabric::Backend::verbs;  // read back, not opened
  c.faults = "drop_write@3,lose_peer@10";
  c.ofi_provider = "tcp";
  c.verbs_device = "rxe0";
  c.verbs_gid_index = 3;
  c.local_host = "10.0.0.9";  // not among them: the child is given its address
  std::map<std::string, std::string> vars;
  for (const std::string& v : c.to_variables()) {
    const size_t eq = v.find('=');
    REQUIRE(eq != std::string::npos);
    CHECK(v.rfind("RFAAS_", 0) == 0);
    vars[v.substr(0, eq)] = v.substr(eq + 1);
  }
  CHECK_FALSE(vars.count("RFAAS_FABRIC_HOST"));
  auto lookup = [&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  const fabric::Config back = fabric::Config::from_variables(lookup);
  CHECK(back.backend == c.backend);
  CHECK(back.faults == c.faults);
  CHECK(back.ofi_provider == c.ofi_provider);
  CHECK(back.verbs_device == c.verbs_device);
  CHECK(back.verbs_gid_index == c.verbs_gid_index);
  CHECK(back.local_host == fabric::Config{}.local_host);
  CHECK_FALSE(back.local_host_chosen);

  // Unset keeps the defaults; a GID index that is not one is refused by name.
  const fabric::Config defaults = fabric::Config::from_variables([](const char*) -> const char* { return nullptr; });
  CHECK(defaults.ofi_provider == "auto");
  CHECK(defaults.verbs_gid_index == -1);
  CHECK(defaults.verbs_device.empty());
  // The verbs settings are read for verbs only: another backend starts whatever they say.
  const fabric::Config ofi = fabric::Config::from_variables([](const char* name) -> const char* {
    return std::string(name) == "RFAAS_FABRIC" ? "ofi" : std::string(name) == "RFAAS_VERBS_GID_INDEX" ? "x" : nullptr;
  });
  CHECK(ofi.backend == fabric::Backend::ofi);
  CHECK(ofi.verbs_gid_index == -1);
  for (const char* bad : {"-1", "256", "1x", "x"}) {
    try {
      fabric::Config::from_variables([&](const char* name) -> const char* {
        if (std::string(name) == "RFAAS_FABRIC") return "verbs";
        return std::string(name) == "RFAAS_VERBS_GID_INDEX" ? bad : nullptr;
      });
      FAIL(std::string("accepted RFAAS_VERBS_GID_INDEX=") + bad);
    } catch (const fabric::Error& e) {
      CHECK(e.code() == Errc::invalid_argument);
      CHECK(std::string(e.what()).find("RFAAS_VERBS_GID_INDEX") != std::string::npos);
    }
  }
}
