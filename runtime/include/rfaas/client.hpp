// The rfaas client API (C++). A client holds a lease on an executor node, deploys a function
// library there, and invokes its functions: each invocation is one RDMA write-with-immediate of
// [header | payload] into a worker's input slot and one write of the result back.
//
//   auto grant = rfaas::direct_lease("node17:7000", {.node_name = "node17", .secret_file = "...", .cores = 2});
//   auto ex = rfaas::Executor::deploy(grant, {.library_path = "libmyfns.so", .functions = {"saxpy"}});
//   size_t n; rfaas::Errc e = ex->invoke(ex->function("saxpy"), in, in_size, out, out_cap, &n);
//
// Setup (deploy, registration, regions, release) throws rfaas::Error. The invocation calls
// (invoke, submit, put, get, wait, test) return rfaas::Errc and neither allocate nor throw. An
// Executor is used by one thread at a time.
//
// Resident regions: memory on the executor that stays for the lease (create_region), written by
// puts straight into the executor's registered memory and seen by every worker's functions
// (rfaas/function.h). Ordering: a call submitted after a put has *completed* (wait or test)
// sees the put's bytes, on every worker and every transport; so does a call submitted after
// another call completed see what that call's function wrote to a region (a worker answers only
// once its function has returned). Calls in flight together are not ordered.
//
// Queue: submit, submit_put and submit_get never wait for a slot. Calls beyond the free slots
// wait in a bounded queue per worker (DeployOptions::queue_depth) and are posted, in order of
// submission, as slots free up during wait/test; Errc::queue_full when that queue is full.
#pragma once

#include "rfaas/coded_error.hpp"
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <optional>
#include <vector>

#include "rfaas/fabric/fabric.hpp"

// The library is built with hidden visibility; this is its exported interface.
#pragma GCC visibility push(default)
namespace rfaas {

enum class Errc : int {
  ok = 0,
  unknown_function = 1,     // no such function in the deployed library
  payload_too_large = 2,    // input beyond the lease's input capacity
  output_too_large = 3,     // the function returned more than the output capacity
  executor_lost = 4,        // the executor died (a crashing function, kill -9) or is unreachable
  lease_expired = 5,        // the lease's time is up
  lease_revoked = 6,        // the lease was taken back (daemon drained or shut down)
  bad_token = 7,            // the lease token does not verify or is for another node
  library_load_failed = 8,  // dlopen failed, a function name did not resolve, or the bytes were damaged
  no_capacity = 9,          // the executor node has not enough free cores or memory
  timeout = 10,             // a bounded wait ended first
  // 11: RFAAS_ERR_BUSY, the MPI layer's (rfaas/rfaas.h); not a code of this API
  invalid_argument = 12,    // a bad argument, handle or request
  connection_failed = 13,   // the daemon or executor could not be reached
  protocol = 14,            // the other side answered outside the protocol
  lease_in_use = 15,        // this lease is already deployed
  // 16: RFAAS_ERR_NOT_INITIALIZED, the MPI layer's (rfaas/rfaas.h)
  no_such_region = 17,      // no resident region has this id on this lease
  region_out_of_bounds = 18,  // a put or get past the end of its region
  memory_exceeded = 19,     // a region beyond what is left of the lease's memory
  queue_full = 20,          // every slot busy and the submission queue full: wait for a call first
  function_failed = 21,     // a context-ABI function returned an error status (see out_size)
  not_authenticated = 22,   // the broker could not authenticate the request (MUNGE: no munged, a bad credential)
  not_permitted = 23,       // another user's lease, or an operator's command
};
const char* to_string(Errc) noexcept;

using Error = CodedError<Errc>;

// A lease: where its executor daemon listens and the token that proves it. From the broker, or
// made directly from the cluster secret with direct_lease().
struct LeaseGrant {
  std::string daemon_address;  // host:port of the executor daemon's control port
  std::string token;           // the signed lease token (JSON)
  uint64_t lease_id = 0;
  int64_t expires_at_ms = 0;  // Unix epoch ms
  std::string node;           // the executor node's name (a placement hint for a re-lease)
};

struct DirectLeaseOptions {
  std::string node_name;    // the daemon's node name
  std::string secret_file;  // the cluster secret (mode 0600)
  uint32_t cores = 1;
  uint64_t memory_bytes = 1ull << 30;
  std::chrono::milliseconds duration{std::chrono::minutes(10)};
  std::string client = "rfaas-client";
};

// Direct mode: signs a lease token with the cluster secret, without a broker.
LeaseGrant direct_lease(const std::string& daemon_address, const DirectLeaseOptions& options);

struct BrokerLeaseOptions {
  uint32_t cores = 1;
  uint64_t memory_bytes = 1ull << 30;
  std::chrono::milliseconds duration{std::chrono::minutes(10)};
  std::string client = "rfaas-client";
  std::vector<std::string> avoid_nodes;  // placement hint, e.g. this rank's own node
  std::chrono::milliseconds timeout{10'000};
};

// Asks the lease broker at broker_address (host:port) for a lease. Throws Error: no_capacity
// when no node can take it, connection_failed when the broker cannot be reached,
// not_authenticated without a MUNGE credential (munged on this node: its socket is
// RFAAS_MUNGE_SOCKET, else MUNGE's default). The lease belongs to this process's user (and
// Slurm job, SLURM_JOB_ID): only that user, root or an operator may renew or release it, and the
// lease's functions run as that user.
LeaseGrant broker_lease(const std::string& broker_address, const BrokerLeaseOptions& options);
// Extends a lease to now + duration (never shortens it): the broker journals it and signs a new
// token; give that to Executor::renew so the executor daemon accepts the new expiry. Throws
// Error: lease_expired when the lease is over or unknown, bad_token for a token that does not verify.
LeaseGrant broker_renew(const std::string& broker_address, const LeaseGrant& grant, std::chrono::milliseconds duration,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));
// Tells the broker the lease is over (Executor::release ends it at the executor). Idempotent;
// not_permitted for another user's lease.
void broker_release(const std::string& broker_address, uint64_t lease_id,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

// The most invocations in flight per worker (DeployOptions::slots): what a request's immediate names.
inline constexpr uint32_t kMaxSlotsPerWorker = 64;

struct DeployOptions {
  std::string library_path;             // the function library (.so) to ship
  std::vector<std::string> functions;   // names to resolve; function(name) gives their ids
  // Shared libraries the function library links that the executor nodes do not have: shipped
  // with it and loaded before it, in this order (each after what it needs), so that its
  // DT_NEEDED entries resolve to them by SONAME (at most 16; api.md).
  std::vector<std::string> dependencies;
  uint32_t workers = 1;                 // leased cores to use, one worker each
  uint32_t slots = 4;                   // invocations in flight per worker (at most 64)
  uint32_t queue_depth = 256;           // further calls per worker waiting for a slot
  uint64_t input_capacity = 64 * 1024;  // payload bytes per invocation
  uint64_t output_capacity = 64 * 1024; // result bytes per invocation (at most 8 MiB - 1)
  int64_t hot_timeout_us = 10'000;      // executor busy-polls this long, then blocks; -1 always hot
  int64_t client_hot_timeout_us = 1'000;  // this side busy-polls for a result this long, then sleeps
  std::chrono::milliseconds control_timeout{10'000};     // bound on every setup step
  std::chrono::milliseconds invocation_timeout{10'000};  // default bound for invoke()
  // The transport (rfaas/fabric/fabric.hpp); unset: read from the environment once, at deploy
  // (RFAAS_FABRIC, RFAAS_OFI_PROVIDER, RFAAS_FABRIC_HOST, RFAAS_VERBS_DEVICE, RFAAS_VERBS_GID_INDEX).
  std::optional<fabric::Config> fabric;
};

struct Usage {
  uint64_t invocations = 0;
  uint64_t hot_polling_ns = 0;
  uint64_t compute_ns = 0;
};

// Where deploy() spent its time (milliseconds): the cold start, phase by phase.
struct DeployTiming {
  double connect_ms = 0;         // TCP connection to the daemon and the allocate request sent
  double library_ms = 0;         // shipping the library (0 when the daemon had it cached)
  double executor_start_ms = 0;  // token check, executor spawn, library load, until "allocated"
  double endpoints_ms = 0;       // connecting one fabric endpoint per worker
  double total_ms = 0;
};

// Handle of a submitted call (an invocation, a put or a get).
struct Invocation {
  uint32_t worker = 0;
  uint32_t call = 0;  // the call's entry on that worker (not its input slot)
  uint32_t generation = 0;
};

// Memory owned by rfaas and registered with the lease's domain: invocations read inputs from it
// and write results into it with no copy.
class Buffer {
 public:
  virtual ~Buffer() = default;
  void* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

 protected:
  void* data_ = nullptr;
  size_t size_ = 0;
};

class Executor {
 public:
  // Connects to the daemon, presents the token, ships the library (or its hash if cached) and
  // connects one endpoint per worker. Throws Error.
  static std::unique_ptr<Executor> deploy(const LeaseGrant& grant, const DeployOptions& options);
  virtual ~Executor() = default;

  virtual uint32_t workers() const noexcept = 0;
  virtual uint64_t lease_id() const noexcept = 0;
  virtual bool library_was_cached() const noexcept = 0;
  virtual DeployTiming deploy_timing() const noexcept = 0;
  // The id of a deployed function; -1 if it was not deployed.
  virtual int function(std::string_view name) const noexcept = 0;

  // Registered memory: inputs read from and results written into it travel without a copy.
  // Unregistered memory works too, through one copy into rfaas's own slot buffers.
  // register_memory of a range inside a registration does nothing (it travels without a copy
  // already); of a longer range starting where one starts, it replaces that one.
  virtual std::unique_ptr<Buffer> allocate(size_t bytes) = 0;
  virtual void register_memory(void* data, size_t bytes) = 0;
  // By start address, as registered; false when register_memory made no registration there.
  virtual bool deregister_memory(void* data) = 0;
  // Whether [data, data+bytes) travels without a copy (inside one registration or allocate()d buffer).
  virtual bool registered(const void* data, size_t bytes) const noexcept = 0;
  // What register_memory registered, by start address: what a new lease must register again.
  virtual std::vector<std::pair<void*, size_t>> registered_ranges() const = 0;

  // Synchronous call: `out_size` gets the result's length. Bounded by `timeout` (default:
  // DeployOptions::invocation_timeout).
  virtual Errc invoke(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                      size_t* out_size, std::chrono::microseconds timeout = std::chrono::microseconds(-1)) noexcept = 0;
  // Starts an invocation on `worker` (-1: the least loaded one); queued behind the worker's
  // slots when they are all in flight. `in` and `out` must stay valid until it completes.
  virtual Errc submit(int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                      Invocation* handle, int worker = -1) noexcept = 0;
  // Completes a submitted call; Errc::timeout leaves it pending (wait again or abandon). For
  // Errc::function_failed, *out_size is the function's error status.
  virtual Errc wait(const Invocation& handle, size_t* out_size,
                    std::chrono::microseconds timeout = std::chrono::microseconds(-1)) noexcept = 0;
  // Non-blocking: *done is set when wait() would return at once.
  virtual Errc test(const Invocation& handle, bool* done) noexcept = 0;
  // Gives up on a pending invocation; its slot returns when the late result arrives.
  virtual void abandon(const Invocation& handle) noexcept = 0;
  // Progress for many calls at once: polls every worker's connection once and returns, in `out`,
  // up to `max` submitted calls that have completed and that no wait() took. Each returned call is
  // finished, as after wait() (its handle is spent). When the lease is lost, every call still
  // outstanding is returned with the lease's end. Never blocks; allocates nothing.
  struct Completed {
    Invocation handle;
    Errc result;
    size_t size;  // as wait()'s *out_size
  };
  virtual size_t progress(Completed* out, size_t max) noexcept = 0;
  // The same input to every worker; outs[i] (capacity out_capacity each) gets worker i's result.
  virtual Errc invoke_all(int function, const void* in, size_t in_size, void* const* outs, size_t out_capacity,
                          size_t* out_sizes) noexcept = 0;

  // Resident regions. create_region maps `bytes` of zeroed memory on the executor, counted
  // against the lease's memory (Errc::memory_exceeded beyond it), and returns its id (0, 1, ...
  // in creation order; functions see it as call->regions[id]). Regions live until the lease ends.
  virtual uint32_t create_region(uint64_t bytes) = 0;
  virtual uint32_t region_count() const noexcept = 0;
  virtual uint64_t region_size(uint32_t region) const noexcept = 0;  // 0: no such region
  // Writes src[0, bytes) to the region at `offset` with one RDMA write into the executor's
  // memory; the worker that receives it only acknowledges. Unregistered src is staged through
  // the slot (at most input_capacity bytes). `worker` picks the connection (-1: any).
  virtual Errc submit_put(uint32_t region, uint64_t offset, const void* src, size_t bytes, Invocation* handle,
                          int worker = -1) noexcept = 0;
  // Reads region bytes [offset, offset + bytes) into dst (at most 8 MiB - 1 per get; an
  // unregistered dst at most output_capacity).
  virtual Errc submit_get(uint32_t region, uint64_t offset, void* dst, size_t bytes, Invocation* handle,
                          int worker = -1) noexcept = 0;
  // Blocking forms, of any size: split into as many puts / gets as needed, all completed.
  virtual Errc put(uint32_t region, uint64_t offset, const void* src, size_t bytes,
                   std::chrono::microseconds timeout = std::chrono::microseconds(-1)) noexcept = 0;
  virtual Errc get(uint32_t region, uint64_t offset, void* dst, size_t bytes,
                   std::chrono::microseconds timeout = std::chrono::microseconds(-1)) noexcept = 0;

  // Presents a renewed token (from broker_renew) to the executor daemon, which moves the lease's
  // expiry. Throws Error (bad_token: not this lease; lease_expired / lease_revoked: over already).
  virtual void renew(const LeaseGrant& renewed) = 0;
  virtual int64_t expires_at_ms() const noexcept = 0;

  // What the executor counted so far, measured on the leased cores (a control round trip to
  // the daemon, not for the invocation path). Throws Error (the lease is over: its named end).
  virtual Usage usage() = 0;
  // Ends the lease and returns what the executor counted. Idempotent; the destructor releases.
  virtual Usage release() = 0;

 protected:
  Executor() = default;
};

}  // namespace rfaas
#pragma GCC visibility pop
