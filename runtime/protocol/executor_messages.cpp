#include "protocol/executor_messages.hpp"

#include "protocol/json_fields.hpp"

namespace rfaas::protocol {

using detail::field;
using detail::malformed;

namespace {

// One spelling per enumerator: to_string is a switch, from_string walks `all`.
template <class E, size_t N>
std::optional<E> from_string(const std::string& s, const E (&all)[N]) {
  for (E e : all)
    if (s == to_string(e)) return e;
  return std::nullopt;
}

constexpr ExecutorCommandType kCommands[] = {ExecutorCommandType::assign, ExecutorCommandType::dependency,
                                             ExecutorCommandType::renew, ExecutorCommandType::create_region,
                                             ExecutorCommandType::usage};
constexpr ExecutorEventType kEvents[] = {ExecutorEventType::ready,     ExecutorEventType::failed,
                                         ExecutorEventType::usage,     ExecutorEventType::usage_now,
                                         ExecutorEventType::region,    ExecutorEventType::region_failed,
                                         ExecutorEventType::fault};
constexpr ExecutorEnd kEnds[] = {ExecutorEnd::signal, ExecutorEnd::expired, ExecutorEnd::clients_gone,
                                 ExecutorEnd::daemon_gone};

// The object's "tag" field, as a known enumerator.
template <class E, size_t N>
E tag(const nlohmann::json& j, const char* name, const E (&all)[N]) {
  const auto s = field<std::string>(j, name);
  auto e = from_string(s, all);
  if (!e) malformed(std::string("unknown ") + name + " '" + utf8_prefix(s, 64) + "'");
  return *e;
}

nlohmann::json object_of(const std::string& text, const char* what) {
  if (json_depth(text.data(), text.data() + text.size()) > kMaxJsonDepth)
    malformed(std::string(what) + " nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) malformed(std::string(what) + " is not a JSON object");
  return j;
}

}  // namespace

const char* to_string(ExecutorCommandType t) {
  switch (t) {
    case ExecutorCommandType::assign: return "assign";
    case ExecutorCommandType::dependency: return "dependency";
    case ExecutorCommandType::renew: return "renew";
    case ExecutorCommandType::create_region: return "create_region";
    case ExecutorCommandType::usage: return "usage";
  }
  return "assign";
}
std::optional<ExecutorCommandType> executor_command_from_string(const std::string& s) { return from_string(s, kCommands); }

const char* to_string(ExecutorEventType t) {
  switch (t) {
    case ExecutorEventType::ready: return "ready";
    case ExecutorEventType::failed: return "failed";
    case ExecutorEventType::usage: return "usage";
    case ExecutorEventType::usage_now: return "usage_now";
    case ExecutorEventType::region: return "region";
    case ExecutorEventType::region_failed: return "region_failed";
    case ExecutorEventType::fault: return "fault";
  }
  return "failed";
}
std::optional<ExecutorEventType> executor_event_from_string(const std::string& s) { return from_string(s, kEvents); }

const char* to_string(ExecutorEnd e) {
  switch (e) {
    case ExecutorEnd::signal: return "signal";
    case ExecutorEnd::expired: return "expired";
    case ExecutorEnd::clients_gone: return "clients_gone";
    case ExecutorEnd::daemon_gone: return "daemon_gone";
  }
  return "signal";
}
std::optional<ExecutorEnd> executor_end_from_string(const std::string& s) { return from_string(s, kEnds); }

// --- commands ----------------------------------------------------------------------------------

void to_json(nlohmann::json& j, const DependencyCommand& m) { j = {{"name", m.name}}; }
void from_json(const nlohmann::json& j, DependencyCommand& m) { m.name = field<std::string>(j, "name"); }

void to_json(nlohmann::json& j, const RenewCommand& m) { j = {{"expires_at_ms", m.expires_at_ms}}; }
void from_json(const nlohmann::json& j, RenewCommand& m) {
  m.expires_at_ms = field<int64_t>(j, "expires_at_ms");
  if (m.expires_at_ms <= 0) malformed("field 'expires_at_ms' must be positive");
}

void to_json(nlohmann::json& j, const CreateRegionCommand& m) { j = {{"bytes", m.bytes}, {"seq", m.seq}}; }
void from_json(const nlohmann::json& j, CreateRegionCommand& m) {
  m.bytes = field<uint64_t>(j, "bytes");
  m.seq = field<uint64_t>(j, "seq");
}

void to_json(nlohmann::json& j, const UsageCommand& m) { j = {{"seq", m.seq}}; }
void from_json(const nlohmann::json& j, UsageCommand& m) { m.seq = field<uint64_t>(j, "seq"); }

ExecutorCommand ExecutorCommand::parse(const std::string& text) {
  auto j = object_of(text, "executor command");
  ExecutorCommand c;
  c.type = tag(j, "type", kCommands);
  c.body = std::move(j);
  return c;
}

// --- reports -----------------------------------------------------------------------------------

void to_json(nlohmann::json& j, const ReadyReport& m) { j = {{"address", m.address}}; }
void from_json(const nlohmann::json& j, ReadyReport& m) {
  m.address = field<std::string>(j, "address");
  if (m.address.empty()) malformed("field 'address' is empty");
}

void to_json(nlohmann::json& j, const FailedReport& m) { j = {{"code", to_string(m.code)}, {"detail", m.detail}}; }
void from_json(const nlohmann::json& j, FailedReport& m) {
  const auto code = field<std::string>(j, "code");
  auto c = control_errc_from_string(code);
  if (!c) malformed("unknown code '" + utf8_prefix(code, 64) + "'");
  m.code = *c;
  m.detail = field<std::string>(j, "detail");
}

// Usage's fields sit beside the event (flat), as Usage's own JSON.
void to_json(nlohmann::json& j, const FinalUsageReport& m) {
  j = m.usage;
  j["ended"] = to_string(m.ended);
}
void from_json(const nlohmann::json& j, FinalUsageReport& m) {
  m.usage = j.get<Usage>();
  m.ended = tag(j, "ended", kEnds);
}

void to_json(nlohmann::json& j, const UsageNowReport& m) {
  j = m.usage;
  j["seq"] = m.seq;
}
void from_json(const nlohmann::json& j, UsageNowReport& m) {
  m.usage = j.get<Usage>();
  m.seq = field<uint64_t>(j, "seq");
}

void to_json(nlohmann::json& j, const RegionReport& m) {
  j = m.region;
  j["seq"] = m.seq;
}
void from_json(const nlohmann::json& j, RegionReport& m) {
  m.region = j.get<RegionCreated>();
  m.seq = field<uint64_t>(j, "seq");
}

void to_json(nlohmann::json& j, const RegionFailedReport& m) { j = {{"seq", m.seq}, {"detail", m.detail}}; }
void from_json(const nlohmann::json& j, RegionFailedReport& m) {
  m.seq = field<uint64_t>(j, "seq");
  m.detail = field<std::string>(j, "detail");
}

void to_json(nlohmann::json& j, const FaultReport& m) { j = {{"detail", m.detail}}; }
void from_json(const nlohmann::json& j, FaultReport& m) { m.detail = field<std::string>(j, "detail"); }

ExecutorReport ExecutorReport::parse(const std::string& line) {
  auto j = object_of(line, "executor report");
  ExecutorReport r;
  r.event = tag(j, "event", kEvents);
  r.body = std::move(j);
  return r;
}

uint64_t ExecutorReport::seq() const {
  auto it = body.find("seq");
  return it != body.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace rfaas::protocol
