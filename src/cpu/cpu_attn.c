/* cpu_attn: block attention with log-sum-exp (forward), delta = rowsum(dO * O), the block
 * backward given the final lse and delta of the rows, and the merge of two partial results.
 * q, out, dq (Tq, H, D); k, v, dk, dv (Tk, Hkv, D); lse, delta (H, ld) row stride ld >= Tq.
 * Query head h reads kv head h / (H / Hkv). scale = 1/sqrt(D).
 * Threads split rows, never a sum: the forward and dq work per query row (h, i); dk and dv
 * per key row (g, j), looping over the group's heads and the query rows in order (the
 * backward recomputes p twice rather than sharing dk/dv between threads). Rows go in tiles
 * of ATTN_TILE that share each loaded key (or query) row; a row's arithmetic is the same
 * in or out of a tile. Every sum has a fixed order, so results are bitwise the same
 * whatever the thread count. Memory: one (ATTN_TILE, Tk) row of scores per thread. */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_PAR_MIN 4096 /* (rows x keys x D) below which the loops stay serial */
#define ATTN_TILE 4       /* query (or key) rows sharing each key (or query) load */

/* Dot product with four independent partial sums (ILP), combined in a fixed order. */
static inline float attn_dot(const float *a, const float *b, int D) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int d = 0;
    for (; d + 4 <= D; d += 4) {
        s0 += a[d] * b[d];
        s1 += a[d + 1] * b[d + 1];
        s2 += a[d + 2] * b[d + 2];
        s3 += a[d + 3] * b[d + 3];
    }
    for (; d < D; d++) s0 += a[d] * b[d];
    return (s0 + s1) + (s2 + s3);
}

static void attn_check(const char *fn, int Tq, int Tk, int H, int Hkv, int causal) {
    if ((causal && Tq != Tk) || Hkv <= 0 || H % Hkv != 0) {
        fprintf(stderr, "%s: bad shape Tq=%d Tk=%d H=%d Hkv=%d causal=%d\n", fn, Tq, Tk, H, Hkv,
                causal);
        abort();
    }
}

static void *attn_alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "cpu_attn: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void cpu_attn_forward(float *out, float *lse, int ld, const float *q, const float *k,
                      const float *v, int Tq, int Tk, int H, int Hkv, int D, int causal) {
    attn_check("cpu_attn_forward", Tq, Tk, H, Hkv, causal);
    if (Tq <= 0) return;
    const int grp = H / Hkv;
    const float scale = (float)(1.0 / sqrt((double)D));
    const int tiles_h = (Tq + ATTN_TILE - 1) / ATTN_TILE;
    const int64_t tiles = (int64_t)H * tiles_h;
#pragma omp parallel if ((int64_t)H * Tq * Tk * D >= ATTN_PAR_MIN)
    {
        float *s = attn_alloc((size_t)ATTN_TILE * (Tk ? Tk : 1) * sizeof(float)); /* scores */
        float *acc = attn_alloc((size_t)ATTN_TILE * D * sizeof(float));
#pragma omp for schedule(dynamic, 2)
        for (int64_t r = 0; r < tiles; r++) {
            int h = (int)(r / tiles_h), i0 = (int)(r % tiles_h) * ATTN_TILE, g = h / grp;
            int nt = Tq - i0 < ATTN_TILE ? Tq - i0 : ATTN_TILE;
            const float *qi[ATTN_TILE];
            int n[ATTN_TILE], nmax = 0;
            float m[ATTN_TILE];
            double l[ATTN_TILE];
            for (int t = 0; t < nt; t++) {
                qi[t] = q + ((int64_t)(i0 + t) * H + h) * D;
                n[t] = causal ? i0 + t + 1 : Tk;
                nmax = n[t] > nmax ? n[t] : nmax;
                m[t] = -INFINITY;
                l[t] = 0.0;
            }
            for (int j = 0; j < nmax; j++) {
                const float *kj = k + ((int64_t)j * Hkv + g) * D;
                for (int t = 0; t < nt; t++) {
                    if (j >= n[t]) continue;
                    float sc = scale * attn_dot(qi[t], kj, D);
                    s[(int64_t)t * Tk + j] = sc;
                    if (sc > m[t]) m[t] = sc;
                }
            }
            for (int x = 0; x < nt * D; x++) acc[x] = 0.0f;
            for (int j = 0; j < nmax; j++) {
                const float *vj = v + ((int64_t)j * Hkv + g) * D;
                for (int t = 0; t < nt; t++) {
                    if (j >= n[t]) continue;
                    float p = expf(s[(int64_t)t * Tk + j] - m[t]), *a = acc + t * D;
                    l[t] += p;
#pragma omp simd
                    for (int d = 0; d < D; d++) a[d] += p * vj[d];
                }
            }
            for (int t = 0; t < nt; t++) {
                float *oi = out + ((int64_t)(i0 + t) * H + h) * D;
                if (n[t] == 0) { /* no keys (Tk == 0): empty softmax */
                    memset(oi, 0, (size_t)D * sizeof(float));
                    lse[(int64_t)h * ld + i0 + t] = -INFINITY;
                    continue;
                }
                for (int d = 0; d < D; d++) oi[d] = (float)(acc[t * D + d] / l[t]);
                lse[(int64_t)h * ld + i0 + t] = (float)(m[t] + log(l[t]));
            }
        }
        free(s);
        free(acc);
    }
}

void cpu_attn_delta(float *delta, int ld, const float *dout, const float *out, int T, int H,
                    int D) {
    const int64_t rows = (int64_t)H * T;
#pragma omp parallel for schedule(static) if (rows * D >= 32768)
    for (int64_t r = 0; r < rows; r++) {
        int h = (int)(r / T), t = (int)(r % T);
        const float *a = dout + ((int64_t)t * H + h) * D, *b = out + ((int64_t)t * H + h) * D;
        double s = 0.0;
        for (int d = 0; d < D; d++) s += (double)a[d] * b[d];
        delta[(int64_t)h * ld + t] = (float)s;
    }
}

void cpu_attn_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *lse, const float *delta, int ld,
                       int Tq, int Tk, int H, int Hkv, int D, int causal) {
    attn_check("cpu_attn_backward", Tq, Tk, H, Hkv, causal);
    if (Tq <= 0 || Tk <= 0) return;
    const int grp = H / Hkv;
    const float scale = (float)(1.0 / sqrt((double)D));
    const int par = (int64_t)H * Tq * Tk * D >= ATTN_PAR_MIN;

    /* dq_i += scale * sum_j ds_ij k_j, per query row (h, i), a tile of rows at a time. */
    const int qtiles_h = (Tq + ATTN_TILE - 1) / ATTN_TILE;
    const int64_t qtiles = (int64_t)H * qtiles_h;
#pragma omp parallel if (par)
    {
        float *acc = attn_alloc((size_t)ATTN_TILE * D * sizeof(float));
#pragma omp for schedule(dynamic, 2)
        for (int64_t r = 0; r < qtiles; r++) {
            int h = (int)(r / qtiles_h), i0 = (int)(r % qtiles_h) * ATTN_TILE, g = h / grp;
            int nt = Tq - i0 < ATTN_TILE ? Tq - i0 : ATTN_TILE;
            const float *qi[ATTN_TILE], *doi[ATTN_TILE];
            float lse_i[ATTN_TILE], del_i[ATTN_TILE];
            int n[ATTN_TILE], nmax = 0;
            for (int t = 0; t < nt; t++) {
                qi[t] = q + ((int64_t)(i0 + t) * H + h) * D;
                doi[t] = dout + ((int64_t)(i0 + t) * H + h) * D;
                lse_i[t] = lse[(int64_t)h * ld + i0 + t];
                del_i[t] = delta[(int64_t)h * ld + i0 + t];
                n[t] = causal ? i0 + t + 1 : Tk;
                nmax = n[t] > nmax ? n[t] : nmax;
            }
            for (int x = 0; x < nt * D; x++) acc[x] = 0.0f;
            for (int j = 0; j < nmax; j++) {
                const float *kj = k + ((int64_t)j * Hkv + g) * D, *vj = v + ((int64_t)j * Hkv + g) * D;
                for (int t = 0; t < nt; t++) {
                    if (j >= n[t]) continue;
                    float p = expf(scale * attn_dot(qi[t], kj, D) - lse_i[t]);
                    float ds = p * (attn_dot(doi[t], vj, D) - del_i[t]), *a = acc + t * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) a[d] += ds * kj[d];
                }
            }
            for (int t = 0; t < nt; t++) {
                float *dqi = dq + ((int64_t)(i0 + t) * H + h) * D;
                for (int d = 0; d < D; d++) dqi[d] += scale * acc[t * D + d];
            }
        }
        free(acc);
    }

    /* dk_j += scale * sum_{h in group, i} ds_ij q_i; dv_j += sum p_ij dout_i, per key row
     * (g, j), a tile of key rows at a time; each row sums over h, then i, in order. */
    const int ktiles_g = (Tk + ATTN_TILE - 1) / ATTN_TILE;
    const int64_t ktiles = (int64_t)Hkv * ktiles_g;
#pragma omp parallel if (par)
    {
        float *ak = attn_alloc((size_t)ATTN_TILE * D * sizeof(float));
        float *av = attn_alloc((size_t)ATTN_TILE * D * sizeof(float));
#pragma omp for schedule(dynamic, 2)
        for (int64_t r = 0; r < ktiles; r++) {
            int g = (int)(r / ktiles_g), j0 = (int)(r % ktiles_g) * ATTN_TILE;
            int nt = Tk - j0 < ATTN_TILE ? Tk - j0 : ATTN_TILE;
            const float *kj[ATTN_TILE], *vj[ATTN_TILE];
            for (int t = 0; t < nt; t++) {
                kj[t] = k + ((int64_t)(j0 + t) * Hkv + g) * D;
                vj[t] = v + ((int64_t)(j0 + t) * Hkv + g) * D;
            }
            for (int x = 0; x < nt * D; x++) ak[x] = av[x] = 0.0f;
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                for (int i = causal ? j0 : 0; i < Tq; i++) {
                    const float *qi = q + ((int64_t)i * H + h) * D;
                    const float *doi = dout + ((int64_t)i * H + h) * D;
                    float lse_i = lse[(int64_t)h * ld + i], del_i = delta[(int64_t)h * ld + i];
                    for (int t = 0; t < nt; t++) {
                        if (causal && i < j0 + t) continue;
                        float p = expf(scale * attn_dot(qi, kj[t], D) - lse_i);
                        float ds = p * (attn_dot(doi, vj[t], D) - del_i);
                        float *a = ak + t * D, *b = av + t * D;
#pragma omp simd
                        for (int d = 0; d < D; d++) {
                            a[d] += ds * qi[d];
                            b[d] += p * doi[d];
                        }
                    }
                }
            }
            for (int t = 0; t < nt; t++) {
                float *dkj = dk + ((int64_t)(j0 + t) * Hkv + g) * D;
                float *dvj = dv + ((int64_t)(j0 + t) * Hkv + g) * D;
                for (int d = 0; d < D; d++) {
                    dkj[d] += scale * ak[t * D + d];
                    dvj[d] += av[t * D + d];
                }
            }
        }
        free(ak);
        free(av);
    }
}

/* log(sigmoid(x)) without overflow or cancellation. */
static inline float log_sigmoid(float x) {
    return x >= 0.0f ? -log1pf(expf(-x)) : x - log1pf(expf(x));
}

static inline float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void cpu_attn_merge(float *out, float *lse, int ld, const float *out_b, const float *lse_b,
                    int ld_b, int Tq, int H, int D) {
    const int64_t rows = (int64_t)H * Tq;
#pragma omp parallel for schedule(static) if (rows * D >= 32768)
    for (int64_t r = 0; r < rows; r++) {
        int h = (int)(r / Tq), t = (int)(r % Tq);
        float a = lse[(int64_t)h * ld + t], b = lse_b[(int64_t)h * ld_b + t];
        float w = sigmoid(b - a); /* weight of the block's rows */
        float *o = out + ((int64_t)t * H + h) * D;
        const float *ob = out_b + ((int64_t)t * H + h) * D;
        for (int d = 0; d < D; d++) o[d] = o[d] - w * (o[d] - ob[d]);
        lse[(int64_t)h * ld + t] = a - log_sigmoid(a - b);
    }
}
