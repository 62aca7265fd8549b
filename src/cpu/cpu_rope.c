/* cpu_rope: rotary position embedding in place on x (T, nh, D), HF rotate-half layout
 * (pairs (i, i + D/2)), and its backward (the transpose: the rotation by the opposite angle).
 * Angles are pos (int64, global) * inv_freq (double, D/2) in double; cos and sin in double
 * per (token, pair), both multiplied by scale (the attention factor, as HF does), shared by
 * the token's heads. */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>

#define ROPE_PAR_MIN 16384 /* elements below which the loop stays serial */

/* Rotate every pair of x by angle sign * pos[t] * inv_freq[i] and scale it. */
static void rope_rotate(float *x, const int64_t *pos, const double *inv_freq, double scale, int T, int nh,
                        int D, double sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)T * nh * D >= ROPE_PAR_MIN)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double a = (double)pos[t] * inv_freq[i];
            double c = scale * cos(a), s = scale * sign * sin(a);
            for (int h = 0; h < nh; h++) {
                float *xh = x + ((int64_t)t * nh + h) * D;
                double x1 = xh[i], x2 = xh[i + half];
                xh[i] = (float)(x1 * c - x2 * s);
                xh[i + half] = (float)(x2 * c + x1 * s);
            }
        }
    }
}

void cpu_rope_forward(float *x, const int64_t *pos, const double *inv_freq, double scale, int T, int nh,
                      int D) {
    rope_rotate(x, pos, inv_freq, scale, T, nh, D, 1.0);
}

void cpu_rope_backward(float *dx, const int64_t *pos, const double *inv_freq, double scale, int T, int nh,
                       int D) {
    rope_rotate(dx, pos, inv_freq, scale, T, nh, D, -1.0);
}
