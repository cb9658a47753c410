// runtime/protocol/executor_messages: the daemon's commands to an executor and its reports back.
#include <catch2/catch.hpp>

#include "protocol/executor_messages.hpp"

using namespace rfaas::protocol;

namespace {

// `f` throws MessageError(malformed) whose text names `mentions`.
template <class F>
void expect_malformed(F&& f, const std::string& mentions) {
  INFO("expected a malformed error naming " << mentions);
  try {
    f();
    FAIL("accepted");
  } catch (const MessageError& e) {
    CHECK(e.code() == ControlErrc::malformed);
    CHECK_THAT(e.what(), Catch::Contains(mentions));
  }
}

template <class T>
T command_round_trip(const T& m) {
  auto c = ExecutorCommand::parse(make_command(m));
  CHECK(c.type == ExecutorCommandOf<T>::type);
  return c.template as<T>();
}

template <class T>
T report_round_trip(const T& m) {
  auto r = ExecutorReport::parse(make_report(m));
  CHECK(r.event == ExecutorEventOf<T>::type);
  return r.template as<T>();
}

}  // namespace

TEST_CASE("every executor message type and end spells one way", "[protocol][executor]") {
  for (auto t : {ExecutorCommandType::assign, ExecutorCommandType::dependency, ExecutorCommandType::renew,
                 ExecutorCommandType::create_region, ExecutorCommandType::usage})
    CHECK(executor_command_from_string(to_string(t)) == t);
  for (auto t : {ExecutorEventType::ready, ExecutorEventType::failed, ExecutorEventType::usage, ExecutorEventType::usage_now,
                 ExecutorEventType::region, ExecutorEventType::region_failed, ExecutorEventType::fault})
    CHECK(executor_event_from_string(to_string(t)) == t);
  for (auto e : {ExecutorEnd::signal, ExecutorEnd::expired, ExecutorEnd::clients_gone, ExecutorEnd::daemon_gone})
    CHECK(executor_end_from_string(to_string(e)) == e);
  CHECK_FALSE(executor_command_from_string("release"));
  CHECK_FALSE(executor_event_from_string("allocated"));
  CHECK_FALSE(executor_end_from_string(""));
}

TEST_CASE("executor commands round-trip", "[protocol][executor]") {
  CHECK(command_round_trip(DependencyCommand{"libdep.so"}).name == "libdep.so");
  CHECK(command_round_trip(RenewCommand{1234}).expires_at_ms == 1234);
  auto cr = command_round_trip(CreateRegionCommand{1 << 20, 7});
  CHECK(cr.bytes == (1 << 20));
  CHECK(cr.seq == 7);
  CHECK(command_round_trip(UsageCommand{9}).seq == 9);
  LeaseAssignment a;
  a.lease_id = 42;
  a.functions = {"echo"};
  a.cores = {1, 2};
  a.params = {2, 8, 4096, 512, -1};
  auto back = command_round_trip(a);
  CHECK(back.lease_id == 42);
  CHECK(back.cores == std::vector<int>{1, 2});
  CHECK(back.params == a.params);
  a.params.workers = 3;  // one worker per core, or the assignment is refused
  CHECK_THROWS_WITH(command_round_trip(a), Catch::Contains("one worker per core"));
}

TEST_CASE("executor reports round-trip", "[protocol][executor]") {
  CHECK(report_round_trip(ReadyReport{"127.0.0.1:5000"}).address == "127.0.0.1:5000");
  auto f = report_round_trip(FailedReport{ControlErrc::library_load_failed, "no symbol"});
  CHECK(f.code == ControlErrc::library_load_failed);
  CHECK(f.detail == "no symbol");
  auto u = report_round_trip(FinalUsageReport{{3, 4, 5}, ExecutorEnd::clients_gone});
  CHECK(u.usage.invocations == 3);
  CHECK(u.usage.compute_ns == 5);
  CHECK(u.ended == ExecutorEnd::clients_gone);
  auto n = report_round_trip(UsageNowReport{11, {1, 2, 3}});
  CHECK(n.seq == 11);
  CHECK(n.usage.hot_polling_ns == 2);
  auto r = report_round_trip(RegionReport{5, {2, 0x1000, 77, 4096}});
  CHECK(r.seq == 5);
  CHECK(r.region.id == 2);
  CHECK(r.region.key == 77);
  CHECK(r.region.length == 4096);
  CHECK(ExecutorReport::parse(make_report(RegionReport{5, {}})).seq() == 5);
  auto rf = report_round_trip(RegionFailedReport{6, "mlock"});
  CHECK(rf.seq == 6);
  CHECK(rf.detail == "mlock");
  CHECK(report_round_trip(FaultReport{"function 'f' wrote past"}).detail == "function 'f' wrote past");
  // output_guard writes this line by hand in its signal handler: it must parse as a fault.
  auto hand = ExecutorReport::parse(R"({"event":"fault","detail":"function 'f' wrote past the end of its output"})");
  CHECK(hand.event == ExecutorEventType::fault);
}

TEST_CASE("bad executor messages are named errors", "[protocol][executor]") {
  expect_malformed([] { ExecutorCommand::parse("not json"); }, "not a JSON object");
  expect_malformed([] { ExecutorCommand::parse("[1]"); }, "not a JSON object");
  expect_malformed([] { ExecutorCommand::parse(R"({"seq":1})"); }, "'type'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"reboot"})"); }, "unknown type 'reboot'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"renew"})").as<RenewCommand>(); }, "'expires_at_ms'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"renew","expires_at_ms":-5})").as<RenewCommand>(); }, "'expires_at_ms'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"create_region","seq":1})").as<CreateRegionCommand>(); }, "'bytes'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"create_region","bytes":-1,"seq":1})").as<CreateRegionCommand>(); }, "'bytes'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"usage"})").as<UsageCommand>(); }, "'seq'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"dependency","name":3})").as<DependencyCommand>(); }, "'name'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"usage","seq":1})").as<RenewCommand>(); }, "expected 'renew', got 'usage'");
  expect_malformed([] { ExecutorCommand::parse(R"({"type":"assign","lease_id":1})").as<LeaseAssignment>(); }, "'functions'");

  expect_malformed([] { ExecutorReport::parse(std::string(40, '[') + std::string(40, ']')); }, "nested deeper");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"exploded"})"); }, "unknown event 'exploded'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"ready"})").as<ReadyReport>(); }, "'address'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"ready","address":""})").as<ReadyReport>(); }, "'address'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"failed","code":"oops","detail":""})").as<FailedReport>(); }, "unknown code 'oops'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"failed","code":"internal"})").as<FailedReport>(); }, "'detail'");
  expect_malformed(
      [] {
        ExecutorReport::parse(R"({"event":"usage","invocations":1,"hot_polling_ns":2,"compute_ns":3,"ended":"bored"})")
            .as<FinalUsageReport>();
      },
      "unknown ended 'bored'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"usage","invocations":1,"ended":"signal"})").as<FinalUsageReport>(); },
                   "'hot_polling_ns'");
  expect_malformed(
      [] { ExecutorReport::parse(R"({"event":"usage_now","invocations":1,"hot_polling_ns":2,"compute_ns":3})").as<UsageNowReport>(); },
      "'seq'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"region","seq":1,"id":0,"address":1,"key":2})").as<RegionReport>(); },
                   "'length'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"region_failed","seq":1})").as<RegionFailedReport>(); }, "'detail'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"fault"})").as<FaultReport>(); }, "'detail'");
  expect_malformed([] { ExecutorReport::parse(R"({"event":"fault","detail":"x"})").as<ReadyReport>(); }, "expected 'ready', got 'fault'");
}
