// Field access for control-message parsing: every missing or mistyped field becomes a
// MessageError(malformed) that names it. Internal to runtime/protocol.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "protocol/control.hpp"

namespace rfaas::protocol::detail {

[[noreturn]] inline void malformed(const std::string& what) { throw MessageError(ControlErrc::malformed, what); }

template <class T>
T field(const nlohmann::json& j, const char* name) {
  if (!j.is_object() || !j.contains(name)) malformed(std::string("missing field '") + name + "'");
  const auto& v = j.at(name);
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) malformed(std::string("field '") + name + "' must be a string");
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) malformed(std::string("field '") + name + "' must be a boolean");
  } else if constexpr (std::is_unsigned_v<T>) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.template get<int64_t>() >= 0))
      malformed(std::string("field '") + name + "' must be a non-negative integer");
    uint64_t x = v.template get<uint64_t>();
    if (x > std::numeric_limits<T>::max()) malformed(std::string("field '") + name + "' is out of range");
    return static_cast<T>(x);
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) malformed(std::string("field '") + name + "' must be an integer");
  }
  return v.template get<T>();
}

inline std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

inline bool is_hex(const std::string& s, size_t len) {
  return s.size() == len && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace rfaas::protocol::detail
