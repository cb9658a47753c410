// Messages between rfaas-executord (runtime/daemon) and an rfaas-executor it started
// (runtime/executor). Commands go to the executor's fd 3, a Unix socket, one JSON object per
// message with a "type" (and a descriptor attached to some); reports come back on its stdout pipe,
// one JSON object per line with an "event". Each type has one struct and one spelling here; parsing
// validates every field and throws MessageError(malformed) naming the bad one. Leased code runs in
// the executor: the daemon takes its reports as its word, never as accounting that matters.
// One exception to "built here": output_guard writes the fault report by hand from its signal
// handler (no allocation there); it spells the same {"event":"fault","detail":...}.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "protocol/control.hpp"

namespace rfaas::protocol {

// --- daemon -> executor ------------------------------------------------------------------------

enum class ExecutorCommandType {
  assign,         // LeaseAssignment, the library's memfd attached
  dependency,     // before the assignment, one per dependency, its memfd attached
  renew,          // the lease's new expiry
  create_region,  // a resident region; answered by a region or region_failed report
  usage,          // what the workers counted so far; answered by a usage_now report
};
const char* to_string(ExecutorCommandType);
std::optional<ExecutorCommandType> executor_command_from_string(const std::string&);

struct DependencyCommand {
  std::string name;  // its file name, for errors
};
struct RenewCommand {
  int64_t expires_at_ms = 0;
};
struct CreateRegionCommand {
  uint64_t bytes = 0;
  uint64_t seq = 0;  // carried back in the answer
};
struct UsageCommand {
  uint64_t seq = 0;
};

// --- executor -> daemon ------------------------------------------------------------------------

enum class ExecutorEventType {
  ready,          // serving; the client may connect
  failed,         // could not serve (the executor exits with status 3)
  usage,          // at exit: what the workers counted, and why it ended
  usage_now,      // the answer to a usage command
  region,         // the answer to create_region: made
  region_failed,  // the answer to create_region: not made
  fault,          // a function wrote past its output (output_guard), just before the executor dies
};
const char* to_string(ExecutorEventType);
std::optional<ExecutorEventType> executor_event_from_string(const std::string&);

// Why an executor stopped serving, as it says in its final usage report.
enum class ExecutorEnd {
  signal,        // SIGTERM/SIGINT: the daemon, or someone stopping the job (scancel)
  expired,       // the lease's expiry passed
  clients_gone,  // every worker's client endpoint went away
  daemon_gone,   // its socket to the daemon closed
};
const char* to_string(ExecutorEnd);
std::optional<ExecutorEnd> executor_end_from_string(const std::string&);

struct ReadyReport {
  std::string address;  // the executor's fabric listener, host:port
};
struct FailedReport {
  ControlErrc code = ControlErrc::executor_failed;
  std::string detail;
};
struct FinalUsageReport {
  Usage usage;
  ExecutorEnd ended = ExecutorEnd::signal;
};
struct UsageNowReport {
  uint64_t seq = 0;
  Usage usage;
};
struct RegionReport {
  uint64_t seq = 0;
  RegionCreated region;
};
struct RegionFailedReport {
  uint64_t seq = 0;
  std::string detail;
};
struct FaultReport {
  std::string detail;
};

template <class T> struct ExecutorCommandOf;
template <> struct ExecutorCommandOf<LeaseAssignment> { static constexpr auto type = ExecutorCommandType::assign; };
template <> struct ExecutorCommandOf<DependencyCommand> { static constexpr auto type = ExecutorCommandType::dependency; };
template <> struct ExecutorCommandOf<RenewCommand> { static constexpr auto type = ExecutorCommandType::renew; };
template <> struct ExecutorCommandOf<CreateRegionCommand> { static constexpr auto type = ExecutorCommandType::create_region; };
template <> struct ExecutorCommandOf<UsageCommand> { static constexpr auto type = ExecutorCommandType::usage; };

template <class T> struct ExecutorEventOf;
template <> struct ExecutorEventOf<ReadyReport> { static constexpr auto type = ExecutorEventType::ready; };
template <> struct ExecutorEventOf<FailedReport> { static constexpr auto type = ExecutorEventType::failed; };
template <> struct ExecutorEventOf<FinalUsageReport> { static constexpr auto type = ExecutorEventType::usage; };
template <> struct ExecutorEventOf<UsageNowReport> { static constexpr auto type = ExecutorEventType::usage_now; };
template <> struct ExecutorEventOf<RegionReport> { static constexpr auto type = ExecutorEventType::region; };
template <> struct ExecutorEventOf<RegionFailedReport> { static constexpr auto type = ExecutorEventType::region_failed; };
template <> struct ExecutorEventOf<FaultReport> { static constexpr auto type = ExecutorEventType::fault; };

void to_json(nlohmann::json& j, const DependencyCommand& m);
void from_json(const nlohmann::json& j, DependencyCommand& m);
void to_json(nlohmann::json& j, const RenewCommand& m);
void from_json(const nlohmann::json& j, RenewCommand& m);
void to_json(nlohmann::json& j, const CreateRegionCommand& m);
void from_json(const nlohmann::json& j, CreateRegionCommand& m);
void to_json(nlohmann::json& j, const UsageCommand& m);
void from_json(const nlohmann::json& j, UsageCommand& m);
void to_json(nlohmann::json& j, const ReadyReport& m);
void from_json(const nlohmann::json& j, ReadyReport& m);
void to_json(nlohmann::json& j, const FailedReport& m);
void from_json(const nlohmann::json& j, FailedReport& m);
void to_json(nlohmann::json& j, const FinalUsageReport& m);
void from_json(const nlohmann::json& j, FinalUsageReport& m);
void to_json(nlohmann::json& j, const UsageNowReport& m);
void from_json(const nlohmann::json& j, UsageNowReport& m);
void to_json(nlohmann::json& j, const RegionReport& m);
void from_json(const nlohmann::json& j, RegionReport& m);
void to_json(nlohmann::json& j, const RegionFailedReport& m);
void from_json(const nlohmann::json& j, RegionFailedReport& m);
void to_json(nlohmann::json& j, const FaultReport& m);
void from_json(const nlohmann::json& j, FaultReport& m);

namespace detail {
// `body` as T, any parse failure a MessageError(malformed) that names `what` and the field.
template <class T>
T typed_body(const nlohmann::json& body, const char* what) {
  try {
    return body.get<T>();
  } catch (const MessageError&) {
    throw;
  } catch (const std::exception& e) {
    throw MessageError(ControlErrc::malformed, std::string("malformed '") + what + "' message: " + e.what());
  }
}
// The body as T, which must be the message of kind `expected` (the one parsed is `got`).
template <class T, class Kind>
T typed_as(Kind expected, Kind got, const nlohmann::json& body) {
  if (expected != got)
    throw MessageError(ControlErrc::malformed,
                       std::string("expected '") + to_string(expected) + "', got '" + to_string(got) + "'");
  return typed_body<T>(body, to_string(got));
}
}  // namespace detail

// A command as the executor receives it. The fields sit beside "type" (a flat object).
struct ExecutorCommand {
  ExecutorCommandType type = ExecutorCommandType::assign;
  nlohmann::json body;
  // Throws MessageError(malformed): not a JSON object, no type, or a type not listed above.
  static ExecutorCommand parse(const std::string& text);
  template <class T>
  T as() const {
    return detail::typed_as<T>(ExecutorCommandOf<T>::type, type, body);
  }
};

// A report as the daemon reads it (one line). The fields sit beside "event".
struct ExecutorReport {
  ExecutorEventType event = ExecutorEventType::failed;
  nlohmann::json body;
  // Throws MessageError(malformed): nested too deep, not a JSON object, no event or an unknown one.
  static ExecutorReport parse(const std::string& line);
  template <class T>
  T as() const {
    return detail::typed_as<T>(ExecutorEventOf<T>::type, event, body);
  }
  // The seq an answer carries (0: none).
  uint64_t seq() const;
};

template <class T>
std::string make_command(const T& m) {
  nlohmann::json j = m;
  j["type"] = to_string(ExecutorCommandOf<T>::type);
  return j.dump();
}

// One report line, without its newline.
template <class T>
std::string make_report(const T& m) {
  nlohmann::json j = m;
  j["event"] = to_string(ExecutorEventOf<T>::type);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace rfaas::protocol
