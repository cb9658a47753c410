// The libfabric backend: reliable-datagram (FI_EP_RDM) endpoints, one peer each, RMA writes with
// remote CQ data. Endpoint addresses travel over a small TCP bootstrap socket, which then stays
// open as the liveness channel: RDM endpoints have no connection state to break.
#pragma once

#include <rdma/fabric.h>

#include <memory>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::fabric::ofi {

std::unique_ptr<Domain> open_domain(const Config& config);

// Removes the shm regions a dead process of this host left in /dev/shm (fabric::clean_up_after).
void clean_up_after(int pid) noexcept;

// Names libfabric providers that can do what rfaas needs here (for error messages and tools).
std::string available_providers();

}  // namespace rfaas::fabric::ofi
