/* Function library "jacobi": one sweep of the 2-D Jacobi iteration for the 5-point Laplacian
 * over a block of rows, with one halo row above and below.
 *   input:  struct jacobi_args { uint32 rows, cols; } then (rows + 2) * cols doubles
 *           (halo row, the block's rows, halo row); then rows * cols doubles of right-hand side f,
 *           scaled by h^2
 *   output: rows * cols doubles: u'[i][j] = (u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1] + f[i][j]) / 4
 *           for interior columns; the first and last column (boundary) are copied. */
#include <stdint.h>
#include <string.h>

#include "jacobi_kernel.h"

struct jacobi_args {
  uint32_t rows, cols;
};

uint32_t jacobi_sweep(void* in, uint32_t in_size, void* out) {
  struct jacobi_args a;
  if (in_size < sizeof a) return 0;
  memcpy(&a, in, sizeof a);
  uint64_t cells = (uint64_t)(a.rows + 2) * a.cols + (uint64_t)a.rows * a.cols;
  if (a.cols < 2 || sizeof a + 8 * cells != in_size) return 0;
  const double* u = (const double*)((const char*)in + sizeof a);
  const double* f = u + (uint64_t)(a.rows + 2) * a.cols;
  jacobi_rows(u, f, (double*)out, a.rows, a.cols);
  return (uint32_t)(8ull * a.rows * a.cols);
}
