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
