// The verbs backend (libibverbs + librdmacm): see verbs_backend.cpp and docs/fabric.md.
#pragma once

#include <memory>
#include <string>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::fabric::verbs {

// Opens the device named by config.verbs_device (a name, or an IPv4 address of its netdev), else
// the one holding config.local_host, else the first. Throws Error(no_backend).
std::unique_ptr<Domain> open_domain(const Config& config);

// Where a connected verbs endpoint's traffic goes out: device, port, source GID index.
struct PathInfo {
  std::string device;
  int port = 0;
  int gid_index = -1;
};
PathInfo path_info(const Endpoint& ep);  // throws Error(invalid_argument) for other backends
// Whether an RDMA device is present (the default backend is verbs then).
bool device_present() noexcept;

}  // namespace rfaas::fabric::verbs
