#include "executor/resident_regions.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace rfaas::executor {

ResidentRegions::~ResidentRegions() {
  uint32_t n = count_.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    mrs_[i].reset();
    ::munmap(views_[i].data, mapped_[i]);
  }
}

uint32_t ResidentRegions::create(uint64_t bytes) {
  uint32_t id = count_.load(std::memory_order_relaxed);
  if (id >= protocol::kMaxRegions)
    throw std::runtime_error("a lease holds at most " + std::to_string(protocol::kMaxRegions) + " regions");
  if (bytes == 0) throw std::runtime_error("a region needs at least one byte");
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t mapped = (bytes + page - 1) / page * page;
  // Its own mapping: page-aligned, zeroed, and returned to the system when the lease ends. Backed
  // now (MAP_POPULATE), on the cold path, so that puts and functions do not take its page faults.
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap of a region: ") + std::strerror(errno));
  try {
    // Exactly `bytes`: a remote write past the region's end is refused by the transport.
    mrs_[id] = domain_.register_memory(p, bytes, fabric::Access::remote_write);
  } catch (...) {
    ::munmap(p, mapped);
    throw;
  }
  views_[id] = {p, bytes};
  mapped_[id] = mapped;
  count_.store(id + 1, std::memory_order_release);
  return id;
}

}  // namespace rfaas::executor
