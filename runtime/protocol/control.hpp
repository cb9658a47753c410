// Control messages between clients, executor daemons and executors: length-prefixed JSON over
// TCP (runtime/net frames). Cold path. Each message has a "type"; parsing validates every
// field and throws MessageError naming the problem, so a daemon can answer and carry on.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/lease_parameters.hpp"
#include "protocol/lease_token.hpp"
#include "rfaas/coded_error.hpp"

namespace rfaas::protocol {

inline constexpr uint32_t kControlVersion = 1;
inline constexpr size_t kMaxControlFrame = 64 * 1024;
// Control messages nest a few levels; deeper JSON from a peer is refused before it is parsed
// (the parser recurses once per level).
inline constexpr size_t kMaxJsonDepth = 32;
// The deepest nesting of arrays and objects in `text` (strings, with their escapes, skipped),
// scanning stops beyond `limit`: then it returns limit + 1. Malformed text is the parser's to refuse.
size_t json_depth(const char* begin, const char* end, size_t limit = kMaxJsonDepth);
// At most `bytes` of `s`, cut before a UTF-8 sequence rather than inside one (JSON needs whole ones).
inline std::string utf8_prefix(const std::string& s, size_t bytes) {
  if (s.size() <= bytes) return s;
  while (bytes > 0 && (static_cast<unsigned char>(s[bytes]) & 0xC0) == 0x80) --bytes;
  return s.substr(0, bytes);
}

// Error codes on the wire, in "error" replies and lease_ended notices.
enum class ControlErrc {
  malformed,            // not a valid message of this protocol
  bad_token,            // MAC does not verify, or the token is for another daemon
  lease_expired,        // the token's expiry has passed
  lease_active,         // this lease id is already being served
  lease_ended,          // this lease id was served and has ended: its token is spent
  no_capacity,          // not enough free cores or memory
  library_mismatch,     // library bytes do not match the announced size or SHA-256
  library_load_failed,  // dlopen failed or a function name does not resolve
  executor_failed,      // the executor process failed to start
  memory_exceeded,      // a resident region beyond what is left of the lease's memory
  policy,               // beyond the broker's policy (longest lease, most cores per lease or user)
  not_authenticated,    // no MUNGE credential, or one that munged refuses (forged, replayed, expired)
  not_permitted,        // another user's lease, or an operator's command from someone else
  internal,
};
const char* to_string(ControlErrc);
std::optional<ControlErrc> control_errc_from_string(const std::string&);

using MessageError = CodedError<ControlErrc>;

// A library the function library links, shipped with it (and cached like it by content).
struct LibraryRef {
  std::string sha256;  // hex
  uint64_t size = 0;
  std::string name;    // its file name, for errors
};
inline constexpr size_t kMaxDependencies = 16;

struct AllocateRequest {
  LeaseToken token;
  std::string library_sha256;  // hex
  uint64_t library_size = 0;
  std::string library_name;    // for logs
  std::vector<std::string> functions;  // resolved once; index i is function i on the wire
  // Loaded before the library, in this order, so that its DT_NEEDED entries on their SONAMEs
  // resolve to them. The daemon asks for each one it has not cached with "send_library"
  // {"sha256"} (the library itself: that body's sha256 is library_sha256, or no body).
  std::vector<LibraryRef> dependencies;
  LeaseParameters params;  // checked on parsing (lease_parameters_error)
  // How the transport is picked (fabric.hpp): the client's host (fabric::host_identity) and the
  // ofi provider it was told to use ("auto": the daemon's choice). Empty: unknown / auto.
  std::string host;
  std::string ofi_provider;
};

// Client -> daemon during a lease: a resident region of `bytes`, counted against the token's
// memory_bytes. Answered with RegionCreated or an error (memory_exceeded).
struct CreateRegionRequest {
  uint64_t bytes = 0;
};
struct RegionCreated {
  uint32_t id = 0;
  uint64_t address = 0;  // the fabric::RemoteRegion puts write to
  uint64_t key = 0;
  uint64_t length = 0;
};

// Client -> daemon during a lease: the broker's renewed token (same lease, later expiry).
struct RenewRequest {
  LeaseToken token;
};

struct Allocated {
  uint64_t lease_id = 0;
  std::string address;  // executor's fabric listener, host:port
  uint32_t workers = 0;
  bool library_cached = false;
  std::string ofi_provider;  // what the executor serves this lease over ("" : not ofi, or an older daemon)
};

// Daemon -> standby executor: the lease it is to serve (sent with the library's fd attached).
struct LeaseAssignment {
  uint64_t lease_id = 0;
  std::vector<std::string> functions;
  std::vector<int> cores;  // one worker per core, pinned: params.workers of them
  LeaseParameters params;
  int64_t expires_at_ms = 0;
  uint32_t accept_timeout_ms = 10'000;
  // Who the lease's code runs as (the token's user): the executor becomes them before it loads
  // the library. `confined`: the daemon placed it in the lease's cgroup; if not, the executor
  // limits itself with rlimits (memory_limit_bytes, max_tasks) instead.
  uint32_t uid = 0;
  uint32_t gid = 0;
  bool confined = false;
  uint64_t memory_limit_bytes = 0;
  uint32_t max_tasks = 0;
  std::string hello_key;  // worker_hello_key(token): what the client's worker hellos must be signed with
  std::string library_name;  // the client's name for the library, for its errors (it loads from a memfd)
  std::string ofi_provider;  // the lease's ofi provider; "": the one the standby opened
};

struct Usage {
  uint64_t invocations = 0;
  uint64_t hot_polling_ns = 0;
  uint64_t compute_ns = 0;
};

// Why a lease ended: the daemon's lease_ended to the client and its usage report to the broker.
enum class LeaseEndReason {
  expired,           // the token's expiry passed
  released,          // the client released it, or the executor ended it cleanly (its clients gone)
  executor_crashed,  // the executor died (a fault report names the function when there was one)
  memory_exceeded,   // the kernel killed the lease's processes at its memory limit
  revoked,           // the broker ended it, or the node is being taken back (shutdown, scancel)
  client_gone,       // the control connection closed (never sent to the client: nobody to hear it)
  deploy_refused,    // a genuine token whose deploy failed (to the broker only): spent, cores freed
};
const char* to_string(LeaseEndReason);
std::optional<LeaseEndReason> lease_end_reason_from_string(const std::string&);

struct LeaseEnded {
  LeaseEndReason reason = LeaseEndReason::released;
  std::string detail;
  Usage usage;
};

void to_json(nlohmann::json& j, const AllocateRequest& m);
void from_json(const nlohmann::json& j, AllocateRequest& m);
void to_json(nlohmann::json& j, const CreateRegionRequest& m);
void from_json(const nlohmann::json& j, CreateRegionRequest& m);
void to_json(nlohmann::json& j, const RegionCreated& m);
void from_json(const nlohmann::json& j, RegionCreated& m);
void to_json(nlohmann::json& j, const RenewRequest& m);
void from_json(const nlohmann::json& j, RenewRequest& m);
void to_json(nlohmann::json& j, const Allocated& m);
void from_json(const nlohmann::json& j, Allocated& m);
void to_json(nlohmann::json& j, const LeaseAssignment& m);
void from_json(const nlohmann::json& j, LeaseAssignment& m);
void to_json(nlohmann::json& j, const Usage& m);
void from_json(const nlohmann::json& j, Usage& m);
void to_json(nlohmann::json& j, const LeaseEnded& m);
void from_json(const nlohmann::json& j, LeaseEnded& m);

// The client <-> daemon message types (the broker's are its own, broker_messages.hpp).
enum class ControlType {
  allocate,        // client: AllocateRequest
  send_library,    // daemon: {"sha256"}, the body the client sends next
  allocated,       // daemon: Allocated
  create_region,   // client: CreateRegionRequest
  region_created,  // daemon: RegionCreated
  usage,           // client: what the lease's workers counted so far
  usage_report,    // daemon: Usage
  renew,           // client: RenewRequest
  renewed,         // daemon: {"lease_id", "expires_at_ms"}
  release,         // client: end the lease
  lease_ended,     // daemon: LeaseEnded
  error,           // either: {"code", "message"}
};
const char* to_string(ControlType);
std::optional<ControlType> control_type_from_string(const std::string&);

enum class BrokerType : uint8_t;  // the broker's message types (broker_messages.hpp)

// A parsed frame: its type and body. Throws MessageError(malformed) for bad JSON, a missing
// type, or an unsupported version.
struct ControlMessage {
  std::string type;
  nlohmann::json body;
  static ControlMessage parse(const std::vector<uint8_t>& frame);
  bool is(ControlType t) const { return type == to_string(t); }
  bool is(BrokerType t) const;  // broker_messages.cpp
  // Typed access: throws MessageError(malformed) naming the bad field.
  template <class T>
  T as() const {
    try {
      return body.get<T>();
    } catch (const MessageError&) {
      throw;
    } catch (const std::exception& e) {
      throw MessageError(ControlErrc::malformed, "malformed '" + type + "' message: " + e.what());
    }
  }
};

// Serialises `body` with its type and version into a frame payload.
std::string make_message(const std::string& type, nlohmann::json body = nlohmann::json::object());
inline std::string make_message(ControlType type, nlohmann::json body = nlohmann::json::object()) {
  return make_message(to_string(type), std::move(body));
}
std::string make_error(ControlErrc code, const std::string& message);

}  // namespace rfaas::protocol
