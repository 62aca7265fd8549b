/* cpu_xent: lm_head + cross-entropy, fused and chunked over tokens so no (T, V) logits
 * buffer exists: per chunk of c tokens, logits (c, V) = x_chunk (c, d) @ w (V, d)^T by sgemm
 * into scratch (c, V); per row max and logsumexp in double; when training the scratch row
 * becomes dlogits in place and two sgemm calls accumulate dx (T, d) and dw (V, d). On request
 * each token's loss and the argmax of its logits come out too (evaluation, passkey).
 * Rows are split between threads; the loss sum runs in row order: deterministic. */
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define XENT_PAR_MIN 65536 /* chunk elements below which the row loop stays serial */

double cpu_xent_forward_backward(float *dx, float *dw, double *tok_loss, int32_t *tok_pred, const float *x,
                                 const float *w, const int32_t *labels, int T, int d, int V, float grad_scale,
                                 int chunk, float *scratch) {
    if (T <= 0) return 0.0;
    if (chunk <= 0 || chunk > T) chunk = T;
    double *row_loss = malloc((size_t)chunk * sizeof(double));
    if (!row_loss) {
        fprintf(stderr, "cpu_xent: out of memory\n");
        abort();
    }
    double total = 0.0;
    for (int c0 = 0; c0 < T; c0 += chunk) {
        int n = T - c0 < chunk ? T - c0 : chunk;
        const float *xc = x + (int64_t)c0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, d, 1.0f, xc, d, w, d, 0.0f,
                    scratch, V);
#pragma omp parallel for schedule(static) if ((int64_t)n * V >= XENT_PAR_MIN)
        for (int t = 0; t < n; t++) {
            float *lg = scratch + (int64_t)t * V;
            float m = -INFINITY;
            int arg = 0;
            for (int j = 0; j < V; j++)
                if (lg[j] > m) m = lg[j], arg = j; /* the first of equal maxima */
            if (tok_pred) tok_pred[c0 + t] = arg;
            double s = 0.0;
            for (int j = 0; j < V; j++) s += exp((double)lg[j] - m);
            double lse = m + log(s);
            int y = labels[c0 + t];
            if (y < 0) { /* ignored token: no loss, no gradient */
                row_loss[t] = 0.0;
                if (dx)
                    for (int j = 0; j < V; j++) lg[j] = 0.0f;
                continue;
            }
            row_loss[t] = lse - lg[y];
            if (dx) { /* dlogits = (softmax - onehot) * grad_scale, in place */
                for (int j = 0; j < V; j++) lg[j] = (float)exp((double)lg[j] - lse) * grad_scale;
                lg[y] -= grad_scale;
            }
        }
        for (int t = 0; t < n; t++) total += row_loss[t];
        if (tok_loss)
            for (int t = 0; t < n; t++) tok_loss[c0 + t] = row_loss[t];
        if (dx) {
            /* dx_chunk (n, d) += dlogits (n, V) @ w (V, d) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, V, 1.0f, scratch, V, w, d,
                        1.0f, dx + (int64_t)c0 * d, d);
            /* dw (V, d) += dlogits^T (V, n) @ x_chunk (n, d) */
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, d, n, 1.0f, scratch, V, xc,
                            d, 1.0f, dw, d);
        }
    }
    free(row_loss);
    return total;
}
