// runtime/protocol: immediates, lease tokens, the cluster secret file, control messages.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>

#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/lease_token.hpp"

using namespace rfaas::protocol;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("rfaas-test-" + std::to_string(getpid()) + "-" + std::to_string(rand()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

ClusterSecret test_secret() { return ClusterSecret(std::vector<uint8_t>(32, 0x42)); }

LeaseToken sample_token() {
  LeaseToken t;
  t.lease_id = 17;
  t.executor = "node-a";
  t.cores = 2;
  t.memory_bytes = 1 << 30;
  t.expires_at_ms = 1'900'000'000'000;
  t.client = "rank-0";
  t.uid = 1000;
  t.gid = 1000;
  return t;
}
}  // namespace

TEST_CASE("immediates round-trip every field at its limits", "[protocol]") {
  for (uint32_t slot : {0u, 1u, kMaxSlots - 1})
    for (uint32_t fn : {0u, 7u, kMaxFunctions - 1}) {
      uint32_t imm = request_imm(slot, fn);
      CHECK(request_slot(imm) == slot);
      CHECK(request_function(imm) == fn);
      CHECK(request_reserved(imm) == 0);
    }
  for (uint32_t slot : {0u, 1u, kMaxSlots - 1})
    for (uint32_t fn : {0u, 7u, kMaxCompactFunctions - 1})
      for (uint32_t size : {0u, 1u, 1024u, kMaxCompactPayload}) {
        uint32_t imm = compact_request_imm(slot, fn, size);
        CHECK(request_is_compact(imm));
        CHECK(request_slot(imm) == slot);
        CHECK(request_function(imm) == fn);
        CHECK(compact_request_size(imm) == size);
      }
  CHECK_FALSE(request_is_compact(request_imm(kMaxSlots - 1, kMaxFunctions - 1)));
  CHECK(kMaxCompactPayload == 128 * 1024 - 2);
  // The size field's sentinel: the header's in_size, not a size of its own.
  CHECK(compact_request_size(compact_request_imm(5, 3, kCompactSizeFromHeader)) == kCompactSizeFromHeader);
  CHECK(kCompactSizeFromHeader > kMaxCompactPayload);
  // A framed request with the reserved bits set is told apart from a compact one.
  CHECK(request_reserved(request_imm(3, 5) | (1u << 29)) != 0);
  CHECK(request_reserved(request_imm(3, 5) | kRegionOpFlag) == 0);  // a region op, not a reserved bit
  CHECK(request_reserved(request_imm(3, 5) | kCompactFlag) == 0);
  // Region ops: told apart from framed and compact requests, every slot and op round-trips.
  for (uint32_t slot : {0u, 1u, kMaxSlots - 1})
    for (auto op : {RegionOp::put, RegionOp::get}) {
      uint32_t imm = region_op_imm(slot, op);
      CHECK(request_is_region_op(imm));
      CHECK_FALSE(request_is_compact(imm));
      CHECK(request_slot(imm) == slot);
      CHECK(request_region_op(imm) == op);
      CHECK(region_op_reserved(imm) == 0);
      CHECK(region_op_reserved(imm | (1u << 8)) != 0);
    }
  CHECK_FALSE(request_is_region_op(request_imm(kMaxSlots - 1, kMaxFunctions - 1)));
  CHECK_FALSE(request_is_region_op(compact_request_imm(1, 1, kMaxCompactPayload)));
  for (auto st : {InvocationStatus::ok, InvocationStatus::unknown_function, InvocationStatus::bad_request,
                  InvocationStatus::function_failed, InvocationStatus::put_done, InvocationStatus::region_error})
    for (uint32_t size : {0u, 1u, static_cast<uint32_t>(kMaxResultSize)}) {
      uint32_t imm = response_imm(kMaxSlots - 1, st, size);
      CHECK(response_slot(imm) == kMaxSlots - 1);
      CHECK(response_status(imm) == st);
      CHECK(response_size(imm) == size);
    }
  // The payload of every slot starts on a cache line, its header right before it.
  CHECK(input_slot_stride(0) == 128);  // room for a get's RegionGet even without input capacity
  CHECK(slot_header_offset(0, input_slot_stride(0)) + sizeof(InvocationHeader) + sizeof(RegionGet) <=
        input_slot_stride(0));
  CHECK(input_slot_stride(64) == 128);
  CHECK(input_slot_stride(65) == 192);
  for (uint64_t cap : {uint64_t{1}, uint64_t{100}, uint64_t{1} << 20})
    for (uint32_t slot : {0u, 1u, 63u}) {
      const uint64_t stride = input_slot_stride(cap);
      CHECK(slot_payload_offset(slot, stride) % 64 == 0);
      CHECK(slot_header_offset(slot, stride) + sizeof(InvocationHeader) == slot_payload_offset(slot, stride));
      CHECK(slot_payload_offset(slot, stride) + cap <= (slot + 1) * stride);
    }
}

TEST_CASE("a signed token verifies; any change to it does not", "[protocol][token]") {
  auto secret = test_secret();
  LeaseToken t = sample_token();
  t.sign(secret);
  CHECK(t.mac.size() == 64);
  CHECK(t.verify(secret));
  CHECK_FALSE(t.verify(ClusterSecret(std::vector<uint8_t>(32, 0x43))));
  auto altered = [&](auto change) {
    LeaseToken u = t;
    change(u);
    return u.verify(secret);
  };
  CHECK_FALSE(altered([](LeaseToken& u) { u.cores = 3; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.expires_at_ms += 1; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.executor = "node-b"; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.lease_id = 18; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.client = "rank-1"; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.uid = 0; }));  // the lease's user is signed
  CHECK_FALSE(altered([](LeaseToken& u) { u.gid += 1; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.job = "42"; }));
  CHECK_FALSE(altered([](LeaseToken& u) { u.mac[10] = u.mac[10] == 'a' ? 'b' : 'a'; }));
  // Fields cannot be shifted between each other through the separator.
  CHECK_FALSE(altered([](LeaseToken& u) { u.executor = "node-a\n2"; u.cores = 0; }));
  // And it survives JSON.
  LeaseToken back = nlohmann::json(t).get<LeaseToken>();
  CHECK(back.verify(secret));
}

TEST_CASE("the cluster secret file must be private", "[protocol][token]") {
  TempDir dir;
  auto path = (dir.path / "secret").string();
  ClusterSecret::generate(path);
  CHECK(ClusterSecret::load(path).key().size() == 32);
  CHECK_THROWS_AS(ClusterSecret::generate(path), SecretError);  // never overwrites
  ::chmod(path.c_str(), 0640);
  CHECK_THROWS_WITH(ClusterSecret::load(path), Catch::Contains("chmod 600"));
  auto short_path = (dir.path / "short").string();
  { std::ofstream(short_path) << "tiny"; }
  ::chmod(short_path.c_str(), 0600);
  CHECK_THROWS_WITH(ClusterSecret::load(short_path), Catch::Contains("shorter than 16"));
  CHECK_THROWS_AS(ClusterSecret::load((dir.path / "missing").string()), SecretError);
}

TEST_CASE("control messages round-trip", "[protocol][control]") {
  AllocateRequest req;
  req.token = sample_token();
  req.token.sign(test_secret());
  req.library_sha256 = sha256_hex("abc", 3);
  req.library_size = 3;
  req.library_name = "libx.so";
  req.functions = {"echo", "saxpy"};
  req.params.workers = 2;
  req.dependencies = {{sha256_hex("d", 1), 1, "libhelper.so.1"}};
  req.host = "boot-id/node7";
  req.ofi_provider = "tcp";
  auto frame = make_message("allocate", req);
  auto msg = ControlMessage::parse(bytes(frame));
  CHECK(msg.type == "allocate");
  auto back = msg.as<AllocateRequest>();
  CHECK(back.functions == req.functions);
  REQUIRE(back.dependencies.size() == 1);
  CHECK(back.dependencies[0].name == "libhelper.so.1");
  CHECK(back.dependencies[0].sha256 == req.dependencies[0].sha256);
  CHECK(back.dependencies[0].size == 1);
  CHECK(back.params == req.params);
  CHECK(back.token.verify(test_secret()));
  CHECK(back.host == "boot-id/node7");
  CHECK(back.ofi_provider == "tcp");
  Allocated allocated{9, "node7:4000", 2, false, "tcp"};
  auto a = ControlMessage::parse(bytes(make_message("allocated", allocated))).as<Allocated>();
  CHECK(a.ofi_provider == "tcp");
  LeaseAssignment assignment;
  assignment.cores = {0};
  assignment.ofi_provider = "shm";
  CHECK(nlohmann::json(assignment).get<LeaseAssignment>().ofi_provider == "shm");
  // Older peers send none of them: empty, the choice left to the side that makes it.
  nlohmann::json old = nlohmann::json(allocated);
  old.erase("ofi_provider");
  CHECK(old.get<Allocated>().ofi_provider.empty());
  CHECK(req.library_sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  LeaseEnded ended{LeaseEndReason::expired, "at 123", {5, 6, 7}};
  auto e = ControlMessage::parse(bytes(make_message("lease_ended", ended))).as<LeaseEnded>();
  CHECK(e.reason == LeaseEndReason::expired);
  CHECK(e.usage.compute_ns == 7);
  auto err = ControlMessage::parse(bytes(make_error(ControlErrc::bad_token, "nope")));
  CHECK(err.type == "error");
  CHECK(control_errc_from_string(err.body.at("code").get<std::string>()) == ControlErrc::bad_token);
}

TEST_CASE("every control message type spells one way", "[protocol][control]") {
  for (auto t : {ControlType::allocate, ControlType::send_library, ControlType::allocated, ControlType::create_region,
                 ControlType::region_created, ControlType::usage, ControlType::usage_report, ControlType::renew,
                 ControlType::renewed, ControlType::release, ControlType::lease_ended, ControlType::error}) {
    INFO(to_string(t));
    CHECK(control_type_from_string(to_string(t)) == t);
    CHECK(ControlMessage::parse(bytes(make_message(t))).is(t));
  }
  CHECK_FALSE(control_type_from_string("lease_granted"));  // the broker's, not the daemon's
  CHECK_FALSE(control_type_from_string(""));
}

TEST_CASE("every broker message type spells one way, as the wire has always spelt it", "[protocol][broker]") {
  const std::vector<std::pair<BrokerType, std::string>> wire = {
      {BrokerType::register_node, "register"}, {BrokerType::registered, "registered"}, {BrokerType::lease, "lease"},
      {BrokerType::lease_granted, "lease_granted"}, {BrokerType::renew, "renew"},
      {BrokerType::lease_renewed, "lease_renewed"}, {BrokerType::release, "release"}, {BrokerType::released, "released"},
      {BrokerType::lease_usage, "lease_usage"}, {BrokerType::recorded, "recorded"}, {BrokerType::drain, "drain"},
      {BrokerType::draining, "draining"}, {BrokerType::status, "status"}, {BrokerType::admin, "admin"},
      {BrokerType::done, "done"}, {BrokerType::error, "error"}};
  for (const auto& [t, name] : wire) {
    INFO(name);
    CHECK(to_string(t) == name);
    CHECK(broker_type_from_string(name) == t);
    CHECK(ControlMessage::parse(bytes(make_message(t))).is(t));
  }
  CHECK(wire.size() == static_cast<size_t>(BrokerType::error) + 1);  // every type listed
  CHECK_FALSE(broker_type_from_string("allocate"));  // the daemon's, not the broker's
  CHECK_FALSE(broker_type_from_string("launch"));
  CHECK_FALSE(broker_type_from_string(""));
}

TEST_CASE("every lease-end reason round-trips; an unknown one is refused", "[protocol][control]") {
  for (auto r : {LeaseEndReason::expired, LeaseEndReason::released, LeaseEndReason::executor_crashed,
                 LeaseEndReason::memory_exceeded, LeaseEndReason::revoked, LeaseEndReason::client_gone,
                 LeaseEndReason::deploy_refused}) {
    INFO(to_string(r));
    CHECK(lease_end_reason_from_string(to_string(r)) == r);
    LeaseEnded ended{r, "", {}};
    CHECK(nlohmann::json(ended).get<LeaseEnded>().reason == r);
  }
  CHECK_FALSE(lease_end_reason_from_string("crashed"));
  CHECK_FALSE(lease_end_reason_from_string(""));
  CHECK_FALSE(lease_end_reason_from_string("deploy_refused: bad_token"));  // the old broker vocabulary
  nlohmann::json j = LeaseEnded{LeaseEndReason::revoked, "", {}};
  j["reason"] = "vanished";
  try {
    j.get<LeaseEnded>();
    FAIL("an unknown reason was taken");
  } catch (const MessageError& e) {
    CHECK(e.code() == ControlErrc::malformed);
    CHECK(std::string(e.what()).find("vanished") != std::string::npos);
  }
}

TEST_CASE("malformed control messages are named errors", "[protocol][control]") {
  auto expect_malformed = [](const std::string& text, const char* mentions) {
    INFO(text);
    try {
      auto m = ControlMessage::parse(bytes(text));
      m.as<AllocateRequest>();
      FAIL("accepted");
    } catch (const MessageError& e) {
      CHECK(e.code() == ControlErrc::malformed);
      CHECK_THAT(e.what(), Catch::Contains(mentions));
    }
  };
  expect_malformed("", "not a JSON object");
  expect_malformed("{not json", "not a JSON object");
  expect_malformed("[1,2]", "not a JSON object");
  expect_malformed(R"({"version":1})", "without a type");
  expect_malformed(R"({"type":"allocate","version":99})", "unsupported version");
  expect_malformed(R"({"type":"allocate","version":1,"body":{}})", "token");
  nlohmann::json good = nlohmann::json::parse(make_message("allocate", [] {
    AllocateRequest r;
    r.token = sample_token();
    r.token.sign(test_secret());
    r.library_sha256 = std::string(64, 'a');
    r.functions = {"f"};
    return r;
  }()));
  auto with = [&](const char* field, nlohmann::json value) {
    auto j = good;
    j["body"][field] = value;
    return j.dump();
  };
  expect_malformed(with("workers", -1), "workers");
  expect_malformed(with("workers", "two"), "workers");
  expect_malformed(with("workers", 1ull << 40), "out of range");
  expect_malformed(with("functions", nlohmann::json::array()), "no functions");
  expect_malformed(with("functions", {1, 2}), "function names");
  expect_malformed(with("library_sha256", "xyz"), "library_sha256");
  const nlohmann::json dep = {{"sha256", std::string(64, 'b')}, {"size", 1}, {"name", "libd.so"}};
  expect_malformed(with("dependencies", "libd.so"), "dependencies must be an array");
  expect_malformed(with("dependencies", nlohmann::json(std::vector<nlohmann::json>(17, dep))), "at most 16");
  auto bad_dep = dep;
  bad_dep["name"] = "../../etc/libd.so";
  expect_malformed(with("dependencies", nlohmann::json::array({bad_dep})), "a file name");
  bad_dep = dep;
  bad_dep["sha256"] = "nothex";
  expect_malformed(with("dependencies", nlohmann::json::array({bad_dep})), "sha256");
  auto j = good;
  j["body"]["token"]["mac"] = "short";
  expect_malformed(j.dump(), "mac");
  j = good;
  j["body"]["token"].erase("expires_at_ms");
  expect_malformed(j.dump(), "expires_at_ms");
}

TEST_CASE("JSON nested beyond the limit is refused before it is parsed", "[protocol]") {
  auto depth = [](const std::string& t) { return json_depth(t.data(), t.data() + t.size()); };
  CHECK(depth("{}") == 1);
  CHECK(depth(R"({"a":[1,{"b":[]}]})") == 4);
  CHECK(depth(R"({"s":"[[[[{{{{ \" [[[ \\"})") == 1);  // brackets in strings, escaped quotes
  CHECK(depth(std::string(100000, '[')) == kMaxJsonDepth + 1);  // stops at the limit
  auto nested = [](size_t levels) {
    std::string body;
    for (size_t i = 0; i < levels; ++i) body += "[";
    for (size_t i = 0; i < levels; ++i) body += "]";
    return R"({"type":"status","version":1,"body":{"x":)" + body + "}}";
  };
  auto frame = [](const std::string& t) { return std::vector<uint8_t>(t.begin(), t.end()); };
  CHECK(ControlMessage::parse(frame(nested(kMaxJsonDepth - 2))).type == "status");  // within: parsed
  for (size_t levels : {size_t{kMaxJsonDepth}, size_t{30000}}) {
    try {
      ControlMessage::parse(frame(nested(levels)));
      FAIL("parsed " << levels << " levels");
    } catch (const MessageError& e) {
      CHECK(e.code() == ControlErrc::malformed);
      CHECK(std::string(e.what()).find("nested deeper") != std::string::npos);
    }
  }
}

TEST_CASE("a request's digest covers its type and body, not its credential", "[protocol]") {
  nlohmann::json body = {{"cores", 2}, {"client", "c"}};
  auto d = request_digest("lease", body);
  CHECK(d.size() == 64);
  nlohmann::json with = body;
  with["credential"] = "MUNGE:abc";
  CHECK(request_digest("lease", with) == d);      // the credential itself is not covered
  CHECK(request_digest("release", body) != d);    // nor usable for another request type
  body["cores"] = 3;
  CHECK(request_digest("lease", body) != d);      // nor for another body
  // The broker sees the body as parsed from the wire: same digest.
  CHECK(request_digest("lease", nlohmann::json::parse(with.dump())) == d);
}

TEST_CASE("each purpose signs with its own derived key", "[protocol][token]") {
  auto secret = test_secret();
  auto token = secret.derive(kTokenKey), node = secret.derive(kNodeKey);
  CHECK(token.key() != secret.key());
  CHECK(token.key() != node.key());
  CHECK(secret.derive(kTokenKey).key() == token.key());  // deterministic
  LeaseToken t;
  t.lease_id = 3;
  t.executor = "n";
  t.cores = 1;
  t.expires_at_ms = 1;
  t.sign(secret);
  CHECK(t.verify(secret));
  CHECK(token.verify(t.canonical(), t.mac));
  CHECK_FALSE(secret.verify(t.canonical(), t.mac));  // not the cluster key itself
  CHECK_FALSE(node.verify(t.canonical(), t.mac));
  t.mac = secret.sign(t.canonical());  // made with the cluster key: refused
  CHECK_FALSE(t.verify(secret));
}

TEST_CASE("a worker hello is signed with its lease's key; any change breaks it", "[protocol][token]") {
  auto secret = test_secret();
  LeaseToken t = sample_token();
  t.sign(secret);
  const auto key = worker_hello_key(t);
  CHECK(key.size() == 64);
  CHECK(key.find(t.mac) == std::string::npos);  // the key is not the MAC itself
  WorkerHello h{1, kWorkerHelloVersion, t.lease_id, 0x1000, 77, {}};
  CHECK_FALSE(worker_hello_valid(h, key));  // unsigned
  sign_worker_hello(h, key);
  CHECK(worker_hello_valid(h, key));
  for (auto change : std::vector<std::function<void(WorkerHello&)>>{
           [](WorkerHello& x) { x.worker = 0; }, [](WorkerHello& x) { x.lease_id += 1; },
           [](WorkerHello& x) { x.ack_address += 8; }, [](WorkerHello& x) { x.ack_key = 1; },
           [](WorkerHello& x) { x.tag[15] ^= 1; }}) {
    WorkerHello y = h;
    change(y);
    CHECK_FALSE(worker_hello_valid(y, key));
  }
  LeaseToken other = t;
  other.lease_id = 18;
  other.sign(secret);
  CHECK_FALSE(worker_hello_valid(h, worker_hello_key(other)));  // another lease's key
}

TEST_CASE("lease parameters: one validator, named errors, checked wherever a message carries them",
          "[protocol][control]") {
  LeaseParameters ok;
  CHECK(lease_parameters_error(ok).empty());
  struct Case {
    const char* what;
    LeaseParameters p;
    const char* named;
  } cases[] = {
      {"no workers", {0, 4, 1024, 1024, 0}, "workers"},
      {"no slots", {1, 0, 1024, 1024, 0}, "slots"},
      {"more slots than the immediate names", {1, kMaxSlots + 1, 1024, 1024, 0}, "slots"},
      {"an input beyond the protocol", {1, 4, kMaxInputCapacity + 1, 1024, 0}, "input capacity"},
      {"an output beyond the immediate's size field", {1, 4, 1024, kMaxOutputCapacity + 1, 0}, "output capacity"},
      {"a hot timeout below -1", {1, 4, 1024, 1024, -2}, "hot_timeout_us"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    CHECK_THAT(lease_parameters_error(c.p), Catch::Contains(c.named));
    // The same refusal where a message carries them: an allocate request and an assignment.
    nlohmann::json j = nlohmann::json::object();
    write_fields(j, c.p);
    CHECK_THROWS_WITH(read_lease_parameters(j), Catch::Contains(c.named));
  }
  nlohmann::json j = nlohmann::json::object();
  write_fields(j, ok);
  CHECK(read_lease_parameters(j) == ok);
  j.erase("slots");
  CHECK_THROWS_WITH(read_lease_parameters(j), Catch::Contains("slots"));
  CHECK(lease_slot_memory({2, 3, 100, 50, 0}) == 2u * 3u * (input_slot_stride(100) + 50));
}
