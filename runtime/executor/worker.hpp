// One worker of an executor: a thread on one leased core that owns one fabric endpoint, K input
// slots (registered, written by the client) and K output slots (registered, written back from).
// Nothing is shared with other workers on the invocation path.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "executor/function_library.hpp"
#include "executor/output_guard.hpp"
#include "executor/resident_regions.hpp"
#include "fabric/host_memory.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"
#include "protocol/request_codec.hpp"
#include "rfaas/fabric/fabric.hpp"

namespace rfaas::executor {

struct WorkerConfig {
  uint32_t index = 0;
  uint32_t workers = 1;  // of the lease, told to context-ABI functions
  int core = -1;  // pin to this core; -1 leaves placement to the OS
  uint32_t slots = 4;
  uint64_t input_capacity = 1 << 20;
  uint64_t output_capacity = 1 << 20;
  int64_t hot_timeout_us = 10'000;  // -1 always hot, 0 always warm
  int finished_fd = -1;  // an eventfd the worker adds 1 to when its loop ends; -1: none
};

class Worker {
 public:
  Worker(fabric::Domain& domain, const WorkerConfig& config, const std::vector<Function>& functions,
         const ResidentRegions& regions);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // The endpoint the client's connection is accepted into, then handed over (before start()).
  const fabric::EndpointConfig& endpoint_config() const { return endpoint_config_; }
  void attach(std::unique_ptr<fabric::Endpoint> endpoint) { endpoint_ = std::move(endpoint); }
  fabric::RemoteRegion input_region() const { return input_mr_->remote(); }
  // Where put acknowledgements go (from the client's hello); before start().
  void set_ack_target(const fabric::RemoteRegion& target) { ack_ = target; }

  // Runs the loop on its own thread until stop() or the client goes away.
  void start();
  void stop() { stop_.store(true, std::memory_order_relaxed); }
  void join();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  protocol::Usage usage() const;  // after join()

 private:
  struct Reply {
    uint32_t slot;
    protocol::InvocationStatus status;
    uint32_t size;   // in the immediate: the result's size, or a failed function's status
    uint32_t bytes;  // written to the target
    fabric::RemoteRegion target;
    const fabric::MemoryRegion* source;  // the output slots, or a region (a get)
    uint64_t source_offset;
  };

  void run();
  // Runs one request and answers it (or queues the answer behind a full send queue); false when
  // the client is gone. mark: the cycle count before, moved to the function's end.
  bool handle(uint32_t imm, uint64_t& mark);
  bool answer_get(const protocol::DecodedRequest& r);
  bool answer(const Reply& r);
  fabric::Errc send(const Reply& r) noexcept;
  bool send_pending();  // false when the client is gone

  WorkerConfig config_;
  const std::vector<Function>& functions_;
  const ResidentRegions& regions_;
  fabric::RemoteRegion ack_{};
  uint64_t stride_;
  fabric::HostMemory input_;
  // One mapping per output slot, the result's capacity ending (to within 64 bytes, the slot's
  // alignment) right before a guard page: a function that writes past it faults there
  // (output_guard) instead of into the next slot.
  struct OutputSlot {
    fabric::HostMemory memory;
    std::unique_ptr<fabric::MemoryRegion> mr;
    uint64_t offset = 0;  // of the result's first byte in memory
  };
  std::vector<OutputSlot> outputs_;
  std::unique_ptr<fabric::MemoryRegion> input_mr_;
  output_guard::Running running_{-1};
  fabric::EndpointConfig endpoint_config_;
  std::unique_ptr<fabric::Endpoint> endpoint_;
  std::vector<uint8_t> framed_;  // per slot: a framed request has named its output target

  // Replies that met a full send queue (later ones queue behind them).
  std::vector<Reply> pending_;
  size_t pending_head_ = 0;

  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  // Written by the worker's thread only, read by usage() from another (the daemon asks while
  // the lease runs): relaxed atomics, plain loads and stores on x86.
  std::atomic<uint64_t> invocations_{0};
  std::atomic<uint64_t> hot_ticks_{0};
  std::atomic<uint64_t> compute_ticks_{0};
};

}  // namespace rfaas::executor
