// libFuzzer harness over the control-message parsers (runtime/protocol): every byte string a
// client, executor daemon, executor or broker could send one another, and the worker hello an
// executor's listener judges (any 48 bytes as connection data). A parser may refuse input only with MessageError; any
// other exception, crash, leak or undefined behaviour is a finding.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/lease_token.hpp"

using namespace rfaas::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 48 bytes as a connector's hello: checked against a lease's key, never trusted.
  if (size >= sizeof(WorkerHello)) {
    WorkerHello hello;
    std::memcpy(&hello, data, sizeof hello);
    LeaseToken t;
    t.mac = std::string(64, 'a');
    if (worker_hello_valid(hello, worker_hello_key(t))) __builtin_trap();  // a forged tag verified
  }
  std::vector<uint8_t> frame(data, data + size);
  ControlMessage m;
  try {
    m = ControlMessage::parse(frame);
  } catch (const MessageError&) {
    return 0;
  }
  // Every typed view of every message: the fields are checked whatever the type says.
  auto attempt = [&](auto tag) {
    try {
      (void)m.as<decltype(tag)>();
    } catch (const MessageError&) {
    }
  };
  attempt(AllocateRequest{});
  attempt(Allocated{});
  attempt(LeaseEnded{});
  attempt(LeaseAssignment{});
  attempt(Usage{});
  attempt(LeaseToken{});
  attempt(NodeRegistration{});
  attempt(LeaseAsk{});
  attempt(LeaseGranted{});
  attempt(LeaseRenewAsk{});
  attempt(RenewRequest{});
  attempt(AdminCommand{});
  attempt(CreateRegionRequest{});
  attempt(RegionCreated{});
  // A token that parses can be canonicalised and checked without trouble.
  try {
    auto t = m.as<LeaseToken>();
    ClusterSecret secret(std::vector<uint8_t>(32, 7));
    (void)t.verify(secret);
  } catch (const MessageError&) {
  }
  try {
    auto r = m.as<NodeRegistration>();
    ClusterSecret secret(std::vector<uint8_t>(32, 7));
    (void)r.verify(secret);
  } catch (const MessageError&) {
  }
  // What a broker request's credential must carry, for whatever body arrived.
  (void)request_digest(m.type, m.body);
  return 0;
}
