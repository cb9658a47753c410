#include "executor/function_library.hpp"

#include <dlfcn.h>

namespace rfaas::executor {

namespace {
// dlerror's text without the memfd's path, which says nothing to the user.
std::string load_error(const std::string& path) {
  const char* err = ::dlerror();
  std::string why = err ? err : "unknown error";
  if (why.rfind(path + ": ", 0) == 0) why.erase(0, path.size() + 2);
  return why;
}
}  // namespace

FunctionLibrary::FunctionLibrary(int fd, const std::vector<std::string>& names, const std::string& name,
                                 const std::vector<std::pair<std::string, int>>& dependencies) {
  for (const auto& [dep_name, dep_fd] : dependencies) {
    std::string dep_path = "/proc/self/fd/" + std::to_string(dep_fd);
    void* h = ::dlopen(dep_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::string why = load_error(dep_path);
      for (void* d : dependencies_) ::dlclose(d);
      dependencies_.clear();
      throw LibraryError("dependency " + dep_name + ": " + why);
    }
    dependencies_.push_back(h);
  }
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  const std::string shown = name.empty() ? path : name;
  // RTLD_NOW: a missing symbol the library needs fails here, at deploy, not mid-invocation.
  handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    std::string why = load_error(path);
    for (void* d : dependencies_) ::dlclose(d);
    dependencies_.clear();
    throw LibraryError(shown + ": " + why +
                       (why.find("cannot open shared object") != std::string::npos
                            ? " (what the library links must be installed on the executor node or shipped "
                              "with it as a dependency: docs/api.md)"
                            : ""));
  }
  for (const auto& fn : names) {
    ::dlerror();
    void* sym = ::dlsym(handle_, fn.c_str());
    if (!sym) {
      ::dlclose(handle_);
      handle_ = nullptr;
      throw LibraryError("function '" + fn + "' is not in " + shown);
    }
    Function f;
    // A function written with RFAAS_FUNCTION exports its ABI version beside it.
    if (auto* abi = static_cast<const uint32_t*>(::dlsym(handle_, ("rfaas_abi_" + fn).c_str()))) {
      if (*abi != RFAAS_FUNCTION_ABI) {
        ::dlclose(handle_);
        handle_ = nullptr;
        throw LibraryError("function '" + fn + "' declares ABI " + std::to_string(*abi) + ", this executor runs " +
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
  for (auto it = dependencies_.rbegin(); it != dependencies_.rend(); ++it) ::dlclose(*it);
}

}  // namespace rfaas::executor
