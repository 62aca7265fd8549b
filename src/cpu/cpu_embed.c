/* cpu_embed: token embedding lookup out (T, d) = wte (V, d)[tokens (T)] and its backward,
 * a scatter-add into dwte. The backward splits columns (not tokens) between threads, so
 * each dwte element is summed by one thread in token order: deterministic. */
#include "cpu_ops.h"

#include <stdint.h>
#include <string.h>

#define EMB_PAR_MIN 32768 /* elements below which the loops stay serial */
#define EMB_COLS 64       /* column block of the backward */

void cpu_embedding_forward(float *out, const int32_t *tokens, const float *wte, int T, int d) {
#pragma omp parallel for schedule(static) if ((int64_t)T * d >= EMB_PAR_MIN)
    for (int t = 0; t < T; t++)
        memcpy(out + (int64_t)t * d, wte + (int64_t)tokens[t] * d, (size_t)d * sizeof(float));
}

void cpu_embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int T, int d) {
    int nblk = (d + EMB_COLS - 1) / EMB_COLS;
#pragma omp parallel for schedule(static) if ((int64_t)T * d >= EMB_PAR_MIN)
    for (int b = 0; b < nblk; b++) {
        int i0 = b * EMB_COLS, i1 = i0 + EMB_COLS < d ? i0 + EMB_COLS : d;
        for (int t = 0; t < T; t++) {
            float *dst = dwte + (int64_t)tokens[t] * d;
            const float *src = dout + (int64_t)t * d;
            for (int i = i0; i < i1; i++) dst[i] += src[i];
        }
    }
}
