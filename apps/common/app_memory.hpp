// The apps' large arrays get the page treatment rfaas gives its resident regions (mapped on a
// 2 MiB boundary, transparent huge pages asked for with MADV_HUGEPAGE), in every mode: the rank
// alone, the rank with leased cores and `mpirun -np N` without rfaas. Otherwise a comparison of
// a memory-bound kernel would measure TLB reach (THP is "madvise" on Debian) as much as rfaas.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace rfaas_apps {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeFrom = kHugePage / 2;  // smaller arrays stay on the heap, as the regions do

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  static size_t mapped(size_t n) { return (n * sizeof(T) + kHugePage - 1) / kHugePage * kHugePage; }

  T* allocate(size_t n) {
    if (n * sizeof(T) < kHugeFrom) return static_cast<T*>(::operator new(n * sizeof(T)));
    // One huge page more than needed, trimmed at both ends to a 2 MiB boundary.
    const size_t bytes = mapped(n), span = bytes + kHugePage;
    void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto* base = static_cast<char*>(p);
    auto* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1));
    if (aligned > base) ::munmap(base, static_cast<size_t>(aligned - base));
    const size_t tail = span - static_cast<size_t>(aligned - base) - bytes;
    if (tail) ::munmap(aligned + bytes, tail);
    ::madvise(aligned, bytes, MADV_HUGEPAGE);  // advice: without THP the pages stay small
    return reinterpret_cast<T*>(aligned);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kHugeFrom) ::operator delete(p);
    else ::munmap(p, mapped(n));
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept { return true; }
};

template <class T>
using Array = std::vector<T, HugePageAllocator<T>>;

// The kernel's THP mode ("always", "madvise", "never"): what MADV_HUGEPAGE gets here.
inline std::string page_mode() {
  std::string mode = "unknown";
  if (FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
    char line[128] = {};
    if (std::fgets(line, sizeof line, f)) {
      const char* open = std::strchr(line, '[');
      const char* close = open ? std::strchr(open, ']') : nullptr;
      if (open && close) mode.assign(open + 1, close);
    }
    std::fclose(f);
  }
  return mode;
}

// The apps' line of output that says it.
inline std::string page_treatment() {
  const std::string mode = page_mode();
  if (mode == "never") return "small pages (THP never) for the rank's arrays and the resident regions alike";
  return "transparent huge pages (MADV_HUGEPAGE, THP " + mode +
         ") for the rank's arrays and the resident regions alike";
}

}  // namespace rfaas_apps
