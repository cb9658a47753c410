// The client's invocation path for one lease: one connection per worker, its input slots, the
// calls in flight and queued, and progress. Knows the fabric, the request codec and the
// registration table; nothing of daemons or tokens (what it must know of the lease comes through
// LeaseWatch). No syscall, allocation, lock or exception on any call here: all is made at connect.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "client/registration_table.hpp"
#include "fabric/host_memory.hpp"
#include "protocol/lease_parameters.hpp"
#include "protocol/request_codec.hpp"
#include "rfaas/client.hpp"
#include "rfaas/fabric/fabric.hpp"

namespace rfaas::client {

// Whether the lease still stands, as the data path needs to know it: two loads while it does.
class LeaseWatch {
 public:
  // ok, or how the lease ended. After connection_lost() the reason may take a moment to come:
  // this waits for it at most `wait` and returns ok while it is still on its way.
  Errc state(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) noexcept {
    return ended_ != Errc::ok || !lost_ ? ended_ : resolve(wait);
  }
  bool lost() const noexcept { return lost_ || ended_ != Errc::ok; }  // a connection is gone, or the lease
  void connection_lost() noexcept {
    if (lost_) return;
    lost_ = true;
    resolve(std::chrono::milliseconds(0));
  }

 protected:
  ~LeaseWatch() = default;
  // After a loss: looks for the reason for at most `wait`; sets ended_ once it is decided.
  virtual Errc resolve(std::chrono::milliseconds wait) noexcept = 0;
  Errc ended_ = Errc::ok;
  bool lost_ = false;
};

struct DataPathConfig {
  uint32_t functions = 0;           // ids below this are deployed
  protocol::LeaseParameters lease;  // slots and capacities per worker (workers: the connections)
  uint32_t queue_depth = 256;
  int64_t client_hot_timeout_us = 1'000;
  std::chrono::milliseconds invocation_timeout{10'000};
};

// A resident region as the client knows it: where puts write.
struct ResidentRegion {
  fabric::RemoteRegion remote;
  uint64_t size = 0;
};

class DataPath {
 public:
  // What a worker's connection request carries (the signed hello), given the worker and where its
  // put acknowledgements are to go.
  using MakeHello = std::function<fabric::ConnectionData(uint32_t worker, const fabric::RemoteRegion& ack)>;

  // Makes every worker's slots, calls and buffers (config.lease.workers of them) and connects to
  // `address` (each worker's connection answered with its input region). Throws fabric::Error.
  DataPath(fabric::Domain& domain, const DataPathConfig& config, const std::string& address,
           const MakeHello& hello, std::chrono::milliseconds timeout, const RegistrationTable& registrations,
           const std::vector<ResidentRegion>& regions, LeaseWatch& watch);
  ~DataPath();
  DataPath(const DataPath&) = delete;
  DataPath& operator=(const DataPath&) = delete;

  uint32_t workers() const noexcept;
  enum class CallKind : uint8_t { invoke, put, get };

  Errc submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity, Invocation* handle,
              int worker) noexcept;
  Errc submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                  int worker) noexcept;
  Errc submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle, int worker) noexcept;
  Errc wait(const Invocation& handle, size_t* out_size, std::chrono::microseconds timeout) noexcept;
  Errc test(const Invocation& handle, bool* done) noexcept;
  void abandon(const Invocation& handle) noexcept;
  size_t progress(Executor::Completed* out, size_t max) noexcept;
  // [offset, offset + bytes) of a region this lease has: ok, no_such_region or region_out_of_bounds.
  Errc check_region(uint32_t region, uint64_t offset, uint64_t bytes) const noexcept;
  const RegistrationTable::Range* find(const void* p, size_t n) const noexcept { return registrations_.find(p, n); }

 private:
  struct Call;
  struct SlotState;
  struct WorkerLink;

  void poll(WorkerLink& link) noexcept;  // takes the link's completions
  // Takes a free call entry of a worker (-1: the least loaded) and fills the handle; the caller
  // fills the call, then enqueue() posts it or queues it.
  Errc new_call(int worker, CallKind kind, uint32_t* w, uint32_t* index, Invocation* handle) noexcept;
  Errc enqueue(WorkerLink& link, uint32_t index) noexcept;
  // Writes the call into a free slot: ok, again (nothing written; retry later), or an error.
  fabric::Errc post(WorkerLink& link, uint32_t index) noexcept;
  void pump(WorkerLink& link) noexcept;  // posts queued calls into free slots, in order
  void complete(WorkerLink& link, Call& c, Errc result, size_t size) noexcept;
  void free_call(WorkerLink& link, Call& c) noexcept;
  bool handle_ok(const Invocation& h) const noexcept;
  Errc loss() noexcept;  // the best reason known for a lost connection

  DataPathConfig config_;
  uint64_t in_stride_;
  const RegistrationTable& registrations_;
  const std::vector<ResidentRegion>& regions_;
  LeaseWatch& watch_;
  std::vector<WorkerLink> links_;
  uint32_t next_worker_ = 0;
};

}  // namespace rfaas::client
