/* The rfaas C API: leases, deployment and invocation for C, C++ and Fortran (bind(C)).
 *
 * Every call returns an int status: RFAAS_OK (0) or one of the RFAAS_ERR_* codes below, the
 * same numbers as rfaas::Errc in rfaas/client.hpp. rfaas_strerror() names a code;
 * rfaas_last_error() gives the detail of this thread's last failed setup call.
 * Invocation calls (rfaas_invoke, rfaas_submit, rfaas_wait, rfaas_test) do not allocate. */
#ifndef RFAAS_RFAAS_H
#define RFAAS_RFAAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* The library is built with hidden visibility; these are its exported interface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

enum {
  RFAAS_OK = 0,
  RFAAS_ERR_UNKNOWN_FUNCTION = 1,
  RFAAS_ERR_PAYLOAD_TOO_LARGE = 2,
  RFAAS_ERR_OUTPUT_TOO_LARGE = 3,
  RFAAS_ERR_EXECUTOR_LOST = 4,
  RFAAS_ERR_LEASE_EXPIRED = 5,
  RFAAS_ERR_LEASE_REVOKED = 6,
  RFAAS_ERR_BAD_TOKEN = 7,
  RFAAS_ERR_LIBRARY_LOAD_FAILED = 8,
  RFAAS_ERR_NO_CAPACITY = 9,
  RFAAS_ERR_TIMEOUT = 10,
  RFAAS_ERR_BUSY = 11,             /* the MPI layer only (rfaas_mpi.h): requests still pending */
  RFAAS_ERR_INVALID_ARGUMENT = 12,
  RFAAS_ERR_CONNECTION_FAILED = 13,
  RFAAS_ERR_PROTOCOL = 14,
  RFAAS_ERR_LEASE_IN_USE = 15,
  RFAAS_ERR_NOT_INITIALIZED = 16,  /* the MPI layer only: before rfaas_mpi_init */
  RFAAS_ERR_NO_SUCH_REGION = 17,
  RFAAS_ERR_REGION_OUT_OF_BOUNDS = 18,
  RFAAS_ERR_MEMORY_EXCEEDED = 19,
  RFAAS_ERR_QUEUE_FULL = 20,
  RFAAS_ERR_FUNCTION_FAILED = 21,
  RFAAS_ERR_NOT_AUTHENTICATED = 22,
  RFAAS_ERR_NOT_PERMITTED = 23,
};

typedef struct rfaas_lease rfaas_lease;       /* a granted lease: daemon address + token */
typedef struct rfaas_executor rfaas_executor; /* a deployed lease */

typedef struct rfaas_deploy_options {
  const char* library_path;   /* the function library (.so) */
  const char* functions;      /* comma-separated names; rfaas_function() gives their ids */
  int32_t workers;            /* leased cores to use (default 1) */
  int32_t slots;              /* invocations in flight per worker (default 4, at most 64) */
  uint64_t input_capacity;    /* payload bytes per invocation (default 64 KiB) */
  uint64_t output_capacity;   /* result bytes per invocation (default 64 KiB) */
  int64_t hot_timeout_us;     /* executor busy-polls this long, then blocks; -1 always hot */
  int64_t invocation_timeout_ms; /* default bound for rfaas_invoke / rfaas_wait (default 10 s) */
  int32_t queue_depth;        /* calls per worker waiting for a slot (default 256) */
  const char* dependencies;   /* comma-separated paths of libraries the function library links that
                                 the executor nodes lack: shipped and loaded before it, each after
                                 what it needs (default NULL: none; api.md) */
} rfaas_deploy_options;

typedef struct rfaas_lease_options {
  int32_t cores;           /* cores to lease (default 1) */
  uint64_t memory_bytes;   /* memory on the executor node (default 1 GiB) */
  int64_t duration_ms;     /* how long (default 10 min; renew to extend) */
  const char* avoid_nodes; /* comma-separated node names not to lease on (e.g. this rank's own), or NULL */
  int64_t timeout_ms;      /* bound on each broker request (default 10 s) */
} rfaas_lease_options;

typedef struct rfaas_invocation {
  uint32_t worker, call, generation; /* call: the call's entry on that worker */
} rfaas_invocation;

typedef struct rfaas_usage {
  uint64_t invocations, hot_polling_ns, compute_ns;
} rfaas_usage;

const char* rfaas_strerror(int code);
const char* rfaas_last_error(void);

void rfaas_deploy_options_init(rfaas_deploy_options* options);

/* Direct mode: a lease signed with the cluster secret, for the daemon at daemon_address
 * (host:port) on node node_name. */
int rfaas_lease_direct(const char* daemon_address, const char* node_name, const char* secret_file, int32_t cores,
                       int64_t duration_ms, rfaas_lease** lease);
/* Through the lease broker (what users do; no secret needed): broker_address is host:port, or
 * NULL for $RFAAS_BROKER. The request carries this user's MUNGE credential ($RFAAS_MUNGE_SOCKET
 * names munged's socket when it is not the default one). */
void rfaas_lease_options_init(rfaas_lease_options* options);
int rfaas_lease_broker(const char* broker_address, const rfaas_lease_options* options, rfaas_lease** lease);
/* Extends a broker lease by duration_ms from now; executor (may be NULL when not deployed) gets
 * the renewed token so that it keeps serving. */
int rfaas_lease_renew(rfaas_lease* lease, rfaas_executor* executor, int64_t duration_ms);
/* Gives a broker lease's cores back: after rfaas_release of its executor, and also when
 * rfaas_deploy failed (otherwise they stay leased until the lease expires). */
int rfaas_lease_release(rfaas_lease* lease);
uint64_t rfaas_lease_id(const rfaas_lease* lease);
int64_t rfaas_lease_expires_at_ms(const rfaas_lease* lease); /* Unix epoch ms */
const char* rfaas_lease_node(const rfaas_lease* lease);      /* the executor node's name */
/* Frees the handle only: release a broker lease first. */
void rfaas_lease_free(rfaas_lease* lease);

int rfaas_deploy(const rfaas_lease* lease, const rfaas_deploy_options* options, rfaas_executor** executor);
/* The id of a deployed function, or -1. */
int rfaas_function(const rfaas_executor* executor, const char* name);
int rfaas_workers(const rfaas_executor* executor);
int64_t rfaas_expires_at_ms(const rfaas_executor* executor); /* the lease's end, renewals included */
int rfaas_library_was_cached(const rfaas_executor* executor); /* 1: the daemon had the library */
uint64_t rfaas_region_size(const rfaas_executor* executor, uint32_t region); /* 0: no such region */

/* Registered memory travels without a copy; unregistered memory works through one copy. */
int rfaas_register(rfaas_executor* executor, void* data, size_t bytes);
int rfaas_deregister(rfaas_executor* executor, void* data);
/* Memory registered for the lease's lifetime (huge pages where they fit), freed with rfaas_free
 * or with the executor. */
int rfaas_alloc(rfaas_executor* executor, size_t bytes, void** data);
void rfaas_free(rfaas_executor* executor, void* data);

int rfaas_invoke(rfaas_executor* executor, int function, const void* in, size_t in_size, void* out,
                 size_t out_capacity, size_t* out_size);
int rfaas_submit(rfaas_executor* executor, int function, const void* in, size_t in_size, void* out,
                 size_t out_capacity, rfaas_invocation* handle);
/* timeout_us < 0: the deploy's invocation_timeout_ms. RFAAS_ERR_TIMEOUT leaves the invocation
 * pending: wait again, or rfaas_abandon it (its slot returns when the late result arrives). */
int rfaas_wait(rfaas_executor* executor, const rfaas_invocation* handle, size_t* out_size, int64_t timeout_us);
void rfaas_abandon(rfaas_executor* executor, const rfaas_invocation* handle);
/* One call of function on every worker with the same input; worker w's result lands in outs[w]
 * (out_capacity bytes each), its size in out_sizes[w]. Returns the first error of any worker. */
int rfaas_invoke_all(rfaas_executor* executor, int function, const void* in, size_t in_size, void* const* outs,
                     size_t out_capacity, size_t* out_sizes);
int rfaas_test(rfaas_executor* executor, const rfaas_invocation* handle, int* done);

/* Resident regions (rfaas/client.hpp has the contract): executor memory kept for the lease,
 * counted against its memory. rfaas_region_put / _get block until done; rfaas_submit_region_put and
 * rfaas_submit_region_get complete through rfaas_wait / rfaas_test like invocations. */
int rfaas_create_region(rfaas_executor* executor, uint64_t bytes, uint32_t* region);
int rfaas_region_put(rfaas_executor* executor, uint32_t region, uint64_t offset, const void* src, size_t bytes);
int rfaas_region_get(rfaas_executor* executor, uint32_t region, uint64_t offset, void* dst, size_t bytes);
int rfaas_submit_region_put(rfaas_executor* executor, uint32_t region, uint64_t offset, const void* src,
                            size_t bytes, rfaas_invocation* handle);
int rfaas_submit_region_get(rfaas_executor* executor, uint32_t region, uint64_t offset, void* dst, size_t bytes,
                            rfaas_invocation* handle);

/* Ends the lease; usage may be NULL. rfaas_executor_free releases too if needed. */
int rfaas_release(rfaas_executor* executor, rfaas_usage* usage);
void rfaas_executor_free(rfaas_executor* executor);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif

#endif /* RFAAS_RFAAS_H */
