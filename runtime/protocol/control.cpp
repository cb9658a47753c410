#include "protocol/control.hpp"

#include "protocol/json_fields.hpp"

namespace rfaas::protocol {

using detail::field;
using detail::is_hex;
using detail::malformed;

const char* to_string(ControlErrc c) {
  switch (c) {
    case ControlErrc::malformed: return "malformed";
    case ControlErrc::bad_token: return "bad_token";
    case ControlErrc::lease_expired: return "lease_expired";
    case ControlErrc::lease_active: return "lease_active";
    case ControlErrc::lease_ended: return "lease_ended";
    case ControlErrc::no_capacity: return "no_capacity";
    case ControlErrc::library_mismatch: return "library_mismatch";
    case ControlErrc::library_load_failed: return "library_load_failed";
    case ControlErrc::executor_failed: return "executor_failed";
    case ControlErrc::memory_exceeded: return "memory_exceeded";
    case ControlErrc::policy: return "policy";
    case ControlErrc::not_authenticated: return "not_authenticated";
    case ControlErrc::not_permitted: return "not_permitted";
    case ControlErrc::internal: return "internal";
  }
  return "internal";
}

std::optional<ControlErrc> control_errc_from_string(const std::string& s) {
  for (auto c : {ControlErrc::malformed, ControlErrc::bad_token, ControlErrc::lease_expired, ControlErrc::lease_active,
                 ControlErrc::lease_ended, ControlErrc::no_capacity, ControlErrc::library_mismatch, ControlErrc::library_load_failed,
                 ControlErrc::executor_failed, ControlErrc::memory_exceeded, ControlErrc::policy, ControlErrc::not_authenticated,
                 ControlErrc::not_permitted, ControlErrc::internal})
    if (s == to_string(c)) return c;
  return std::nullopt;
}

const char* to_string(ControlType t) {
  switch (t) {
    case ControlType::allocate: return "allocate";
    case ControlType::send_library: return "send_library";
    case ControlType::allocated: return "allocated";
    case ControlType::create_region: return "create_region";
    case ControlType::region_created: return "region_created";
    case ControlType::usage: return "usage";
    case ControlType::usage_report: return "usage_report";
    case ControlType::renew: return "renew";
    case ControlType::renewed: return "renewed";
    case ControlType::release: return "release";
    case ControlType::lease_ended: return "lease_ended";
    case ControlType::error: return "error";
  }
  return "error";
}

std::optional<ControlType> control_type_from_string(const std::string& s) {
  for (auto t : {ControlType::allocate, ControlType::send_library, ControlType::allocated, ControlType::create_region,
                 ControlType::region_created, ControlType::usage, ControlType::usage_report, ControlType::renew,
                 ControlType::renewed, ControlType::release, ControlType::lease_ended, ControlType::error})
    if (s == to_string(t)) return t;
  return std::nullopt;
}

const char* to_string(LeaseEndReason r) {
  switch (r) {
    case LeaseEndReason::expired: return "expired";
    case LeaseEndReason::released: return "released";
    case LeaseEndReason::executor_crashed: return "executor_crashed";
    case LeaseEndReason::memory_exceeded: return "memory_exceeded";
    case LeaseEndReason::revoked: return "revoked";
    case LeaseEndReason::client_gone: return "client_gone";
    case LeaseEndReason::deploy_refused: return "deploy_refused";
  }
  return "released";
}

std::optional<LeaseEndReason> lease_end_reason_from_string(const std::string& s) {
  for (auto r : {LeaseEndReason::expired, LeaseEndReason::released, LeaseEndReason::executor_crashed,
                 LeaseEndReason::memory_exceeded, LeaseEndReason::revoked, LeaseEndReason::client_gone,
                 LeaseEndReason::deploy_refused})
    if (s == to_string(r)) return r;
  return std::nullopt;
}

// --- messages ------------------------------------------------------------------------------------

void to_json(nlohmann::json& j, const AllocateRequest& m) {
  j = {{"token", m.token}, {"library_sha256", m.library_sha256}, {"library_size", m.library_size},
       {"library_name", m.library_name}, {"functions", m.functions}};
  write_fields(j, m.params);
  if (!m.host.empty()) j["host"] = m.host;
  if (!m.ofi_provider.empty()) j["ofi_provider"] = m.ofi_provider;
  if (!m.dependencies.empty()) {
    auto deps = nlohmann::json::array();
    for (const auto& d : m.dependencies) deps.push_back({{"sha256", d.sha256}, {"size", d.size}, {"name", d.name}});
    j["dependencies"] = deps;
  }
}

void from_json(const nlohmann::json& j, AllocateRequest& m) {
  if (!j.contains("token")) malformed("missing field 'token'");
  m.token = j.at("token").get<LeaseToken>();
  m.library_sha256 = field<std::string>(j, "library_sha256");
  if (!is_hex(m.library_sha256, 64)) malformed("library_sha256 must be 64 lowercase hex digits");
  m.library_size = field<uint64_t>(j, "library_size");
  m.library_name = field<std::string>(j, "library_name");
  if (!j.contains("functions") || !j.at("functions").is_array()) malformed("field 'functions' must be an array");
  m.functions.clear();
  for (const auto& f : j.at("functions")) {
    if (!f.is_string() || f.get<std::string>().empty() || f.get<std::string>().size() > 255)
      malformed("function names must be non-empty strings of at most 255 bytes");
    m.functions.push_back(f.get<std::string>());
  }
  if (m.functions.empty()) malformed("no functions requested");
  m.host = j.value("host", std::string());
  m.ofi_provider = j.value("ofi_provider", std::string());
  if (m.host.size() > 255 || m.ofi_provider.size() > 64) malformed("host or ofi_provider too long");
  // Both reach logs and fi_getinfo: printable, no spaces or newlines.
  for (char c : m.host + m.ofi_provider)
    if (c <= ' ' || c > '~') malformed("host and ofi_provider must be printable ASCII without spaces");
  m.dependencies.clear();
  if (j.contains("dependencies")) {
    const auto& deps = j.at("dependencies");
    if (!deps.is_array() || deps.size() > kMaxDependencies)
      malformed("dependencies must be an array of at most " + std::to_string(kMaxDependencies));
    for (const auto& d : deps) {
      if (!d.is_object()) malformed("a dependency must be an object");
      LibraryRef r{field<std::string>(d, "sha256"), field<uint64_t>(d, "size"), field<std::string>(d, "name")};
      if (!is_hex(r.sha256, 64)) malformed("a dependency's sha256 must be 64 lowercase hex digits");
      if (r.name.empty() || r.name.size() > 255 || r.name.find('/') != std::string::npos)
        malformed("a dependency's name must be a file name of at most 255 bytes");
      m.dependencies.push_back(std::move(r));
    }
  }
  m.params = read_lease_parameters(j);
}

void to_json(nlohmann::json& j, const RenewRequest& m) { j = {{"token", m.token}}; }

void from_json(const nlohmann::json& j, RenewRequest& m) {
  if (!j.contains("token")) malformed("missing field 'token'");
  m.token = j.at("token").get<LeaseToken>();
}

void to_json(nlohmann::json& j, const CreateRegionRequest& m) { j = {{"bytes", m.bytes}}; }

void from_json(const nlohmann::json& j, CreateRegionRequest& m) {
  m.bytes = field<uint64_t>(j, "bytes");
  if (m.bytes == 0) malformed("a region needs at least one byte");
}

void to_json(nlohmann::json& j, const RegionCreated& m) {
  j = {{"id", m.id}, {"address", m.address}, {"key", m.key}, {"length", m.length}};
}

void from_json(const nlohmann::json& j, RegionCreated& m) {
  m.id = field<uint32_t>(j, "id");
  m.address = field<uint64_t>(j, "address");
  m.key = field<uint64_t>(j, "key");
  m.length = field<uint64_t>(j, "length");
}

void to_json(nlohmann::json& j, const Allocated& m) {
  j = {{"lease_id", m.lease_id}, {"address", m.address}, {"workers", m.workers}, {"library_cached", m.library_cached}};
  if (!m.ofi_provider.empty()) j["ofi_provider"] = m.ofi_provider;
}

void from_json(const nlohmann::json& j, Allocated& m) {
  m.lease_id = field<uint64_t>(j, "lease_id");
  m.address = field<std::string>(j, "address");
  m.workers = field<uint32_t>(j, "workers");
  m.library_cached = field<bool>(j, "library_cached");
  m.ofi_provider = j.value("ofi_provider", std::string());
}

void to_json(nlohmann::json& j, const LeaseAssignment& m) {
  j = {{"lease_id", m.lease_id}, {"functions", m.functions}, {"cores", m.cores}, {"expires_at_ms", m.expires_at_ms},
       {"accept_timeout_ms", m.accept_timeout_ms}, {"uid", m.uid}, {"gid", m.gid}, {"confined", m.confined},
       {"memory_limit_bytes", m.memory_limit_bytes}, {"max_tasks", m.max_tasks}, {"hello_key", m.hello_key},
       {"library_name", m.library_name}};
  write_fields(j, m.params);
  if (!m.ofi_provider.empty()) j["ofi_provider"] = m.ofi_provider;
}

void from_json(const nlohmann::json& j, LeaseAssignment& m) {
  m.lease_id = field<uint64_t>(j, "lease_id");
  if (!j.contains("functions") || !j.at("functions").is_array()) malformed("field 'functions' must be an array");
  m.functions = j.at("functions").get<std::vector<std::string>>();
  if (!j.contains("cores") || !j.at("cores").is_array()) malformed("field 'cores' must be an array");
  m.cores = j.at("cores").get<std::vector<int>>();
  m.params = read_lease_parameters(j);
  if (m.params.workers != m.cores.size()) malformed("an assignment has one worker per core");
  m.expires_at_ms = field<int64_t>(j, "expires_at_ms");
  m.accept_timeout_ms = field<uint32_t>(j, "accept_timeout_ms");
  m.uid = field<uint32_t>(j, "uid");
  m.gid = field<uint32_t>(j, "gid");
  m.confined = field<bool>(j, "confined");
  m.memory_limit_bytes = field<uint64_t>(j, "memory_limit_bytes");
  m.max_tasks = field<uint32_t>(j, "max_tasks");
  m.hello_key = field<std::string>(j, "hello_key");
  m.library_name = j.value("library_name", std::string());
  m.ofi_provider = j.value("ofi_provider", std::string());
}

void to_json(nlohmann::json& j, const Usage& m) {
  j = {{"invocations", m.invocations}, {"hot_polling_ns", m.hot_polling_ns}, {"compute_ns", m.compute_ns}};
}

void from_json(const nlohmann::json& j, Usage& m) {
  m.invocations = field<uint64_t>(j, "invocations");
  m.hot_polling_ns = field<uint64_t>(j, "hot_polling_ns");
  m.compute_ns = field<uint64_t>(j, "compute_ns");
}

void to_json(nlohmann::json& j, const LeaseEnded& m) {
  j = {{"reason", to_string(m.reason)}, {"detail", m.detail}, {"usage", m.usage}};
}

void from_json(const nlohmann::json& j, LeaseEnded& m) {
  const auto reason = field<std::string>(j, "reason");
  const auto known = lease_end_reason_from_string(reason);
  if (!known) malformed("unknown lease-end reason '" + utf8_prefix(reason, 64) + "'");
  m.reason = *known;
  m.detail = field<std::string>(j, "detail");
  if (!j.contains("usage")) malformed("missing field 'usage'");
  m.usage = j.at("usage").get<Usage>();
}

size_t json_depth(const char* begin, const char* end, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (const char* p = begin; p < end; ++p) {
    const char c = *p;
    if (in_string) {
      if (c == '\\') ++p;  // the escaped character is never a quote that ends the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return limit + 1;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

ControlMessage ControlMessage::parse(const std::vector<uint8_t>& frame) {
  const char* text = reinterpret_cast<const char*>(frame.data());
  if (json_depth(text, text + frame.size()) > kMaxJsonDepth)
    malformed("control frame nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  nlohmann::json j = nlohmann::json::parse(frame.begin(), frame.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) malformed("control frame is not a JSON object");
  if (!j.contains("type") || !j.at("type").is_string()) malformed("control message without a type");
  if (!j.contains("version") || !j.at("version").is_number_unsigned() || j.at("version").get<uint32_t>() != kControlVersion)
    malformed("control message of an unsupported version (this side speaks " + std::to_string(kControlVersion) + ")");
  ControlMessage m;
  m.type = j.at("type").get<std::string>();
  m.body = j.contains("body") ? j.at("body") : nlohmann::json::object();
  return m;
}

std::string make_message(const std::string& type, nlohmann::json body) {
  return nlohmann::json{{"type", type}, {"version", kControlVersion}, {"body", std::move(body)}}.dump();
}

std::string make_error(ControlErrc code, const std::string& message) {
  return make_message(ControlType::error, {{"code", to_string(code)}, {"message", message}});
}

}  // namespace rfaas::protocol
