#include "protocol/lease_parameters.hpp"

#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/json_fields.hpp"

namespace rfaas::protocol {

using detail::field;
using detail::malformed;

std::string lease_parameters_error(const LeaseParameters& p) {
  if (p.workers == 0) return "workers must be at least 1";
  if (p.slots == 0 || p.slots > kMaxSlots) return "slots must be 1.." + std::to_string(kMaxSlots);
  if (p.input_capacity > kMaxInputCapacity)
    return "input capacity beyond the protocol's limit of " + std::to_string(kMaxInputCapacity) + " bytes";
  if (p.output_capacity > kMaxOutputCapacity)
    return "output capacity beyond the protocol's limit of " + std::to_string(kMaxOutputCapacity) + " bytes";
  if (p.hot_timeout_us < -1) return "hot_timeout_us must be -1 (always hot), 0 (always warm) or a duration";
  return {};
}

uint64_t lease_slot_memory(const LeaseParameters& p) {
  return uint64_t{p.workers} * p.slots * (input_slot_stride(p.input_capacity) + p.output_capacity);
}

void write_fields(nlohmann::json& j, const LeaseParameters& p) {
  j["workers"] = p.workers;
  j["slots"] = p.slots;
  j["input_capacity"] = p.input_capacity;
  j["output_capacity"] = p.output_capacity;
  j["hot_timeout_us"] = p.hot_timeout_us;
}

LeaseParameters read_lease_parameters(const nlohmann::json& j) {
  LeaseParameters p;
  p.workers = field<uint32_t>(j, "workers");
  p.slots = field<uint32_t>(j, "slots");
  p.input_capacity = field<uint64_t>(j, "input_capacity");
  p.output_capacity = field<uint64_t>(j, "output_capacity");
  p.hot_timeout_us = field<int64_t>(j, "hot_timeout_us");
  if (std::string why = lease_parameters_error(p); !why.empty()) malformed(why);
  return p;
}

}  // namespace rfaas::protocol
