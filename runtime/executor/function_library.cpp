#include "executor/function_library.hpp"

#include <dlfcn.h>

namespace rfaas::executor {

FunctionLibrary::FunctionLibrary(int fd, const std::vector<std::string>& names) {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  // RTLD_NOW: a missing symbol the library needs fails here, at deploy, not mid-invocation.
  handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* err = ::dlerror();
    throw LibraryError(std::string("dlopen: ") + (err ? err : "unknown error"));
  }
  for (const auto& name : names) {
    ::dlerror();
    void* sym = ::dlsym(handle_, name.c_str());
    if (!sym) {
      ::dlclose(handle_);
      handle_ = nullptr;
      throw LibraryError("function '" + name + "' is not in the library");
    }
    functions_.push_back(reinterpret_cast<FunctionPtr>(sym));
  }
}

FunctionLibrary::~FunctionLibrary() {
  if (handle_) ::dlclose(handle_);
}

}  // namespace rfaas::executor
