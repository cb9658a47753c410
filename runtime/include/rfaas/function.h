/* Writing rfaas functions. Two ABIs run side by side in one library:
 *
 * The reference ABI (rFaaS): any exported function
 *     uint32_t name(void* in, uint32_t in_size, void* out);
 * returns the bytes it wrote to out. It is not told out's capacity and cannot report an error.
 *
 * The context ABI: a function defined with RFAAS_FUNCTION gets one rfaas_call:
 *
 *     #include <rfaas/function.h>
 *     RFAAS_FUNCTION(scale) {
 *       const double* x = call->in;
 *       if (call->in_size > call->out_capacity) return 1;        // an error status, not a result
 *       double* y = call->out;
 *       const double* factor = call->regions[0].data;             // a lease-resident region
 *       for (size_t i = 0; i < call->in_size / 8; ++i) y[i] = factor[0] * x[i];
 *       call->out_size = call->in_size;
 *       return 0;
 *     }
 *
 * RFAAS_FUNCTION also exports the symbol rfaas_abi_<name> (= RFAAS_FUNCTION_ABI): that is how
 * the executor tells, at deploy, which ABI a name uses. A nonzero return value reaches the
 * caller as RFAAS_ERR_FUNCTION_FAILED with that status (1 .. 2^23 - 1) in place of the result
 * size; out_size beyond out_capacity is RFAAS_ERR_OUTPUT_TOO_LARGE. */
#ifndef RFAAS_FUNCTION_H
#define RFAAS_FUNCTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFAAS_FUNCTION_ABI 2u

/* A lease-resident region as functions see it: created by the client (rfaas_create_region),
 * written by its puts, kept until the lease ends; every worker of the lease sees the same bytes. */
typedef struct rfaas_region_view {
  void* data;
  uint64_t size;
} rfaas_region_view;

typedef struct rfaas_call {
  const void* in;         /* the input, in_size bytes */
  uint64_t in_size;
  void* out;              /* the output, at most out_capacity bytes */
  uint64_t out_capacity;
  uint64_t out_size;      /* set by the function: bytes written to out (starts at 0) */
  const rfaas_region_view* regions; /* by region id, 0 .. region_count - 1 */
  uint32_t region_count;
  uint32_t worker;        /* this worker's index, 0 .. workers - 1 */
  uint32_t workers;
  uint32_t reserved;
} rfaas_call;

typedef int32_t (*rfaas_function_t)(rfaas_call* call);

#ifdef __cplusplus
}
#define RFAAS_LINKAGE_ extern "C"
#else
#define RFAAS_LINKAGE_ extern
#endif

#define RFAAS_FUNCTION(name)                                                             \
  RFAAS_LINKAGE_ __attribute__((visibility("default"))) const uint32_t rfaas_abi_##name; \
  const uint32_t rfaas_abi_##name = RFAAS_FUNCTION_ABI;                                  \
  RFAAS_LINKAGE_ __attribute__((visibility("default"))) int32_t name(rfaas_call* call)

#endif /* RFAAS_FUNCTION_H */
