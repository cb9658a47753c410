// rfaas for MPI codes (include/rfaas/rfaas_mpi.h), over the public client API only.
//
// One OffloadSession per process: the rank's lease (one broker lease, one worker per leased
// core) and a fixed pool of offload records, one per slot and queue entry, made at init so that
// rfaas_ioffload allocates nothing of its own. Which buffers are registered is the client's to
// know (Executor::registered). Non-blocking offloads are MPI generalized requests; Open MPI's
// progress engine (opal_progress, which MPI_Wait/Waitall/Test spin in) calls progress_offloads(),
// which completes every finished one in one pass (Executor::progress); under MPICH each request's
// poll function (MPIX_Grequest_start) does. No helper thread, no lock.
#include "rfaas/rfaas_mpi.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rfaas/client.hpp"

namespace rfaas::mpi {
namespace {

thread_local std::string g_last_error;

// The MPI layer's own codes (RFAAS_ERR_BUSY, RFAAS_ERR_NOT_INITIALIZED) are C codes only.
int fail(int code, const std::string& message) {
  g_last_error = message;
  return code;
}
int fail(Errc code, const std::string& message) { return fail(static_cast<int>(code), message); }

// Open MPI's progress callbacks: exported by libopen-pal (what its own components use), found
// at init so that nothing links against Open MPI internals. MPICH instead calls a generalized
// request's own poll function from MPI_Test/Wait (MPIX_Grequest_start): chosen when built.
using ProgressCallback = int (*)();
using ProgressRegister = int (*)(ProgressCallback);
#if defined(MPICH_NUMVERSION)
constexpr bool kPollFunctions = true;
#else
constexpr bool kPollFunctions = false;
#endif

struct OffloadRecord {
  Invocation handle{};
  MPI_Request request = MPI_REQUEST_NULL;
  int code = 0;
  size_t size = 0;
  bool in_flight = false;  // submitted, not yet completed towards MPI
  bool completed = false;  // MPI_Grequest_complete called
  bool freed = false;      // MPI released the request (free_fn)
  bool cancelled = false;
  size_t put_bytes = 0;  // a put's size; 0 for an offload
  bool is_put = false;
};

struct OffloadSession {
  MPI_Comm comm = MPI_COMM_NULL;
  LeaseGrant grant;
  std::string broker;
  BrokerLeaseOptions lease_options;  // kept for rfaas_mpi_recover
  DeployOptions deploy_options;
  std::unique_ptr<Executor> executor;
  std::vector<std::string> names;  // deployed functions; the index is the function id
  // The last few names asked for, by pointer (callers pass the same literal each time): one
  // compare confirms the id, where a search would compare with every name.
  struct KnownName {
    const char* pointer = nullptr;
    int id = -1;
  };
  KnownName known_names[8];
  uint32_t next_known = 0;
  std::vector<std::pair<void*, size_t>> restore;  // registrations the next rfaas_mpi_recover makes again
  std::vector<OffloadRecord> records;
  std::vector<uint32_t> free_records;
  // The record of each of the client's call entries in flight: worker * calls_per_worker + call.
  std::vector<uint32_t> record_of;
  uint32_t calls_per_worker = 0;
  size_t in_flight = 0;
  std::vector<Executor::Completed> completed;  // progress()'s output, sized at init
  std::vector<uint64_t> region_sizes;  // by id, made again by rfaas_mpi_recover
  rfaas_mpi_stats stats{};
  size_t output_capacity = 0;
  ProgressRegister unregister_progress = nullptr;
  bool progress_hooked = false;  // MPI's progress completes the requests (either way above)
  bool in_progress = false;
};

OffloadSession* g_session = nullptr;

int function_id(OffloadSession& s, const char* name) noexcept {
  if (!name) return -1;
  // The same pointer may hold another name now (a buffer reused): the compare says.
  for (const auto& k : s.known_names)
    if (k.pointer == name && std::strcmp(s.names[k.id].c_str(), name) == 0) return k.id;
  for (size_t i = 0; i < s.names.size(); ++i) {
    if (std::strcmp(s.names[i].c_str(), name) != 0) continue;
    s.known_names[s.next_known++ % std::size(s.known_names)] = {name, static_cast<int>(i)};
    return static_cast<int>(i);
  }
  return -1;
}

void count_transfer(OffloadSession& s, const void* in, size_t in_size, void* out, size_t out_capacity) noexcept {
  if (in_size) ++(s.executor->registered(in, in_size) ? s.stats.zero_copy_inputs : s.stats.copied_inputs);
  if (out_capacity) {
    size_t cap = std::min<size_t>(out_capacity, s.output_capacity);  // what the client writes at most
    ++(s.executor->registered(out, cap) ? s.stats.zero_copy_outputs : s.stats.copied_outputs);
  }
}

void count_result(OffloadSession& s, int code) noexcept {
  ++(code == 0 ? s.stats.offloads : s.stats.failed_offloads);
}

void count_put(OffloadSession& s, int code, size_t bytes) noexcept {
  if (code != 0) return;
  ++s.stats.puts;
  s.stats.put_bytes += bytes;
}

void release_record(OffloadSession& s, uint32_t index) noexcept {
  s.records[index] = OffloadRecord{};
  s.free_records.push_back(index);  // capacity reserved at init: no allocation
}

// --- generalized request callbacks ------------------------------------------------------------

int query_offload(void* state, MPI_Status* status) {
  auto* r = static_cast<OffloadRecord*>(state);
  MPI_Status_set_elements(status, MPI_BYTE, static_cast<int>(r->size));
  MPI_Status_set_cancelled(status, r->cancelled ? 1 : 0);
  status->MPI_SOURCE = MPI_UNDEFINED;
  status->MPI_TAG = r->code;
  status->MPI_ERROR = MPI_SUCCESS;
  return MPI_SUCCESS;
}

int free_offload(void* state) {
  auto* r = static_cast<OffloadRecord*>(state);
  r->freed = true;
  if (g_session && r->completed) release_record(*g_session, static_cast<uint32_t>(r - g_session->records.data()));
  return MPI_SUCCESS;
}

void complete_record(OffloadSession& s, uint32_t index, int code, size_t size) noexcept {
  OffloadRecord& r = s.records[index];
  r.code = code;
  r.size = size;
  r.in_flight = false;
  r.completed = true;
  if (r.is_put) count_put(s, code, r.put_bytes);
  else count_result(s, code);
  --s.in_flight;
  MPI_Grequest_complete(r.request);
}

int cancel_offload(void* state, int complete) {
  auto* r = static_cast<OffloadRecord*>(state);
  if (complete || !g_session || !r->in_flight) return MPI_SUCCESS;
  // The write is on the wire: give up on it; the slot returns when the late result arrives.
  g_session->executor->abandon(r->handle);
  r->cancelled = true;
  complete_record(*g_session, static_cast<uint32_t>(r - g_session->records.data()), static_cast<int>(Errc::timeout), 0);
  return MPI_SUCCESS;
}

// Called from MPI's progress (Open MPI's opal_progress, MPICH's poll of a pending request), i.e.
// inside MPI_Wait / MPI_Waitall / MPI_Test: one pass over the lease's connections completes every
// request that finished.
int progress_offloads() {
  OffloadSession* s = g_session;
  if (!s || !s->in_flight || s->in_progress || !s->executor) return 0;
  s->in_progress = true;
  int events = 0;
  for (;;) {
    const size_t n = s->executor->progress(s->completed.data(), s->completed.size());
    for (size_t i = 0; i < n; ++i) {
      const auto& c = s->completed[i];
      const uint32_t index = s->record_of[c.handle.worker * s->calls_per_worker + c.handle.call];
      complete_record(*s, index, static_cast<int>(c.result), c.size);
    }
    events += static_cast<int>(n);
    if (n < s->completed.size()) break;
  }
  s->in_progress = false;
  return events;
}

#if defined(MPICH_NUMVERSION)
// MPICH's progress engine polls each pending generalized request: one pass completes them all.
int poll_offload(void*, MPI_Status*) {
  progress_offloads();
  return MPI_SUCCESS;
}

// MPICH's blocking wait on some of them: passes until they are all complete (MPICH 3-based
// libraries expect them complete when it returns). Bounded: by `timeout` if MPI gives one, else
// by the offloads' own bound (an invocation timeout, or the executor found lost, ends each).
int wait_offloads(int count, void** states, double timeout, MPI_Status*) {
  const auto bound = timeout > 0 ? std::chrono::duration<double>(timeout)
                                 : std::chrono::duration<double>(g_session ? g_session->deploy_options.invocation_timeout
                                                                           : std::chrono::milliseconds(10'000)) * 2;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(bound);
  for (;;) {
    progress_offloads();
    bool all = true;
    for (int i = 0; i < count && all; ++i) all = static_cast<OffloadRecord*>(states[i])->completed;
    if (all || std::chrono::steady_clock::now() >= end) return MPI_SUCCESS;
  }
}
#endif

// A call as an MPI generalized request: submit(handle) starts it on the executor.
template <class Submit>
int start_request(OffloadSession& s, MPI_Request* request, bool is_put, size_t put_bytes, Submit submit) {
  if (s.free_records.empty()) return static_cast<int>(Errc::queue_full);
  uint32_t index = s.free_records.back();
  OffloadRecord& r = s.records[index];
  Errc e = submit(&r.handle);
  if (e != Errc::ok) return static_cast<int>(e);
  s.free_records.pop_back();
  r.in_flight = true;
  r.is_put = is_put;
  r.put_bytes = put_bytes;
  s.record_of[r.handle.worker * s.calls_per_worker + r.handle.call] = index;
  ++s.in_flight;
#if defined(MPICH_NUMVERSION)
  MPIX_Grequest_start(&query_offload, &free_offload, &cancel_offload, &poll_offload, &wait_offloads, &r, &r.request);
#else
  MPI_Grequest_start(&query_offload, &free_offload, &cancel_offload, &r, &r.request);
#endif
  *request = r.request;
  return RFAAS_OK;
}

std::vector<std::string> split_names(const char* list) {
  std::vector<std::string> out;
  std::string names = list ? list : "";
  for (size_t pos = 0; pos <= names.size();) {
    size_t comma = names.find(',', pos);
    if (comma == std::string::npos) comma = names.size();
    if (comma > pos) out.push_back(names.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// This rank's part of rfaas_mpi_init: lease, deploy, pool. Throws Error.
std::unique_ptr<OffloadSession> open_session(const rfaas_mpi_config& cfg, int rank) {
  auto s = std::make_unique<OffloadSession>();
  const char* broker = cfg.broker ? cfg.broker : std::getenv("RFAAS_BROKER");
  const char* library = cfg.library_path ? cfg.library_path : std::getenv("RFAAS_LIBRARY");
  if (!broker || !*broker) throw Error(Errc::invalid_argument, "no lease broker: set cfg.broker or RFAAS_BROKER");
  if (!library || !*library)
    throw Error(Errc::invalid_argument, "no function library: set cfg.library_path or RFAAS_LIBRARY");
  s->names = split_names(cfg.functions);
  if (s->names.empty()) throw Error(Errc::invalid_argument, "cfg.functions names no function");
  if (cfg.cores_per_rank < 1 || cfg.slots < 1 || cfg.slots > static_cast<int32_t>(kMaxSlotsPerWorker) ||
      cfg.duration_ms <= 0)
    throw Error(Errc::invalid_argument, "cores_per_rank, slots (1.." + std::to_string(kMaxSlotsPerWorker) +
                                            ") and duration_ms must be positive");

  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_len = 0;
  MPI_Get_processor_name(host, &host_len);

  BrokerLeaseOptions lo;
  lo.cores = static_cast<uint32_t>(cfg.cores_per_rank);
  if (cfg.queue_depth < 0) throw Error(Errc::invalid_argument, "queue_depth must not be negative");
  uint64_t per_core = static_cast<uint64_t>(cfg.slots) * (cfg.input_capacity + cfg.output_capacity);
  lo.memory_bytes = lo.cores * per_core + cfg.region_bytes + (64ull << 20);
  lo.duration = std::chrono::milliseconds(cfg.duration_ms);
  lo.client = "mpi:" + std::string(host) + ":rank" + std::to_string(rank);
  if (cfg.avoid_own_node) lo.avoid_nodes.push_back(cfg.own_node ? cfg.own_node : host);
  s->broker = broker;
  s->lease_options = lo;
  s->grant = broker_lease(s->broker, lo);

  DeployOptions d;
  d.library_path = library;
  d.functions = s->names;
  d.dependencies = split_names(cfg.dependencies);
  d.workers = lo.cores;
  d.slots = static_cast<uint32_t>(cfg.slots);
  d.queue_depth = static_cast<uint32_t>(cfg.queue_depth);
  d.input_capacity = cfg.input_capacity;
  d.output_capacity = cfg.output_capacity;
  d.hot_timeout_us = cfg.hot_timeout_us;
  if (cfg.invocation_timeout_ms > 0) d.invocation_timeout = std::chrono::milliseconds(cfg.invocation_timeout_ms);
  s->deploy_options = d;
  try {
    s->executor = Executor::deploy(s->grant, d);
  } catch (...) {
    broker_release(s->broker, s->grant.lease_id);
    throw;
  }
  s->output_capacity = d.output_capacity;
  s->calls_per_worker = d.slots + d.queue_depth;
  size_t n = static_cast<size_t>(lo.cores) * s->calls_per_worker;
  s->records.resize(n);
  s->record_of.resize(n);
  s->completed.resize(std::min<size_t>(n, 64));
  s->free_records.reserve(n);
  for (size_t i = n; i-- > 0;) s->free_records.push_back(static_cast<uint32_t>(i));
  return s;
}

rfaas_usage close_session(OffloadSession& s) noexcept {
  rfaas_usage usage{0, 0, 0};
  try {
    if (s.executor) {
      auto u = s.executor->release();
      usage = {u.invocations, u.hot_polling_ns, u.compute_ns};
    }
  } catch (...) {
  }
  try {
    broker_release(s.broker, s.grant.lease_id);
  } catch (...) {
    // The executor daemon reports the lease's end to the broker as well.
  }
  return usage;
}

int agree(MPI_Comm comm, int code) {
  int all = code;
  MPI_Allreduce(&code, &all, 1, MPI_INT, MPI_MAX, comm);
  return all;
}

}  // namespace
}  // namespace rfaas::mpi

using namespace rfaas::mpi;
using rfaas::Errc;
using rfaas::BrokerLeaseOptions;
using rfaas::Executor;
using rfaas::LeaseGrant;
using rfaas::broker_lease;
using rfaas::broker_release;
using rfaas::broker_renew;

extern "C" {

void rfaas_mpi_config_init(rfaas_mpi_config* cfg) {
  if (!cfg) return;
  rfaas::DeployOptions d;
  *cfg = rfaas_mpi_config{};
  cfg->cores_per_rank = 1;
  cfg->duration_ms = 10 * 60 * 1000;
  cfg->slots = static_cast<int32_t>(d.slots);
  cfg->input_capacity = d.input_capacity;
  cfg->output_capacity = d.output_capacity;
  cfg->hot_timeout_us = d.hot_timeout_us;
  cfg->invocation_timeout_ms = static_cast<int64_t>(d.invocation_timeout.count());
  cfg->queue_depth = static_cast<int32_t>(d.queue_depth);
}

const char* rfaas_mpi_last_error(void) { return g_last_error.c_str(); }

int rfaas_mpi_initialized(void) { return g_session != nullptr; }

int rfaas_mpi_cores(void) {
  return g_session && g_session->executor ? static_cast<int>(g_session->executor->workers()) : 0;
}

int rfaas_mpi_init(MPI_Comm comm, const rfaas_mpi_config* cfg) {
  int mpi_up = 0;
  MPI_Initialized(&mpi_up);
  if (!mpi_up) return fail(Errc::invalid_argument, "rfaas_mpi_init: MPI is not initialized");
  if (g_session) return fail(Errc::invalid_argument, "rfaas_mpi_init: already initialized");
  int rank = 0;
  MPI_Comm_rank(comm, &rank);

  int code = 0;
  std::unique_ptr<OffloadSession> s;
  if (!cfg) {
    code = fail(Errc::invalid_argument, "rfaas_mpi_init: no config");
  } else {
    try {
      s = open_session(*cfg, rank);
    } catch (const rfaas::Error& e) {
      code = fail(e.code(), e.what());
    } catch (const std::exception& e) {
      code = fail(Errc::protocol, e.what());
    }
  }
  ProgressRegister reg = nullptr;
  if (s && kPollFunctions) {
    s->progress_hooked = true;
  } else if (s) {
    reg = reinterpret_cast<ProgressRegister>(dlsym(RTLD_DEFAULT, "opal_progress_register"));
    s->unregister_progress = reinterpret_cast<ProgressRegister>(dlsym(RTLD_DEFAULT, "opal_progress_unregister"));
    if (!reg || !s->unregister_progress) s->unregister_progress = nullptr;  // rfaas_ioffload refuses
    s->progress_hooked = s->unregister_progress != nullptr;
  }
  int all = agree(comm, code);
  if (all != 0) {
    if (s) close_session(*s);
    if (code == 0) g_last_error = "rfaas_mpi_init failed on another rank: " + std::string(rfaas_strerror(all));
    return all;
  }
  MPI_Comm_dup(comm, &s->comm);
  if (reg && s->unregister_progress) reg(&progress_offloads);
  g_session = s.release();
  return RFAAS_OK;
}

int rfaas_mpi_finalize(void) { return rfaas_mpi_finalize_usage(nullptr); }

int rfaas_mpi_finalize_usage(rfaas_usage* usage) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_finalize: not initialized");
  // Requests MPI still holds would call back into freed records: refuse, on every rank alike.
  int code = s->free_records.size() == s->records.size() ? 0 : RFAAS_ERR_BUSY;
  if (code) g_last_error = "rfaas_mpi_finalize: offload requests not yet completed and freed by MPI";
  int all = agree(s->comm, code);
  if (all) return all;
  if (s->unregister_progress) s->unregister_progress(&progress_offloads);
  const rfaas_usage counted = close_session(*s);
  if (usage) *usage = counted;
  MPI_Comm_free(&s->comm);
  g_session = nullptr;
  delete s;
  return RFAAS_OK;
}

int rfaas_offload(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                  size_t* out_size) {
  OffloadSession* s = g_session;
  if (!s) return RFAAS_ERR_NOT_INITIALIZED;
  if (!s->executor) return static_cast<int>(Errc::executor_lost);  // a failed rfaas_mpi_recover
  int id = function_id(*s, function);
  if (id < 0) return static_cast<int>(Errc::unknown_function);
  count_transfer(*s, in, in_size, out, out_capacity);
  Errc e = s->executor->invoke(id, in, in_size, out, out_capacity, out_size);
  count_result(*s, static_cast<int>(e));
  return static_cast<int>(e);
}

int rfaas_ioffload(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                   MPI_Request* request) {
  OffloadSession* s = g_session;
  if (!s) return RFAAS_ERR_NOT_INITIALIZED;
  if (!request) return static_cast<int>(Errc::invalid_argument);
  if (!s->executor) return static_cast<int>(Errc::executor_lost);
  if (!s->progress_hooked)
    return fail(Errc::invalid_argument, "rfaas_ioffload: this MPI library has no progress hook rfaas can use");
  int id = function_id(*s, function);
  if (id < 0) return static_cast<int>(Errc::unknown_function);
  return start_request(*s, request, false, 0, [&](rfaas::Invocation* h) {
    Errc e = s->executor->submit(id, in, in_size, out, out_capacity, h);
    if (e == Errc::ok) count_transfer(*s, in, in_size, out, out_capacity);
    return e;
  });
}

int rfaas_mpi_create_region(uint64_t bytes, uint32_t* region) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_create_region: not initialized");
  if (!region) return fail(Errc::invalid_argument, "rfaas_mpi_create_region: no region");
  if (!s->executor) return fail(Errc::executor_lost, "rfaas_mpi_create_region: no lease (rfaas_mpi_recover failed)");
  try {
    *region = s->executor->create_region(bytes);
    s->region_sizes.push_back(bytes);
  } catch (const rfaas::Error& e) {
    return fail(e.code(), e.what());
  }
  return RFAAS_OK;
}

int rfaas_put(uint32_t region, uint64_t offset, const void* src, size_t bytes) {
  OffloadSession* s = g_session;
  if (!s) return RFAAS_ERR_NOT_INITIALIZED;
  if (!s->executor) return static_cast<int>(Errc::executor_lost);
  int e = static_cast<int>(s->executor->put(region, offset, src, bytes));
  count_put(*s, e, bytes);
  return e;
}

int rfaas_iput(uint32_t region, uint64_t offset, const void* src, size_t bytes, MPI_Request* request) {
  OffloadSession* s = g_session;
  if (!s) return RFAAS_ERR_NOT_INITIALIZED;
  if (!request) return static_cast<int>(Errc::invalid_argument);
  if (!s->executor) return static_cast<int>(Errc::executor_lost);
  if (!s->progress_hooked)
    return fail(Errc::invalid_argument, "rfaas_iput: this MPI library has no progress hook rfaas can use");
  return start_request(*s, request, true, bytes,
                       [&](rfaas::Invocation* h) { return s->executor->submit_put(region, offset, src, bytes, h); });
}

int rfaas_get(uint32_t region, uint64_t offset, void* dst, size_t bytes) {
  OffloadSession* s = g_session;
  if (!s) return RFAAS_ERR_NOT_INITIALIZED;
  if (!s->executor) return static_cast<int>(Errc::executor_lost);
  int e = static_cast<int>(s->executor->get(region, offset, dst, bytes));
  if (e == 0) ++s->stats.gets;
  return e;
}

int rfaas_mpi_init_fortran(MPI_Fint comm, const rfaas_mpi_config* cfg) {
  return rfaas_mpi_init(MPI_Comm_f2c(comm), cfg);
}

int rfaas_ioffload_fortran(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                           MPI_Fint* request) {
  if (!request) return static_cast<int>(Errc::invalid_argument);
  MPI_Request r = MPI_REQUEST_NULL;
  int e = rfaas_ioffload(function, in, in_size, out, out_capacity, &r);
  if (e == RFAAS_OK) *request = MPI_Request_c2f(r);
  return e;
}

int rfaas_mpi_register(void* buf, size_t bytes) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_register: not initialized");
  if (!buf || bytes == 0) return fail(Errc::invalid_argument, "rfaas_mpi_register: empty range");
  if (!s->executor) return fail(Errc::executor_lost, "rfaas_mpi_register: no lease (rfaas_mpi_recover failed)");
  if (s->executor->registered(buf, bytes)) {
    ++s->stats.registration_hits;
    return RFAAS_OK;
  }
  try {
    s->executor->register_memory(buf, bytes);  // replaces a shorter one starting at buf
  } catch (const rfaas::Error& e) {
    return fail(e.code(), e.what());
  }
  ++s->stats.registrations;
  return RFAAS_OK;
}

int rfaas_mpi_deregister(void* buf) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_deregister: not initialized");
  if (s->executor ? s->executor->deregister_memory(buf)
                  : std::erase_if(s->restore, [&](const auto& r) { return r.first == buf; }) > 0)
    return RFAAS_OK;
  return fail(Errc::invalid_argument, "rfaas_mpi_deregister: not registered");
}

int rfaas_mpi_renew(int64_t duration_ms) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_renew: not initialized");
  if (duration_ms <= 0) return fail(Errc::invalid_argument, "rfaas_mpi_renew: duration must be positive");
  try {
    if (!s->executor) throw rfaas::Error(Errc::executor_lost, "rfaas_mpi_renew: no lease (rfaas_mpi_recover failed)");
    LeaseGrant renewed = broker_renew(s->broker, s->grant, std::chrono::milliseconds(duration_ms));
    s->executor->renew(renewed);
    s->grant = renewed;
  } catch (const rfaas::Error& e) {
    return fail(e.code(), e.what());
  }
  return RFAAS_OK;
}

int rfaas_mpi_recover(void) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_recover: not initialized");
  if (s->free_records.size() != s->records.size())
    return fail(RFAAS_ERR_BUSY, "rfaas_mpi_recover: complete the rank's offload requests first");
  // What is left of the old lease goes back (the daemon may already have ended it); its
  // registrations are made again on the new one.
  try {
    if (s->executor) s->restore = s->executor->registered_ranges();
    if (s->executor) s->executor->release();
  } catch (...) {
  }
  try {
    broker_release(s->broker, s->grant.lease_id);
  } catch (...) {
  }
  s->executor.reset();
  std::string lost_node = s->grant.node;
  // The lost lease's cores may take a moment to come back (its daemon stopping the executor, the
  // broker hearing of it): no_capacity is retried for a few seconds.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    try {
      BrokerLeaseOptions lo = s->lease_options;
      lo.avoid_nodes.push_back(lost_node);
      try {
        s->grant = broker_lease(s->broker, lo);
      } catch (const rfaas::Error& e) {
        // Only that node has room (e.g. the lease merely expired): take it there again.
        if (e.code() != Errc::no_capacity) throw;
        s->grant = broker_lease(s->broker, s->lease_options);
      }
      try {
        s->executor = Executor::deploy(s->grant, s->deploy_options);
        for (const auto& [p, bytes] : s->restore) s->executor->register_memory(p, bytes);
        for (uint64_t bytes : s->region_sizes) s->executor->create_region(bytes);  // zeroed: put again
      } catch (...) {
        s->executor.reset();
        try {
          broker_release(s->broker, s->grant.lease_id);
        } catch (...) {
        }
        throw;
      }
      break;
    } catch (const rfaas::Error& e) {
      if (e.code() != Errc::no_capacity || std::chrono::steady_clock::now() > give_up)
        return fail(e.code(), std::string("rfaas_mpi_recover: ") + e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return RFAAS_OK;
}

int rfaas_mpi_usage(rfaas_usage* usage) {
  OffloadSession* s = g_session;
  if (!s) return fail(RFAAS_ERR_NOT_INITIALIZED, "rfaas_mpi_usage: not initialized");
  if (!usage) return fail(Errc::invalid_argument, "rfaas_mpi_usage: no usage");
  if (!s->executor) return fail(Errc::executor_lost, "rfaas_mpi_usage: no lease (rfaas_mpi_recover failed)");
  try {
    auto u = s->executor->usage();
    *usage = {u.invocations, u.hot_polling_ns, u.compute_ns};
  } catch (const rfaas::Error& e) {
    return fail(e.code(), e.what());
  }
  return RFAAS_OK;
}

int rfaas_mpi_get_stats(rfaas_mpi_stats* stats) {
  if (!g_session) return RFAAS_ERR_NOT_INITIALIZED;
  if (!stats) return static_cast<int>(Errc::invalid_argument);
  *stats = g_session->stats;
  return RFAAS_OK;
}

}  // extern "C"
