// Opens a domain through the installed rfaas and registers memory: proves headers, library and
// CMake package fit together outside the source tree.
#include <rfaas/fabric/fabric.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto domain = rfaas::fabric::open_domain(rfaas::fabric::Config::from_env());
  std::vector<char> buffer(4096);
  auto mr = domain->register_memory(buffer.data(), buffer.size(), rfaas::fabric::Access::remote_write);
  std::printf("consumer: %s domain, %zu bytes registered, key %llu\n", domain->provider().c_str(), mr->size(),
              static_cast<unsigned long long>(mr->remote().key));
  return mr->size() == buffer.size() ? 0 : 1;
}
