/* cpu_matmul: the linear layer out (T, n_out) = x (T, n_in) @ w (n_out, n_in)^T and its
 * backward, as OpenBLAS sgemm calls (row-major; the backward GEMMs accumulate, beta = 1). */
#include "cpu_ops.h"

#include <cblas.h>
#include <stddef.h>

void cpu_matmul_forward(float *out, const float *x, const float *w, int T, int n_in, int n_out) {
    if (T <= 0 || n_out <= 0) return;
    if (n_in <= 0) { /* empty reduction: out = 0 */
        for (long i = 0; i < (long)T * n_out; i++) out[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_out, n_in, 1.0f, x, n_in, w, n_in,
                0.0f, out, n_out);
}

void cpu_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int T, int n_in, int n_out) {
    if (T <= 0 || n_in <= 0 || n_out <= 0) return;
    /* dx (T, n_in) += dy (T, n_out) @ w (n_out, n_in) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n_in, n_out, 1.0f, dy, n_out, w,
                    n_in, 1.0f, dx, n_in);
    /* dw (n_out, n_in) += dy^T (n_out, T) @ x (T, n_in) */
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, T, 1.0f, dy, n_out, x,
                    n_in, 1.0f, dw, n_in);
}
