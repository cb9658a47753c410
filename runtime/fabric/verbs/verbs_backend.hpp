// The verbs backend (libibverbs + librdmacm): see verbs_backend.cpp and docs/fabric.md.
#pragma once

#include <memory>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::fabric::verbs {

// Opens the device librdmacm knows by RFAAS_VERBS_DEVICE (or the first). Throws Error(no_backend).
std::unique_ptr<Domain> open_domain(const Config& config);
// Whether an RDMA device is present (the default backend is verbs then).
bool device_present() noexcept;

}  // namespace rfaas::fabric::verbs
