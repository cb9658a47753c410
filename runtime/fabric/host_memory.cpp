#include "fabric/host_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <utility>

namespace rfaas::fabric {

namespace {
#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14
#endif
}  // namespace

HostMemory::HostMemory(size_t bytes, Fill fill, Guard guard) : size_(bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  mapped_ = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  if (fill == Fill::round_up && mapped_ >= kHugePage / 2) mapped_ = (mapped_ + kHugePage - 1) / kHugePage * kHugePage;
  huge_ = mapped_ >= kHugePage;
  guard_ = guard == Guard::after ? page : 0;
  // Huge: map one huge page more than needed and trim both ends to a 2 MiB boundary (the guard
  // page, if any, kept from the tail: at least a page is left there).
  const size_t span = huge_ ? mapped_ + kHugePage : mapped_ + guard_;
  void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    if (errno == ENOMEM) throw std::bad_alloc();  // as new would: callers name it out of memory
    throw std::system_error(errno, std::generic_category(), "mmap of " + std::to_string(bytes) + " bytes");
  }
  auto* base = static_cast<uint8_t*>(p);
  if (huge_) {
    auto addr = reinterpret_cast<uintptr_t>(base);
    auto* aligned = reinterpret_cast<uint8_t*>((addr + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1));
    if (aligned > base) ::munmap(base, static_cast<size_t>(aligned - base));
    size_t tail = span - static_cast<size_t>(aligned - base) - mapped_ - guard_;
    if (tail) ::munmap(aligned + mapped_ + guard_, tail);
    base = aligned;
    // Advice only: without THP (disabled, or none free) the mapping keeps small pages.
    if (::madvise(base, mapped_, MADV_HUGEPAGE) != 0) huge_ = false;
  }
  data_ = base;
  if (guard_ && ::mprotect(data_ + mapped_, guard_, PROT_NONE) != 0) {
    int e = errno;
    release();
    throw std::system_error(e, std::generic_category(), "mprotect of a guard page");
  }
  // Backed now; an old kernel without MADV_POPULATE_WRITE gets the pages touched instead.
  if (::madvise(data_, mapped_, MADV_POPULATE_WRITE) != 0) {
    if (errno == ENOMEM) {
      release();
      throw std::bad_alloc();
    }
    std::memset(data_, 0, mapped_);
  }
}

HostMemory::~HostMemory() { release(); }

HostMemory::HostMemory(HostMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, 0)),
      guard_(std::exchange(o.guard_, 0)), huge_(std::exchange(o.huge_, false)) {}

HostMemory& HostMemory::operator=(HostMemory&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    guard_ = std::exchange(o.guard_, 0);
    huge_ = std::exchange(o.huge_, false);
  }
  return *this;
}

void HostMemory::release() noexcept {
  if (data_) ::munmap(data_, mapped_ + guard_);
  data_ = nullptr;
  size_ = mapped_ = guard_ = 0;
}

}  // namespace rfaas::fabric
