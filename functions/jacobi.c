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

/* jacobi_resident (context ABI): one sweep over a block of rows that stays on the executor, in
 * resident region `region`, laid out as u0 | u1 | f:
 *   u0, u1: (rows + 2) * cols doubles each (halo row, the block's rows, halo row); f: rows * cols
 *   input:  struct jacobi_resident_args { uint32 region, rows, cols, parity; }, then the two halo
 *           rows (above, below: cols doubles each) of the current grid u_parity
 *   output: [double: sum over the block of (new - old)^2] [the new first row] [the new last row]
 * The halos go into u_parity, the sweep into u_(1 - parity): the next call passes 1 - parity.
 * Status 1: bad input; 2: no such region or the region is too small; 3: output too small. */
#include "rfaas/function.h"

struct jacobi_resident_args {
  uint32_t region, rows, cols, parity;
};

RFAAS_FUNCTION(jacobi_resident) {
  struct jacobi_resident_args a;
  if (call->in_size < sizeof a) return 1;
  memcpy(&a, call->in, sizeof a);
  const uint64_t cols = a.cols, rows = a.rows, grid = (rows + 2) * cols;
  if (a.cols < 2 || a.rows < 1 || a.parity > 1 || call->in_size != sizeof a + 16 * cols) return 1;
  if (a.region >= call->region_count || call->regions[a.region].size < 8 * (2 * grid + rows * cols)) return 2;
  if (call->out_capacity < 8 * (1 + 2 * cols)) return 3;
  double* base = (double*)call->regions[a.region].data;
  double* u = base + a.parity * grid;
  double* next = base + (1 - a.parity) * grid;
  const double* f = base + 2 * grid;
  const double* halo = (const double*)((const char*)call->in + sizeof a);
  memcpy(u, halo, 8 * cols);
  memcpy(u + (rows + 1) * cols, halo + cols, 8 * cols);
  jacobi_rows(u, f, next + cols, a.rows, a.cols);
  double sum = 0;
  for (uint64_t i = cols; i < (rows + 1) * cols; ++i) {
    double d = next[i] - u[i];
    sum += d * d;
  }
  double* out = (double*)call->out;
  out[0] = sum;
  memcpy(out + 1, next + cols, 8 * cols);
  memcpy(out + 1 + cols, next + rows * cols, 8 * cols);
  call->out_size = 8 * (1 + 2 * cols);
  return 0;
}
