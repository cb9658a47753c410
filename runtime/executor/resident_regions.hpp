// A lease's resident regions: executor memory that persists across invocations, registered for
// the client's remote writes (puts) and seen by every worker's functions. Created by the main
// thread on the client's request (through the daemon, which counts them against the lease's
// memory); workers read them without a lock: an entry is complete before the count that covers
// it is published, and entries never change until the executor exits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "fabric/host_memory.hpp"
#include "protocol/invocation.hpp"
#include "rfaas/fabric/fabric.hpp"
#include "rfaas/function.h"

namespace rfaas::executor {

class ResidentRegions {
 public:
  explicit ResidentRegions(fabric::Domain& domain) : domain_(domain) {}
  ResidentRegions(const ResidentRegions&) = delete;
  ResidentRegions& operator=(const ResidentRegions&) = delete;

  // Main thread: a zeroed region of `bytes`; returns its id. Throws std::runtime_error (too
  // many regions, out of memory) or fabric::Error (registration).
  uint32_t create(uint64_t bytes);
  fabric::RemoteRegion remote(uint32_t id) const { return mrs_[id]->remote(); }

  // Workers.
  uint32_t count() const noexcept { return count_.load(std::memory_order_acquire); }
  const rfaas_region_view* views() const noexcept { return views_; }
  const fabric::MemoryRegion& region(uint32_t id) const noexcept { return *mrs_[id]; }  // id < count()

 private:
  fabric::Domain& domain_;
  rfaas_region_view views_[protocol::kMaxRegions] = {};
  fabric::HostMemory memory_[protocol::kMaxRegions];
  std::unique_ptr<fabric::MemoryRegion> mrs_[protocol::kMaxRegions];  // deregistered before memory_ goes
  std::atomic<uint32_t> count_{0};
};

}  // namespace rfaas::executor
