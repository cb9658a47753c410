// An error that carries a code of its layer's own vocabulary (an enum class) beside its message.
// One template for every layer: each names its codes, the rest is the same. Visible by default,
// so that an error thrown inside a shared library is caught by type outside it.
#pragma once

#include <stdexcept>
#include <string>

namespace rfaas {

template <class Code>
class __attribute__((visibility("default"))) CodedError : public std::runtime_error {
 public:
  CodedError(Code code, const std::string& what) : std::runtime_error(what), code_(code) {}
  Code code() const noexcept { return code_; }

 private:
  Code code_;
};

}  // namespace rfaas
