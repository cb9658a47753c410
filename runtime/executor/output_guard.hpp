// Names a function that writes past its output: every output slot ends at a guard page
// (fabric::HostMemory::Guard::after), and a SIGSEGV inside one is reported to the daemon as a
// "fault" event (which function, worker, slot, capacity) before the executor dies of the signal.
// Set up once before the workers start; read only by the signal handler afterwards.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rfaas::executor::output_guard {

// The running function's index per worker (-1: none), written by the worker before each call.
using Running = std::atomic<int32_t>;

void add(const void* guard, size_t bytes, uint32_t worker, uint32_t slot, uint64_t capacity, const Running* running);
// Forgets a guard (its worker is gone, its memory unmapped): in-process tests make and drop workers.
void remove(const void* guard);
void set_function_names(const std::vector<std::string>& names);
// Installs the SIGSEGV (and SIGBUS) handler; reports go to report_fd as one JSON line. Any other
// fault then kills the executor by its signal too (not by a library's handler that exits 1).
void install(int report_fd);

}  // namespace rfaas::executor::output_guard
