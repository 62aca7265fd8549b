/* cpu_norm: RMSNorm (HF LlamaRMSNorm) forward and backward over x (T, d), weight w (d),
 * saved rstd (T). Sums of squares and the backward's row and column sums are in double;
 * every sum has one owner thread and a fixed order, so results do not depend on threads. */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NORM_PAR_MIN 32768 /* elements below which the loops stay serial */
#define NORM_COLS 256      /* column block of the dw reduction */

void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int T, int d,
                         float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)T * d >= NORM_PAR_MIN)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * d;
        float *ot = out + (int64_t)t * d;
        double ss = 0.0;
        for (int i = 0; i < d; i++) ss += (double)xt[i] * xt[i];
        float r = (float)(1.0 / sqrt(ss / d + (double)eps));
        rstd[t] = r;
        for (int i = 0; i < d; i++) ot[i] = w[i] * (xt[i] * r); /* HF: w * (x * rstd) */
    }
}

/* y_i = w_i x_i r, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / d, so
 * dx_j = r w_j g_j - (r^3 / d) x_j sum_i g_i w_i x_i; dw_i = sum_t g_i x_i r. */
void cpu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int T, int d) {
    int par = (int64_t)T * d >= NORM_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * d, *gt = dout + (int64_t)t * d;
        float *dxt = dx + (int64_t)t * d;
        double r = rstd[t], dot = 0.0;
        for (int i = 0; i < d; i++) dot += (double)gt[i] * w[i] * xt[i];
        double c = r * r * r * dot / d;
        for (int i = 0; i < d; i++) dxt[i] += (float)(r * w[i] * gt[i] - c * xt[i]);
    }
    int nblk = (d + NORM_COLS - 1) / NORM_COLS;
#pragma omp parallel for schedule(static) if (par)
    for (int b = 0; b < nblk; b++) {
        double acc[NORM_COLS] = {0};
        int i0 = b * NORM_COLS, i1 = i0 + NORM_COLS < d ? i0 + NORM_COLS : d;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (int64_t)t * d, *gt = dout + (int64_t)t * d;
            double r = rstd[t];
            for (int i = i0; i < i1; i++) acc[i - i0] += (double)gt[i] * xt[i] * r;
        }
        for (int i = i0; i < i1; i++) dw[i] += (float)acc[i - i0];
    }
}
