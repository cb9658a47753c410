// The C API (include/rfaas/rfaas.h) over the C++ client: exceptions become codes here, with
// the message kept per thread for rfaas_last_error().
#include "rfaas/rfaas.h"

#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "rfaas/client.hpp"
#include "text/comma_list.hpp"

struct rfaas_lease {
  rfaas::LeaseGrant grant;
  std::string broker;  // empty: a direct lease
  std::chrono::milliseconds timeout{10'000};
};

struct rfaas_executor {
  std::unique_ptr<rfaas::Executor> impl;
  std::map<void*, std::unique_ptr<rfaas::Buffer>> buffers;  // rfaas_alloc's, by address
};

// Every C++ code has its C code, of the same value, checked at compile time: an Errc added without
// a case here is an error (-Wswitch made one), and a value that differs fails the assertion.
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wswitch"
constexpr int c_code(rfaas::Errc e) {
  using rfaas::Errc;
  switch (e) {
    case Errc::ok: return RFAAS_OK;
    case Errc::unknown_function: return RFAAS_ERR_UNKNOWN_FUNCTION;
    case Errc::payload_too_large: return RFAAS_ERR_PAYLOAD_TOO_LARGE;
    case Errc::output_too_large: return RFAAS_ERR_OUTPUT_TOO_LARGE;
    case Errc::executor_lost: return RFAAS_ERR_EXECUTOR_LOST;
    case Errc::lease_expired: return RFAAS_ERR_LEASE_EXPIRED;
    case Errc::lease_revoked: return RFAAS_ERR_LEASE_REVOKED;
    case Errc::bad_token: return RFAAS_ERR_BAD_TOKEN;
    case Errc::library_load_failed: return RFAAS_ERR_LIBRARY_LOAD_FAILED;
    case Errc::no_capacity: return RFAAS_ERR_NO_CAPACITY;
    case Errc::timeout: return RFAAS_ERR_TIMEOUT;
    case Errc::invalid_argument: return RFAAS_ERR_INVALID_ARGUMENT;
    case Errc::connection_failed: return RFAAS_ERR_CONNECTION_FAILED;
    case Errc::protocol: return RFAAS_ERR_PROTOCOL;
    case Errc::lease_in_use: return RFAAS_ERR_LEASE_IN_USE;
    case Errc::no_such_region: return RFAAS_ERR_NO_SUCH_REGION;
    case Errc::region_out_of_bounds: return RFAAS_ERR_REGION_OUT_OF_BOUNDS;
    case Errc::memory_exceeded: return RFAAS_ERR_MEMORY_EXCEEDED;
    case Errc::queue_full: return RFAAS_ERR_QUEUE_FULL;
    case Errc::function_failed: return RFAAS_ERR_FUNCTION_FAILED;
    case Errc::not_authenticated: return RFAAS_ERR_NOT_AUTHENTICATED;
    case Errc::not_permitted: return RFAAS_ERR_NOT_PERMITTED;
  }
  return -1;
}
#pragma GCC diagnostic pop
// The MPI layer's own codes (rfaas_mpi.h) are C codes with no Errc.
constexpr bool mpi_layer_code(int v) { return v == RFAAS_ERR_BUSY || v == RFAAS_ERR_NOT_INITIALIZED; }
constexpr bool c_codes_agree() {
  for (int v = RFAAS_OK; v <= RFAAS_ERR_NOT_PERMITTED; ++v)
    if (!mpi_layer_code(v) && c_code(static_cast<rfaas::Errc>(v)) != v) return false;
  return true;
}
static_assert(c_codes_agree(), "every rfaas::Errc and its RFAAS_ERR_* code have the same value");

namespace {

thread_local std::string g_last_error;

int fail(rfaas::Errc code, const std::string& message) {
  g_last_error = message;
  return static_cast<int>(code);
}

using rfaas::text::split_commas;

template <class F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const rfaas::Error& e) {
    return fail(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return fail(rfaas::Errc::invalid_argument, "out of memory");
  } catch (const std::exception& e) {
    return fail(rfaas::Errc::protocol, e.what());
  }
}

}  // namespace

extern "C" {

const char* rfaas_strerror(int code) {
  if (code < 0 || code > RFAAS_ERR_NOT_PERMITTED) return "unknown rfaas error code";
  if (code == RFAAS_ERR_BUSY) return "requests still pending";
  if (code == RFAAS_ERR_NOT_INITIALIZED) return "rfaas is not initialized (call rfaas_mpi_init first)";
  return rfaas::to_string(static_cast<rfaas::Errc>(code));
}

const char* rfaas_last_error(void) { return g_last_error.c_str(); }

void rfaas_deploy_options_init(rfaas_deploy_options* o) {
  if (!o) return;
  rfaas::DeployOptions d;
  *o = rfaas_deploy_options{nullptr,
                            nullptr,
                            static_cast<int32_t>(d.workers),
                            static_cast<int32_t>(d.slots),
                            d.input_capacity,
                            d.output_capacity,
                            d.hot_timeout_us,
                            static_cast<int64_t>(d.invocation_timeout.count()),
                            static_cast<int32_t>(d.queue_depth),
                            nullptr};
}

int rfaas_lease_direct(const char* daemon_address, const char* node_name, const char* secret_file, int32_t cores,
                       int64_t duration_ms, rfaas_lease** lease) {
  if (!daemon_address || !node_name || !secret_file || !lease || cores < 1 || duration_ms <= 0)
    return fail(rfaas::Errc::invalid_argument, "rfaas_lease_direct: missing or invalid argument");
  return guarded([&] {
    rfaas::DirectLeaseOptions o;
    o.node_name = node_name;
    o.secret_file = secret_file;
    o.cores = static_cast<uint32_t>(cores);
    o.duration = std::chrono::milliseconds(duration_ms);
    o.client = "rfaas-c-api";
    *lease = new rfaas_lease{rfaas::direct_lease(daemon_address, o), {}, std::chrono::milliseconds(10'000)};
    return RFAAS_OK;
  });
}

void rfaas_lease_options_init(rfaas_lease_options* o) {
  if (!o) return;
  rfaas::BrokerLeaseOptions d;
  *o = rfaas_lease_options{static_cast<int32_t>(d.cores), d.memory_bytes, static_cast<int64_t>(d.duration.count()),
                           nullptr, static_cast<int64_t>(d.timeout.count())};
}

int rfaas_lease_broker(const char* broker_address, const rfaas_lease_options* o, rfaas_lease** lease) {
  if (!broker_address) broker_address = std::getenv("RFAAS_BROKER");
  if (!broker_address || !*broker_address)
    return fail(rfaas::Errc::invalid_argument, "rfaas_lease_broker: no broker address given and RFAAS_BROKER unset");
  if (!o || !lease || o->cores < 1 || o->duration_ms <= 0 || o->timeout_ms <= 0)
    return fail(rfaas::Errc::invalid_argument, "rfaas_lease_broker: missing or invalid argument");
  return guarded([&] {
    rfaas::BrokerLeaseOptions b;
    b.cores = static_cast<uint32_t>(o->cores);
    b.memory_bytes = o->memory_bytes;
    b.duration = std::chrono::milliseconds(o->duration_ms);
    b.timeout = std::chrono::milliseconds(o->timeout_ms);
    b.client = "rfaas-c-api";
    if (o->avoid_nodes) b.avoid_nodes = split_commas(o->avoid_nodes);
    *lease = new rfaas_lease{rfaas::broker_lease(broker_address, b), broker_address, b.timeout};
    return RFAAS_OK;
  });
}

int rfaas_lease_renew(rfaas_lease* lease, rfaas_executor* executor, int64_t duration_ms) {
  if (!lease || duration_ms <= 0) return fail(rfaas::Errc::invalid_argument, "rfaas_lease_renew: no lease or duration");
  if (lease->broker.empty()) return fail(rfaas::Errc::invalid_argument, "rfaas_lease_renew: a direct lease has no broker");
  return guarded([&] {
    rfaas::LeaseGrant renewed =
        rfaas::broker_renew(lease->broker, lease->grant, std::chrono::milliseconds(duration_ms), lease->timeout);
    lease->grant = renewed;  // renewed at the broker, whatever the executor says
    if (executor) executor->impl->renew(renewed);
    return RFAAS_OK;
  });
}

int rfaas_lease_release(rfaas_lease* lease) {
  if (!lease) return fail(rfaas::Errc::invalid_argument, "rfaas_lease_release: no lease");
  if (lease->broker.empty()) return fail(rfaas::Errc::invalid_argument, "rfaas_lease_release: a direct lease has no broker");
  return guarded([&] {
    rfaas::broker_release(lease->broker, lease->grant.lease_id, lease->timeout);
    return RFAAS_OK;
  });
}

uint64_t rfaas_lease_id(const rfaas_lease* lease) { return lease ? lease->grant.lease_id : 0; }
int64_t rfaas_lease_expires_at_ms(const rfaas_lease* lease) { return lease ? lease->grant.expires_at_ms : 0; }
const char* rfaas_lease_node(const rfaas_lease* lease) { return lease ? lease->grant.node.c_str() : ""; }

void rfaas_lease_free(rfaas_lease* lease) { delete lease; }

int rfaas_deploy(const rfaas_lease* lease, const rfaas_deploy_options* o, rfaas_executor** executor) {
  if (!lease || !o || !executor || !o->library_path || !o->functions || o->workers < 1 || o->slots < 1)
    return fail(rfaas::Errc::invalid_argument, "rfaas_deploy: missing or invalid argument");
  return guarded([&] {
    rfaas::DeployOptions d;
    d.library_path = o->library_path;
    d.functions = split_commas(o->functions);
    if (o->dependencies) d.dependencies = split_commas(o->dependencies);
    d.workers = static_cast<uint32_t>(o->workers);
    d.slots = static_cast<uint32_t>(o->slots);
    if (o->queue_depth < 0) throw rfaas::Error(rfaas::Errc::invalid_argument, "rfaas_deploy: negative queue_depth");
    d.queue_depth = static_cast<uint32_t>(o->queue_depth);
    d.input_capacity = o->input_capacity;
    d.output_capacity = o->output_capacity;
    d.hot_timeout_us = o->hot_timeout_us;
    if (o->invocation_timeout_ms > 0) d.invocation_timeout = std::chrono::milliseconds(o->invocation_timeout_ms);
    auto impl = rfaas::Executor::deploy(lease->grant, d);
    *executor = new rfaas_executor{std::move(impl), {}};
    return RFAAS_OK;
  });
}

int rfaas_function(const rfaas_executor* e, const char* name) {
  return e && name ? e->impl->function(name) : -1;
}

int rfaas_workers(const rfaas_executor* e) { return e ? static_cast<int>(e->impl->workers()) : 0; }

int64_t rfaas_expires_at_ms(const rfaas_executor* e) { return e ? e->impl->expires_at_ms() : 0; }

int rfaas_library_was_cached(const rfaas_executor* e) { return e && e->impl->library_was_cached() ? 1 : 0; }

uint64_t rfaas_region_size(const rfaas_executor* e, uint32_t region) { return e ? e->impl->region_size(region) : 0; }

int rfaas_register(rfaas_executor* e, void* data, size_t bytes) {
  if (!e) return fail(rfaas::Errc::invalid_argument, "rfaas_register: no executor");
  return guarded([&] {
    e->impl->register_memory(data, bytes);
    return RFAAS_OK;
  });
}

int rfaas_deregister(rfaas_executor* e, void* data) {
  if (!e) return fail(rfaas::Errc::invalid_argument, "rfaas_deregister: no executor");
  return guarded([&] {
    e->impl->deregister_memory(data);
    return RFAAS_OK;
  });
}

int rfaas_alloc(rfaas_executor* e, size_t bytes, void** data) {
  if (!e || !data || bytes == 0) return fail(rfaas::Errc::invalid_argument, "rfaas_alloc: no executor, no result or 0 bytes");
  return guarded([&] {
    auto buffer = e->impl->allocate(bytes);
    void* p = buffer->data();
    e->buffers.emplace(p, std::move(buffer));
    *data = p;
    return RFAAS_OK;
  });
}

void rfaas_free(rfaas_executor* e, void* data) {
  if (e) e->buffers.erase(data);
}

int rfaas_invoke_all(rfaas_executor* e, int function, const void* in, size_t in_size, void* const* outs,
                     size_t out_capacity, size_t* out_sizes) {
  if (!e || !outs || !out_sizes) return RFAAS_ERR_INVALID_ARGUMENT;
  return static_cast<int>(e->impl->invoke_all(function, in, in_size, outs, out_capacity, out_sizes));
}

int rfaas_invoke(rfaas_executor* e, int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                 size_t* out_size) {
  if (!e) return RFAAS_ERR_INVALID_ARGUMENT;
  return static_cast<int>(e->impl->invoke(function, in, in_size, out, out_capacity, out_size));
}

int rfaas_submit(rfaas_executor* e, int function, const void* in, size_t in_size, void* out, size_t out_capacity,
                 rfaas_invocation* handle) {
  if (!e || !handle) return RFAAS_ERR_INVALID_ARGUMENT;
  rfaas::Invocation h;
  auto rc = e->impl->submit(function, in, in_size, out, out_capacity, &h);
  if (rc == rfaas::Errc::ok) *handle = {h.worker, h.call, h.generation};
  return static_cast<int>(rc);
}

int rfaas_wait(rfaas_executor* e, const rfaas_invocation* handle, size_t* out_size, int64_t timeout_us) {
  if (!e || !handle) return RFAAS_ERR_INVALID_ARGUMENT;
  rfaas::Invocation h{handle->worker, handle->call, handle->generation};
  return static_cast<int>(e->impl->wait(h, out_size, std::chrono::microseconds(timeout_us < 0 ? -1 : timeout_us)));
}

void rfaas_abandon(rfaas_executor* e, const rfaas_invocation* handle) {
  if (e && handle) e->impl->abandon({handle->worker, handle->call, handle->generation});
}

int rfaas_test(rfaas_executor* e, const rfaas_invocation* handle, int* done) {
  if (!e || !handle || !done) return RFAAS_ERR_INVALID_ARGUMENT;
  bool d = false;
  auto rc = e->impl->test({handle->worker, handle->call, handle->generation}, &d);
  *done = d ? 1 : 0;
  return static_cast<int>(rc);
}

int rfaas_create_region(rfaas_executor* e, uint64_t bytes, uint32_t* region) {
  if (!e || !region) return fail(rfaas::Errc::invalid_argument, "rfaas_create_region: no executor or no region");
  return guarded([&] {
    *region = e->impl->create_region(bytes);
    return RFAAS_OK;
  });
}

int rfaas_region_put(rfaas_executor* e, uint32_t region, uint64_t offset, const void* src, size_t bytes) {
  if (!e) return RFAAS_ERR_INVALID_ARGUMENT;
  return static_cast<int>(e->impl->put(region, offset, src, bytes));
}

int rfaas_region_get(rfaas_executor* e, uint32_t region, uint64_t offset, void* dst, size_t bytes) {
  if (!e) return RFAAS_ERR_INVALID_ARGUMENT;
  return static_cast<int>(e->impl->get(region, offset, dst, bytes));
}

int rfaas_submit_region_put(rfaas_executor* e, uint32_t region, uint64_t offset, const void* src, size_t bytes,
                            rfaas_invocation* handle) {
  if (!e || !handle) return RFAAS_ERR_INVALID_ARGUMENT;
  rfaas::Invocation h;
  auto rc = e->impl->submit_put(region, offset, src, bytes, &h);
  if (rc == rfaas::Errc::ok) *handle = {h.worker, h.call, h.generation};
  return static_cast<int>(rc);
}

int rfaas_submit_region_get(rfaas_executor* e, uint32_t region, uint64_t offset, void* dst, size_t bytes,
                            rfaas_invocation* handle) {
  if (!e || !handle) return RFAAS_ERR_INVALID_ARGUMENT;
  rfaas::Invocation h;
  auto rc = e->impl->submit_get(region, offset, dst, bytes, &h);
  if (rc == rfaas::Errc::ok) *handle = {h.worker, h.call, h.generation};
  return static_cast<int>(rc);
}

int rfaas_release(rfaas_executor* e, rfaas_usage* usage) {
  if (!e) return fail(rfaas::Errc::invalid_argument, "rfaas_release: no executor");
  return guarded([&] {
    auto u = e->impl->release();
    if (usage) *usage = {u.invocations, u.hot_polling_ns, u.compute_ns};
    return RFAAS_OK;
  });
}

void rfaas_executor_free(rfaas_executor* e) { delete e; }

}  // extern "C"
