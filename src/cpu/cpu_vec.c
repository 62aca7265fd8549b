/* cpu_vec: small vector helpers over n fp32 values: sum of squares (in double), add.
 * The sum of squares adds fixed blocks of VEC_BLOCK values, then the block sums in block
 * order, so it is bitwise the same whatever the thread count. */
#include "cpu_ops.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define VEC_PAR_MIN 32768  /* values below which the loops stay serial */
#define VEC_BLOCK   16384  /* values per partial sum of cpu_sumsq */

double cpu_sumsq(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    int64_t nb = (n + VEC_BLOCK - 1) / VEC_BLOCK;
    double one, *part = nb == 1 ? &one : malloc((size_t)nb * sizeof(double));
    if (!part) {
        fprintf(stderr, "cpu_sumsq: out of memory\n");
        abort();
    }
#pragma omp parallel for schedule(static) if (n >= VEC_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * VEC_BLOCK, i1 = i0 + VEC_BLOCK < n ? i0 + VEC_BLOCK : n;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    if (part != &one) free(part);
    return s;
}

void cpu_add(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= VEC_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
