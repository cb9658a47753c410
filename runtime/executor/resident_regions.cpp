#include "executor/resident_regions.hpp"

#include <stdexcept>
#include <string>
#include <utility>

namespace rfaas::executor {

uint32_t ResidentRegions::create(uint64_t bytes) {
  uint32_t id = count_.load(std::memory_order_relaxed);
  if (id >= protocol::kMaxRegions)
    throw std::runtime_error("a lease holds at most " + std::to_string(protocol::kMaxRegions) + " regions");
  if (bytes == 0) throw std::runtime_error("a region needs at least one byte");
  // Its own mapping, zeroed and backed now, on the cold path, so that puts and functions take no
  // page faults; returned to the system when the lease ends.
  fabric::HostMemory memory(bytes);
  // Exactly `bytes`: a remote write past the region's end is refused by the transport.
  mrs_[id] = domain_.register_memory(memory.data(), bytes, fabric::Access::remote_write);
  void* p = memory.data();
  memory_[id] = std::move(memory);
  views_[id] = {p, bytes};
  count_.store(id + 1, std::memory_order_release);
  return id;
}

}  // namespace rfaas::executor
