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
    Function f;
    // A function written with RFAAS_FUNCTION exports its ABI version beside it.
    if (auto* abi = static_cast<const uint32_t*>(::dlsym(handle_, ("rfaas_abi_" + name).c_str()))) {
      if (*abi != RFAAS_FUNCTION_ABI) {
        ::dlclose(handle_);
        handle_ = nullptr;
        throw LibraryError("function '" + name + "' declares ABI " + std::to_string(*abi) + ", this executor runs " +
                           std::to_string(RFAAS_FUNCTION_ABI));
      }
      f.context = reinterpret_cast<ContextFunctionPtr>(sym);
    } else {
      f.reference = reinterpret_cast<FunctionPtr>(sym);
    }
    functions_.push_back(f);
  }
}

FunctionLibrary::~FunctionLibrary() {
  if (handle_) ::dlclose(handle_);
}

}  // namespace rfaas::executor
