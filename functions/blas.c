/* Function library "blas": dense linear algebra with OpenBLAS.
 *
 * dgemm_block: C_block = alpha * A_block * B + beta * C_block, row-major doubles.
 *   input:  struct dgemm_args { uint32 m, n, k; uint32 pad; double alpha, beta; }
 *           then A (m*k), B (k*n), C (m*n)
 *   output: C' (m*n doubles) */
#include <cblas.h>
#include <stdint.h>
#include <string.h>

struct dgemm_args {
  uint32_t m, n, k, pad;
  double alpha, beta;
};

uint32_t dgemm_block(void* in, uint32_t in_size, void* out) {
  struct dgemm_args a;
  if (in_size < sizeof a) return 0;
  memcpy(&a, in, sizeof a);
  uint64_t need = sizeof a + 8ull * ((uint64_t)a.m * a.k + (uint64_t)a.k * a.n + (uint64_t)a.m * a.n);
  if (need != in_size) return 0;
  const double* A = (const double*)((const char*)in + sizeof a);
  const double* B = A + (uint64_t)a.m * a.k;
  const double* C = B + (uint64_t)a.k * a.n;
  double* R = (double*)out;
  memcpy(R, C, 8ull * a.m * a.n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)a.m, (int)a.n, (int)a.k, a.alpha, A, (int)a.k, B,
              (int)a.n, a.beta, R, (int)a.n);
  return (uint32_t)(8ull * a.m * a.n);
}

/* dgemm_resident (context ABI): C rows = A rows * B, with B resident on the executor (put once
 * per lease into region `region`, k x n row-major doubles).
 *   input:  struct dgemm_resident_args { uint32 region, m, n, k; } then A (m x k doubles)
 *   output: C (m x n doubles)
 * Status 1: bad input; 2: no such region or too small for B; 3: output too small. */
#include "rfaas/function.h"

struct dgemm_resident_args {
  uint32_t region, m, n, k;
};

RFAAS_FUNCTION(dgemm_resident) {
  struct dgemm_resident_args a;
  if (call->in_size < sizeof a) return 1;
  memcpy(&a, call->in, sizeof a);
  if (call->in_size != sizeof a + 8ull * a.m * a.k) return 1;
  if (a.region >= call->region_count || call->regions[a.region].size < 8ull * a.k * a.n) return 2;
  if (call->out_capacity < 8ull * a.m * a.n) return 3;
  const double* A = (const double*)((const char*)call->in + sizeof a);
  const double* B = (const double*)call->regions[a.region].data;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)a.m, (int)a.n, (int)a.k, 1.0, A, (int)a.k, B, (int)a.n,
              0.0, (double*)call->out, (int)a.n);
  call->out_size = 8ull * a.m * a.n;
  return 0;
}
