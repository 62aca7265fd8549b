/* gpu_testutil: the host-side helpers shared by the GPU tests and benchmarks (test/gpu/):
 * host allocation (xmalloc, FALLOC), bf16 <-> fp32 on the host (f2bf rounds to nearest even,
 * NaN stays NaN), random normal arrays, device alloc / upload / download / poison wrappers
 * (CUDA_CHECK on every call; byte counts, or fp32 element counts for the *_f forms), bf16
 * tensors with an fp32 host copy (struct bft), the (H, ld) lse/delta views of the attention
 * tests, the CPU reference of one block attention case, the bound check behind every
 * "err / bound / ok|FAILED" line, CUDA-event timing with a median, and the buffers and
 * timing of the attention benchmarks.
 * Header-only (static inline): the Makefile links each GPU program from its own object,
 * testutil.o and the library, so there is no gpu_testutil.o. */
#ifndef RT_GPU_TESTUTIL_H
#define RT_GPU_TESTUTIL_H

#include "cpu_ops.h"
#include "cuda_attn.h"
#include "cuda_check.h"
#include "cuda_ops.h"
#include "rng.h"
#include "../testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

/* ---------- host memory, bf16 on the host ---------- */

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}
#define FALLOC(n) ((float *)xmalloc((size_t)(n) * sizeof(float)))

static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float bf2f(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* x[i] = scale * N(0, 1) of (key, i) */
static inline void randn(float *x, int64_t n, uint64_t key, float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = scale * (float)rng_normal(key, (uint64_t)i);
}

/* g -= init, elementwise in double (the increment of an accumulating output) */
static inline void sub_init(float *g, const float *init, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = (float)((double)g[i] - init[i]);
}

/* ---------- device memory ---------- */

static inline void *dmalloc(size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}
static inline void h2d(void *d, const void *h, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
}
static inline void d2h(void *h, const void *d, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}
/* All bits set: NaN as fp32 and bf16, -1 as an integer. */
static inline void poison(void *d, size_t bytes) { CUDA_CHECK(cudaMemset(d, 0xff, bytes)); }
static inline void sync_device(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

/* The same for fp32 arrays of n elements (an allocation holds at least one). */
static inline float *dalloc_f(int64_t n) { return dmalloc((size_t)(n ? n : 1) * sizeof(float)); }
static inline void h2d_f(float *d, const float *h, int64_t n) { h2d(d, h, (size_t)n * sizeof(float)); }
static inline void d2h_f(float *h, const float *d, int64_t n) { d2h(h, d, (size_t)n * sizeof(float)); }
static inline void poison_f(float *d, int64_t n) { poison(d, (size_t)n * sizeof(float)); }

static inline int is_poison(float x) { return fbits(x) == 0xffffffffu; }

static inline int all_written(const float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (is_poison(h[i])) return 0;
    return 1;
}

/* Device bf16 (n values) -> host fp32. */
static inline void d2h_bf(float *h, const rt_bf16 *d, int64_t n) {
    uint16_t *b = xmalloc((size_t)n * 2);
    d2h(b, d, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = bf2f(b[i]);
    free(b);
}

/* ---------- bf16 tensors ---------- */

/* A bf16 tensor: bits for the GPU, the same values as fp32 for the CPU, and a device copy at
 * an offset of `off` elements into its allocation (off = 1: a 2-byte aligned base). */
struct bft {
    int64_t n;
    uint16_t *bits;
    float *f;
    void *base;
    rt_bf16 *dev;
};

/* Values bf16(mean + scale * N(0, 1) of (key, i)); host only (bft_upload copies them). */
static inline void bft_fill(struct bft *t, uint64_t key, float mean, float scale) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < t->n; i++) {
        t->bits[i] = f2bf(mean + scale * (float)rng_normal(key, (uint64_t)i));
        t->f[i] = bf2f(t->bits[i]);
    }
}

static inline void bft_upload(struct bft *t) { h2d(t->dev, t->bits, (size_t)t->n * 2); }

static inline void bft_init(struct bft *t, int64_t n, uint64_t key, float mean, float scale, int off) {
    t->n = n;
    t->bits = xmalloc((size_t)n * 2);
    t->f = FALLOC(n);
    t->base = dmalloc((size_t)(n + off) * 2 + 16);
    t->dev = (rt_bf16 *)t->base + off;
    bft_fill(t, key, mean, scale);
    bft_upload(t);
}

/* The values x rounded to bf16 (host and device). */
static inline void bft_from(struct bft *t, const float *x, int64_t n) {
    t->n = n;
    t->bits = xmalloc((size_t)n * 2);
    t->f = FALLOC(n);
    t->base = dmalloc((size_t)n * 2 + 16);
    t->dev = (rt_bf16 *)t->base;
    for (int64_t i = 0; i < n; i++) {
        t->bits[i] = f2bf(x[i]);
        t->f[i] = bf2f(t->bits[i]);
    }
    bft_upload(t);
}

static inline void bft_free(struct bft *t) {
    free(t->bits);
    free(t->f);
    CUDA_CHECK(cudaFree(t->base));
}

/* ---------- errors and bounds ---------- */

/* max |a - b| / max(max |b|, floor) (tu_max_rel_err with a floor under the denominator) */
static inline double err_floor(const float *a, const float *b, int64_t n, double floor) {
    double maxref = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    return tu_max_rel_err(a, b, n) * (maxref > 1e-30 ? maxref : 1e-30) / (maxref > floor ? maxref : floor);
}

/* One bounded check (err <= bound), counted in tu_checks / tu_failures; returns ok. */
static inline int check_bound(double err, double bound) {
    tu_checks++;
    const int ok = err <= bound;
    if (!ok) tu_failures++;
    return ok;
}

/* ---------- attention: (H, ld) views, the CPU reference of a case ---------- */

/* (H, T) rows of a host array into rows [off, off+T) of a device (H, ld) view buffer, the
 * rest poisoned. */
static inline void put_view(float *dbuf, const float *h, int H, int T, int ld, int off) {
    poison_f(dbuf, (int64_t)H * ld);
    if (T == 0) return;
    CUDA_CHECK(cudaMemcpy2D(dbuf + off, (size_t)ld * sizeof(float), h, (size_t)T * sizeof(float),
                            (size_t)T * sizeof(float), (size_t)H, cudaMemcpyHostToDevice));
}

/* Rows [off, off+T) of a device (H, ld) view into a host (H, T) array; returns 1 when every
 * entry outside the view is still poison and every entry inside was written. */
static inline int get_view(float *h, const float *dbuf, int H, int T, int ld, int off) {
    float *all = FALLOC((int64_t)H * ld);
    d2h_f(all, dbuf, (int64_t)H * ld);
    int ok = 1;
    for (int r = 0; r < H; r++)
        for (int t = 0; t < ld; t++) {
            float x = all[(int64_t)r * ld + t];
            if (t >= off && t < off + T) {
                h[(int64_t)r * T + t - off] = x;
                if (is_poison(x)) ok = 0;
            } else if (!is_poison(x)) {
                ok = 0;
            }
        }
    free(all);
    return ok;
}

/* One block attention case's inputs and CPU reference: q (Tq, H, D) ~ N(0, qscale^2),
 * k, v (Tk, Hkv, D), dout (Tq, H, D) ~ N(0, 1), all bf16 (keys seed+1..4); the CPU's out,
 * lse, delta (H, Tq) and gradients; iq, ik, iv: random starting values for dq, dk, dv
 * (keys seed+5..7), to check that the backward accumulates. out16: out rounded to bf16, as
 * the model saves it; delta and the backward reference are computed from it. */
struct attn_ref {
    int64_t nq, nk, nr;
    struct bft q, k, v, dout, out16;
    float *out, *lse, *delta, *dq, *dk, *dv;
    float *iq, *ik, *iv;
};

/* Returns the CPU seconds of the reference. */
static inline double attn_ref_init(struct attn_ref *r, int Tq, int Tk, int H, int Hkv, int D, int causal,
                                   float qscale, uint64_t seed) {
    const int64_t nq = (int64_t)Tq * H * D, nk = (int64_t)Tk * Hkv * D, nr = (int64_t)H * Tq;
    r->nq = nq, r->nk = nk, r->nr = nr;
    bft_init(&r->q, nq, seed + 1, 0.0f, qscale, 0);
    bft_init(&r->k, nk, seed + 2, 0.0f, 1.0f, 0);
    bft_init(&r->v, nk, seed + 3, 0.0f, 1.0f, 0);
    bft_init(&r->dout, nq, seed + 4, 0.0f, 1.0f, 0);
    r->out = FALLOC(nq), r->lse = FALLOC(nr), r->delta = FALLOC(nr);
    r->dq = calloc((size_t)nq + 1, sizeof(float)), r->dk = calloc((size_t)nk + 1, sizeof(float)),
    r->dv = calloc((size_t)nk + 1, sizeof(float));
    double t0 = omp_get_wtime();
    cpu_attn_forward(r->out, r->lse, Tq, r->q.f, r->k.f, r->v.f, Tq, Tk, H, Hkv, D, causal);
    bft_from(&r->out16, r->out, nq);
    cpu_attn_delta(r->delta, Tq, r->dout.f, r->out16.f, Tq, H, D);
    cpu_attn_backward(r->dq, r->dk, r->dv, r->dout.f, r->q.f, r->k.f, r->v.f, r->lse, r->delta, Tq, Tq, Tk, H, Hkv,
                      D, causal);
    const double secs = omp_get_wtime() - t0;
    r->iq = FALLOC(nq), r->ik = FALLOC(nk), r->iv = FALLOC(nk);
    randn(r->iq, nq, seed + 5, 1.0f);
    randn(r->ik, nk, seed + 6, 1.0f);
    randn(r->iv, nk, seed + 7, 1.0f);
    return secs;
}

static inline void attn_ref_free(struct attn_ref *r) {
    free(r->out); free(r->lse); free(r->delta); free(r->dq); free(r->dk); free(r->dv);
    free(r->iq); free(r->ik); free(r->iv);
    bft_free(&r->q); bft_free(&r->k); bft_free(&r->v); bft_free(&r->dout); bft_free(&r->out16);
}

/* ---------- timing with CUDA events (stream 0) ---------- */

struct gpu_timer {
    cudaEvent_t e0, e1;
};

static inline void gpu_timer_init(struct gpu_timer *t) {
    CUDA_CHECK(cudaEventCreate(&t->e0));
    CUDA_CHECK(cudaEventCreate(&t->e1));
}
static inline void gpu_timer_start(struct gpu_timer *t) { CUDA_CHECK(cudaEventRecord(t->e0, 0)); }
/* Milliseconds since gpu_timer_start (waits for the stop event). */
static inline float gpu_timer_stop(struct gpu_timer *t) {
    float ms;
    CUDA_CHECK(cudaEventRecord(t->e1, 0));
    CUDA_CHECK(cudaEventSynchronize(t->e1));
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->e0, t->e1));
    return ms;
}
static inline void gpu_timer_free(struct gpu_timer *t) {
    CUDA_CHECK(cudaEventDestroy(t->e0));
    CUDA_CHECK(cudaEventDestroy(t->e1));
}

static inline int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The median of n times (sorts them). */
static inline float median_ms(float *t, int n) {
    qsort(t, (size_t)n, sizeof t[0], cmp_float);
    return t[n / 2];
}

/* ---------- attention benchmarks: shapes, buffers, timing ---------- */

#define BENCH_PATTERN (1 << 24) /* random bf16 values tiled over the inputs */

struct attn_shape {
    const char *name;
    int Tq, Tk, H, Hkv, D, causal;
};

struct attn_bufs {
    rt_bf16 *q, *k, *v, *dout, *out16; /* out16: the output as the model keeps it (bf16) */
    float *out, *lse, *delta, *dq, *dk, *dv;
};

/* BENCH_PATTERN random bf16 values (never zeros, in practice), on the device. */
static inline rt_bf16 *bench_pattern(void) {
    uint16_t *h = xmalloc((size_t)BENCH_PATTERN * 2);
    for (size_t i = 0; i < BENCH_PATTERN; i++) h[i] = f2bf((float)rng_normal(12345, i));
    rt_bf16 *d = dmalloc((size_t)BENCH_PATTERN * 2);
    h2d(d, h, (size_t)BENCH_PATTERN * 2);
    free(h);
    return d;
}

/* n values of the pattern, starting at a place that depends on `shift`. */
static inline void bench_fill(rt_bf16 *d, size_t n, size_t shift, const rt_bf16 *pattern) {
    for (size_t i = 0; i < n; i += BENCH_PATTERN / 2) {
        size_t m = n - i < BENCH_PATTERN / 2 ? n - i : BENCH_PATTERN / 2;
        size_t s = (shift * 7919 + i / 3) % (BENCH_PATTERN / 2);
        CUDA_CHECK(cudaMemcpy(d + i, pattern + s, m * 2, cudaMemcpyDeviceToDevice));
    }
}

/* The buffers of one shape (random q, k, v, dout; zero dq, dk, dv); 0 when they and `ws`
 * more bytes would leave less than 1 GiB free. */
static inline int attn_bufs_alloc(struct attn_bufs *b, const struct attn_shape *s, size_t ws,
                                  const rt_bf16 *pattern) {
    size_t nq = (size_t)s->Tq * s->H * s->D, nk = (size_t)s->Tk * s->Hkv * s->D;
    size_t need = nq * (2 + 2 + 2 + 4 + 4) + nk * (2 + 2 + 4 + 4) + (size_t)2 * s->H * s->Tq * 4 + ws;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (need + ((size_t)1 << 30) > free_b) return 0;
    b->q = dmalloc(nq * 2);
    b->dout = dmalloc(nq * 2);
    b->out16 = dmalloc(nq * 2);
    b->k = dmalloc(nk * 2);
    b->v = dmalloc(nk * 2);
    b->out = dmalloc(nq * 4);
    b->dq = dmalloc(nq * 4);
    b->dk = dmalloc(nk * 4);
    b->dv = dmalloc(nk * 4);
    b->lse = dmalloc((size_t)s->H * s->Tq * 4);
    b->delta = dmalloc((size_t)s->H * s->Tq * 4);
    bench_fill(b->q, nq, 1, pattern);
    bench_fill(b->k, nk, 2, pattern);
    bench_fill(b->v, nk, 3, pattern);
    bench_fill(b->dout, nq, 4, pattern);
    bench_fill(b->out16, nq, 5, pattern);
    CUDA_CHECK(cudaMemset(b->dq, 0, nq * 4));
    CUDA_CHECK(cudaMemset(b->dk, 0, nk * 4));
    CUDA_CHECK(cudaMemset(b->dv, 0, nk * 4));
    return 1;
}

static inline void attn_bufs_free(struct attn_bufs *b) {
    void *p[] = {b->q, b->k, b->v, b->dout, b->out16, b->out, b->lse, b->delta, b->dq, b->dk, b->dv};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) CUDA_CHECK(cudaFree(p[i]));
}

/* Median milliseconds of `reps` (at most 64) timed calls after `warm` untimed ones. */
static inline float attn_time_ms(void (*fn)(const struct attn_bufs *, const struct attn_shape *),
                                 const struct attn_bufs *b, const struct attn_shape *s, int warm, int reps) {
    struct gpu_timer tm;
    gpu_timer_init(&tm);
    for (int i = 0; i < warm; i++) fn(b, s);
    float t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        gpu_timer_start(&tm);
        fn(b, s);
        t[i] = gpu_timer_stop(&tm);
    }
    gpu_timer_free(&tm);
    return median_ms(t, reps);
}

/* The native kernels (cuda_attn_*) on the buffers of a shape: the forward (out, lse), and the
 * backward from out, lse and delta (dq, dk, dv +=). */
static inline void attn_native_fwd(const struct attn_bufs *b, const struct attn_shape *s) {
    cuda_attn_forward(b->out, b->lse, s->Tq, b->q, b->k, b->v, s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, 0);
}
static inline void attn_native_bwd(const struct attn_bufs *b, const struct attn_shape *s) {
    cuda_attn_backward(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->lse, b->delta, s->Tq, s->Tq, s->Tk, s->H,
                       s->Hkv, s->D, s->causal, 0);
}

/* Dense-product FLOPs of the forward: 4 Tq Tk H D, half when causal. */
static inline double attn_fwd_flops(const struct attn_shape *s) {
    return 4.0 * s->Tq * (double)s->Tk * s->H * s->D * (s->causal ? 0.5 : 1.0);
}

#endif
