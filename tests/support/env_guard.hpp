#pragma once
// Puts an environment variable back as it was when the guard goes, however the test ends.
#include <cstdlib>
#include <string>

namespace rfaas::testing {

struct EnvGuard {
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v, had_ = true;
  }
  ~EnvGuard() { had_ ? ::setenv(name_, saved_.c_str(), 1) : ::unsetenv(name_); }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  const char* name_;
  std::string saved_;
  bool had_ = false;
};

}  // namespace rfaas::testing
