// Memory for buffers the transport reads or writes (slots, regions, registered client buffers).
#pragma once

#include <cstddef>
#include <cstdint>

namespace rfaas::fabric {

// Anonymous memory of its own: page-aligned, zeroed, backed now (the hot path takes no page
// faults), and from kHugePage up aligned to it and advised onto transparent huge pages. A shm
// copy (process_vm_readv pins the source's pages one by one) or a NIC's translation then handles
// one page per 2 MiB instead of 512: over shm, 1 MiB writes from a huge-page source ran twice as
// fast as from 4 KiB pages (docs/performance.md).
class HostMemory {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;
  // exact: the pages `bytes` needs (huge ones for the whole 2 MiB extents within);
  // round_up: from 1 MiB up, whole huge pages (up to 2 MiB - 4 KiB more memory): for buffers
  // that are the caller's own memory, not counted against anyone's share.
  enum class Fill { exact, round_up };
  // after: one inaccessible page right behind the memory, so that a write past its end faults
  // there instead of landing in whatever follows (output slots of a function: executor.md).
  enum class Guard { none, after };

  HostMemory() = default;
  // At least a page. Throws std::bad_alloc when the memory is not there, std::system_error else.
  explicit HostMemory(size_t bytes, Fill fill = Fill::exact, Guard guard = Guard::none);
  ~HostMemory();
  HostMemory(HostMemory&& o) noexcept;
  HostMemory& operator=(HostMemory&& o) noexcept;
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }  // as asked for
  bool huge() const noexcept { return huge_; }    // advised onto huge pages
  size_t mapped() const noexcept { return mapped_; }  // usable bytes: size() rounded up to pages
  // The guard page (Guard::after), else nullptr; guard_size() bytes.
  const uint8_t* guard() const noexcept { return guard_ ? data_ + mapped_ : nullptr; }
  size_t guard_size() const noexcept { return guard_; }

 private:
  void release() noexcept;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
  size_t guard_ = 0;
  bool huge_ = false;
};

}  // namespace rfaas::fabric
