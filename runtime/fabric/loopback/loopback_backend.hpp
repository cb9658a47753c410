// The loopback backend: both ends in one process, no provider, no device. A write is a memcpy
// into the peer's registered memory followed by its completion in the peer's queue; keys and
// bounds are checked as a provider would (a wrong key or a write past the region fails with
// remote_access), and an endpoint destroyed is a peer lost to the other end. For unit tests of
// what is built on the fabric (the client, the worker, the faults decorator) without processes.
#pragma once

#include <memory>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::fabric::loopback {

std::unique_ptr<Domain> open_domain(const Config& config);

}  // namespace rfaas::fabric::loopback
