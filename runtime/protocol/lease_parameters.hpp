// A lease's invocation parameters: what the client asks for, what the daemon assigns to the
// executor, what each worker is built with. One type and one validator, checked wherever the
// parameters enter (the client's deploy, the daemon's allocate, the executor's assignment); on the
// wire they stay flat fields of those messages.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace rfaas::protocol {

struct LeaseParameters {
  uint32_t workers = 1;              // one per leased core
  uint32_t slots = 4;                // invocations in flight per worker (1 .. kMaxSlots)
  uint64_t input_capacity = 1 << 20;   // payload bytes per slot (at most kMaxInputCapacity)
  uint64_t output_capacity = 1 << 20;  // result bytes per slot (at most kMaxOutputCapacity)
  int64_t hot_timeout_us = 10'000;   // the executor busy-polls this long; -1 always hot, 0 always warm
  bool operator==(const LeaseParameters&) const = default;
};

// "" when `p` is within what the protocol can describe; else what is not, for a named error.
std::string lease_parameters_error(const LeaseParameters& p);
// The registered memory the executor needs for `p`'s slots (inputs and outputs, every worker).
uint64_t lease_slot_memory(const LeaseParameters& p);

// As flat fields of a message: the fields are read, range-checked by lease_parameters_error and
// refused with MessageError(malformed) naming the problem.
void write_fields(nlohmann::json& j, const LeaseParameters& p);
LeaseParameters read_lease_parameters(const nlohmann::json& j);

}  // namespace rfaas::protocol
