/* rfaas for MPI codes: each rank leases cores through the lease broker and offloads function
 * calls to them, blocking (rfaas_offload) or as MPI requests (rfaas_ioffload) that complete in
 * MPI_Wait / MPI_Waitall / MPI_Test together with the rank's own communication.
 *
 *   rfaas_mpi_config cfg;
 *   rfaas_mpi_config_init(&cfg);            // broker and library from RFAAS_BROKER, RFAAS_LIBRARY
 *   cfg.functions = "jacobi_sweep";
 *   rfaas_mpi_init(MPI_COMM_WORLD, &cfg);   // collective
 *   rfaas_mpi_register(unew, bytes);         // results land here without a copy
 *   rfaas_ioffload("jacobi_sweep", in, in_size, unew + off, cap, &reqs[2]);
 *   MPI_Waitall(3, reqs, statuses);          // halo exchange and offload together
 *   rfaas_mpi_finalize();                    // collective
 *
 * Every call returns RFAAS_OK or an RFAAS_ERR_* code of rfaas/rfaas.h; rfaas_strerror names
 * it. rfaas starts no thread of its own and makes its MPI calls from the rank's calls into it:
 * MPI_THREAD_SINGLE is enough (docs/mpi.md); at higher levels, one thread per rank at a time
 * makes the rfaas_mpi_* calls. */
#ifndef RFAAS_RFAAS_MPI_H
#define RFAAS_RFAAS_MPI_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rfaas/rfaas.h"

#ifdef __cplusplus
extern "C" {
#endif
/* The library is built with hidden visibility; these are its exported interface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct rfaas_mpi_config {
  const char* broker;       /* lease broker host:port; NULL: $RFAAS_BROKER */
  const char* library_path; /* function library (.so); NULL: $RFAAS_LIBRARY */
  const char* functions;    /* comma-separated function names to deploy */
  int32_t cores_per_rank;   /* leased cores (executor workers) per rank (default 1) */
  int64_t duration_ms;      /* lease duration (default 10 min) */
  int32_t slots;            /* offloads in flight per core (default 4, at most 64) */
  uint64_t input_capacity;  /* largest input of one offload in bytes (default 64 KiB) */
  uint64_t output_capacity; /* largest result of one offload in bytes (default 64 KiB) */
  int64_t hot_timeout_us;   /* executor busy-polls this long after a call, then blocks (default 10 ms) */
  int64_t invocation_timeout_ms; /* bound on one blocking offload (default 10 s) */
  int32_t avoid_own_node;   /* placement hint: lease on other nodes than this rank's (default 0) */
  const char* own_node;     /* this rank's node name for avoid_own_node; NULL: MPI_Get_processor_name */
  uint64_t region_bytes;    /* lease memory for resident regions, beyond the slots (default 0) */
  int32_t queue_depth;      /* offloads per core waiting for a slot beyond `slots` (default 256) */
  const char* dependencies; /* comma-separated paths of libraries the function library links that the
                               executor nodes lack, shipped with it (default NULL; api.md) */
} rfaas_mpi_config;

typedef struct rfaas_mpi_stats {
  uint64_t offloads;            /* offloads completed successfully */
  uint64_t failed_offloads;     /* offloads that ended with an error */
  uint64_t zero_copy_inputs;    /* inputs sent straight from registered memory */
  uint64_t copied_inputs;       /* inputs copied into rfaas's own registered slots first */
  uint64_t zero_copy_outputs;   /* results written straight into registered memory */
  uint64_t copied_outputs;      /* results copied out of rfaas's own slots */
  uint64_t registrations;       /* rfaas_mpi_register calls that registered new memory */
  uint64_t registration_hits;   /* rfaas_mpi_register calls already covered by a registration */
  uint64_t puts;                /* rfaas_put / rfaas_iput calls that completed successfully */
  uint64_t put_bytes;
  uint64_t gets;                /* rfaas_get calls that completed successfully */
} rfaas_mpi_stats;

void rfaas_mpi_config_init(rfaas_mpi_config* cfg);

/* Collective over comm: every rank leases cfg->cores_per_rank cores through the broker and
 * deploys the library. If any rank fails, every rank releases what it got and returns the
 * same (largest) error code; rfaas_mpi_last_error() has this rank's detail. */
int rfaas_mpi_init(MPI_Comm comm, const rfaas_mpi_config* cfg);
/* Collective over the init communicator: completes nothing pending (wait for your requests
 * first), releases the leases and registrations. */
int rfaas_mpi_finalize(void);
/* rfaas_mpi_finalize, and `usage` (may be NULL) gets what this rank's executor counted over its
 * lease, measured where the calls ran: the function calls, and their time on the leased cores
 * (compute_ns) beside the time the workers polled (hot_polling_ns). After rfaas_mpi_recover it
 * is the current lease's. Zeros where the executor could not tell (it was lost). */
int rfaas_mpi_finalize_usage(rfaas_usage* usage);
int rfaas_mpi_initialized(void);
/* Leased cores of this rank. */
int rfaas_mpi_cores(void);

/* Blocking: runs `function` on a leased core with in[0, in_size) and writes its result to out
 * (at most out_capacity bytes); *out_size (may be NULL) gets the result's length. */
int rfaas_offload(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                  size_t* out_size);
/* Non-blocking: *request is an MPI generalized request, completed by MPI's own progress (MPI_Wait,
 * MPI_Waitall, MPI_Test...) with no helper thread. In its status, MPI_TAG is the rfaas code
 * (RFAAS_OK or RFAAS_ERR_*; MPI_ERROR stays MPI_SUCCESS so that a failed offload never trips
 * the communicator's error handler) and MPI_Get_count(&status, MPI_BYTE, &n) the result
 * length. Offloads beyond the free slots wait in a bounded queue per leased core
 * (cfg.queue_depth) and are posted in order as slots free, inside MPI's progress;
 * RFAAS_ERR_QUEUE_FULL when that queue is full. The request must be completed (waited or
 * tested) before it is freed. Needs Open MPI (its progress hook). */
int rfaas_ioffload(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                   MPI_Request* request);

/* Resident regions: memory on this rank's leased executor that stays for the lease (counted
 * against cfg.region_bytes), written by puts straight into the executor's registered memory and
 * seen by every leased core's functions as call->regions[id] (rfaas/function.h). An offload
 * started after a put has completed (rfaas_put returned, or rfaas_iput's request completed in
 * MPI_Wait/Test) sees the put's bytes. rfaas_mpi_recover makes the regions again, zeroed: put
 * their contents again after it. */
int rfaas_mpi_create_region(uint64_t bytes, uint32_t* region);
int rfaas_put(uint32_t region, uint64_t offset, const void* src, size_t bytes);
/* A put as an MPI generalized request (MPI_TAG of its status: the rfaas code). src must stay
 * unchanged until it completes; at most cfg.input_capacity bytes when src is not registered. */
int rfaas_iput(uint32_t region, uint64_t offset, const void* src, size_t bytes, MPI_Request* request);
int rfaas_get(uint32_t region, uint64_t offset, void* dst, size_t bytes);

/* For Fortran through bind(C): the communicator and the request as integer handles (the mpi
 * module's INTEGER handles, or the MPI_VAL component of mpi_f08's types). `function` must end
 * with c_null_char. Otherwise as rfaas_mpi_init and rfaas_ioffload. */
int rfaas_mpi_init_fortran(MPI_Fint comm, const rfaas_mpi_config* cfg);
int rfaas_ioffload_fortran(const char* function, const void* in, size_t in_size, void* out, size_t out_capacity,
                           MPI_Fint* request);

/* Registers memory (an MPI buffer, a grid) with every leased core's connection: offload inputs
 * read from it and results written into it travel without a copy. Memory that was not
 * registered works too, through one copy. Registering a range inside an existing registration
 * is a cache hit and costs nothing. */
int rfaas_mpi_register(void* buf, size_t bytes);
int rfaas_mpi_deregister(void* buf);

/* Extends this rank's lease to now + duration_ms, through the broker and then the executor
 * daemon. Local (not collective). */
int rfaas_mpi_renew(int64_t duration_ms);
/* After an offload ended with RFAAS_ERR_LEASE_REVOKED, RFAAS_ERR_EXECUTOR_LOST or
 * RFAAS_ERR_LEASE_EXPIRED: releases what is left, leases again through the broker (on another
 * node than the lost one when one has room), redeploys, and registers this rank's registered
 * memory again. Local; no offload request of the rank may be pending. */
int rfaas_mpi_recover(void);

int rfaas_mpi_get_stats(rfaas_mpi_stats* stats);
/* What this rank's executor counted so far over its lease, measured on the leased cores (the
 * calls, their time there, the workers' polling time): a control round trip to the executor
 * daemon, for measuring, not for the offload path. Local. Two of them around some calls give
 * those calls' own time on the leased cores. */
int rfaas_mpi_usage(rfaas_usage* usage);
/* The detail of this thread's last failed rfaas_mpi_* setup call. */
const char* rfaas_mpi_last_error(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif

#endif /* RFAAS_RFAAS_MPI_H */
