// A function library loaded into an executor: the shared object arrives as a memfd, is opened
// with dlopen("/proc/self/fd/N"), and the requested names are resolved to pointers once.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "rfaas/function.h"

namespace rfaas::executor {

// The reference ABI: returns the number of bytes written to `out`.
using FunctionPtr = uint32_t (*)(void* in, uint32_t in_size, void* out);
// The context ABI (rfaas/function.h): 0 or an error status.
using ContextFunctionPtr = int32_t (*)(rfaas_call* call);

// A resolved function and which ABI it uses (the library's rfaas_abi_<name> symbol says).
struct Function {
  FunctionPtr reference = nullptr;
  ContextFunctionPtr context = nullptr;
};

class LibraryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FunctionLibrary {
 public:
  // Throws LibraryError naming the dlopen error or the first name that does not resolve.
  // `name`: what the client calls the library, said in errors instead of the memfd's path.
  // `dependencies` (name, descriptor): loaded first, in order, so that the library's DT_NEEDED
  // entries resolve to them by SONAME.
  FunctionLibrary(int fd, const std::vector<std::string>& names, const std::string& name = "",
                  const std::vector<std::pair<std::string, int>>& dependencies = {});
  ~FunctionLibrary();
  FunctionLibrary(const FunctionLibrary&) = delete;
  FunctionLibrary& operator=(const FunctionLibrary&) = delete;

  const std::vector<Function>& functions() const { return functions_; }

 private:
  void* handle_ = nullptr;
  std::vector<void*> dependencies_;  // closed after the library
  std::vector<Function> functions_;
};

}  // namespace rfaas::executor
