/* The 5-point Jacobi update, shared by the "jacobi" function library and apps/jacobi so that an
 * offloaded sweep and a local one compute bit-identical results.
 *   u: rows + 2 rows of cols doubles (one halo row above and below); f: rows * cols (scaled by h^2);
 *   out: rows * cols. Interior columns are updated; the first and last column are copied. */
#ifndef RFAAS_JACOBI_KERNEL_H
#define RFAAS_JACOBI_KERNEL_H

#include <stdint.h>

static inline void jacobi_rows(const double* u, const double* f, double* out, uint32_t rows, uint32_t cols) {
  for (uint32_t i = 0; i < rows; ++i) {
    const double* up = u + (uint64_t)i * cols;
    const double* mid = up + cols;
    const double* down = mid + cols;
    const double* fi = f + (uint64_t)i * cols;
    double* o = out + (uint64_t)i * cols;
    o[0] = mid[0];
    for (uint32_t j = 1; j + 1 < cols; ++j) o[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1] + fi[j]);
    o[cols - 1] = mid[cols - 1];
  }
}

#endif /* RFAAS_JACOBI_KERNEL_H */
