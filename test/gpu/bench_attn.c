/* bench_attn: speed of the CUDA block attention (cuda/cuda_attn.h); not a test. Times the
 * forward and the backward with CUDA events after a warm-up, median of the repetitions, and
 * prints TFLOP/s with FLOPs counted as the dense products (the convention of the
 * flash-attention papers): forward 4 Tq Tk H D (half of it when causal), backward 2.5x the
 * forward. Inputs are random bf16 (never zeros). Runs:
 *   the tile variants (RT_ATTN_FWD_VARIANT 0..4, RT_ATTN_BWD_VARIANT 0..4) at causal 16K;
 *   causal hd128 H = 32 at 8K, 32K, 128K (if it fits) with the default variants;
 *   the two non-causal zigzag ring blocks of a 32K shard (2C x C and C x 2C), MHA and GQA.
 * Usage: bench_attn [max_T]   (default 131072)
 *        bench_attn --once T      one causal hd128 H=32 forward + backward, no timing (for ncu) */
#include "cuda_attn.h"
#include "cuda_check.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN (1 << 24) /* random bf16 values tiled over the inputs */

static rt_bf16 *g_pattern; /* device, PATTERN values */

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void fill_random(rt_bf16 *d, size_t n, size_t shift) {
    for (size_t i = 0; i < n; i += PATTERN / 2) {
        size_t m = n - i < PATTERN / 2 ? n - i : PATTERN / 2;
        size_t s = (shift * 7919 + i / 3) % (PATTERN / 2);
        CUDA_CHECK(cudaMemcpy(d + i, g_pattern + s, m * 2, cudaMemcpyDeviceToDevice));
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

struct shape {
    const char *name;
    int Tq, Tk, H, Hkv, D, causal;
};

struct bufs {
    rt_bf16 *q, *k, *v, *dout;
    float *out, *lse, *delta, *dq, *dk, *dv;
};

static void *dmalloc(size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
}

static int bufs_alloc(struct bufs *b, const struct shape *s) {
    size_t nq = (size_t)s->Tq * s->H * s->D, nk = (size_t)s->Tk * s->Hkv * s->D;
    size_t need = nq * (2 + 2 + 4 + 4) + nk * (2 + 2 + 4 + 4) + (size_t)2 * s->H * s->Tq * 4;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (need + ((size_t)1 << 30) > free_b) return 0;
    b->q = dmalloc(nq * 2);
    b->dout = dmalloc(nq * 2);
    b->k = dmalloc(nk * 2);
    b->v = dmalloc(nk * 2);
    b->out = dmalloc(nq * 4);
    b->dq = dmalloc(nq * 4);
    b->dk = dmalloc(nk * 4);
    b->dv = dmalloc(nk * 4);
    b->lse = dmalloc((size_t)s->H * s->Tq * 4);
    b->delta = dmalloc((size_t)s->H * s->Tq * 4);
    fill_random(b->q, nq, 1);
    fill_random(b->k, nk, 2);
    fill_random(b->v, nk, 3);
    fill_random(b->dout, nq, 4);
    CUDA_CHECK(cudaMemset(b->dq, 0, nq * 4));
    CUDA_CHECK(cudaMemset(b->dk, 0, nk * 4));
    CUDA_CHECK(cudaMemset(b->dv, 0, nk * 4));
    return 1;
}

static void bufs_free(struct bufs *b) {
    void *p[] = {b->q, b->k, b->v, b->dout, b->out, b->lse, b->delta, b->dq, b->dk, b->dv};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) CUDA_CHECK(cudaFree(p[i]));
}

static void run_fwd(const struct bufs *b, const struct shape *s) {
    cuda_attn_forward(b->out, b->lse, s->Tq, b->q, b->k, b->v, s->Tq, s->Tk, s->H, s->Hkv, s->D,
                      s->causal, 0);
}

static void run_bwd(const struct bufs *b, const struct shape *s) {
    cuda_attn_backward(b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->lse, b->delta, s->Tq,
                       s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, 0);
}

/* Median milliseconds of `reps` timed calls after `warm` untimed ones. */
static float time_ms(void (*fn)(const struct bufs *, const struct shape *), const struct bufs *b,
                     const struct shape *s, int warm, int reps) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < warm; i++) fn(b, s);
    float t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        CUDA_CHECK(cudaEventRecord(e0, 0));
        fn(b, s);
        CUDA_CHECK(cudaEventRecord(e1, 0));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&t[i], e0, e1));
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    qsort(t, (size_t)reps, sizeof t[0], cmp_float);
    return t[reps / 2];
}

static double fwd_flops(const struct shape *s) {
    return 4.0 * s->Tq * (double)s->Tk * s->H * s->D * (s->causal ? 0.5 : 1.0);
}

/* Times forward and backward of one shape; variant < 0 leaves the environment alone. */
static void bench(const struct shape *s, int fvar, int bvar) {
    struct bufs b;
    if (!bufs_alloc(&b, s)) {
        printf("%-40s skipped: does not fit in GPU memory\n", s->name);
        return;
    }
    char tag[32] = "";
    if (fvar >= 0) {
        char v[8];
        snprintf(v, sizeof v, "%d", fvar);
        setenv("RT_ATTN_FWD_VARIANT", v, 1);
        snprintf(v, sizeof v, "%d", bvar);
        setenv("RT_ATTN_BWD_VARIANT", v, 1);
        snprintf(tag, sizeof tag, " [fwd v%d bwd v%d]", fvar, bvar);
    }
    double f = fwd_flops(s);
    int reps = f > 5e13 ? 3 : f > 5e12 ? 5 : 10, warm = f > 5e13 ? 1 : 2;
    float tf = time_ms(run_fwd, &b, s, warm, reps);
    run_fwd(&b, s); /* out, lse of this shape for the backward */
    cuda_attn_delta(b.delta, s->Tq, b.dout, b.out, s->Tq, s->H, s->D, 0);
    float tb = time_ms(run_bwd, &b, s, warm, reps);
    CUDA_CHECK(cudaDeviceSynchronize());
    printf("%-40s%s fwd %9.3f ms %6.1f TFLOP/s | bwd %9.3f ms %6.1f TFLOP/s | fwd+bwd %6.1f TFLOP/s\n",
           s->name, tag, tf, f / (tf * 1e9), tb, 2.5 * f / (tb * 1e9), 3.5 * f / ((tf + tb) * 1e9));
    fflush(stdout);
    unsetenv("RT_ATTN_FWD_VARIANT");
    unsetenv("RT_ATTN_BWD_VARIANT");
    bufs_free(&b);
}

int main(int argc, char **argv) {
    const int once = argc > 2 && strcmp(argv[1], "--once") == 0;
    const int max_T = once ? atoi(argv[2]) : argc > 1 ? atoi(argv[1]) : 131072;
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("bench_attn on %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);

    uint16_t *h = malloc((size_t)PATTERN * 2);
    if (!h) return 1;
    for (size_t i = 0; i < PATTERN; i++) h[i] = f2bf((float)rng_normal(12345, i));
    g_pattern = dmalloc((size_t)PATTERN * 2);
    CUDA_CHECK(cudaMemcpy(g_pattern, h, (size_t)PATTERN * 2, cudaMemcpyHostToDevice));
    free(h);

    if (once) {
        const struct shape s1 = {"once", max_T, max_T, 32, 32, 128, 1};
        struct bufs b;
        if (!bufs_alloc(&b, &s1)) return 1;
        run_fwd(&b, &s1);
        cuda_attn_delta(b.delta, s1.Tq, b.dout, b.out, s1.Tq, s1.H, s1.D, 0);
        run_bwd(&b, &s1);
        CUDA_CHECK(cudaDeviceSynchronize());
        bufs_free(&b);
        return 0;
    }
    printf("-- tile variants, causal hd128 H=32 T=16384\n");
    const struct shape sv = {"causal T=16384 H=32 D=128", 16384, 16384, 32, 32, 128, 1};
    for (int v = 0; v < 5; v++) bench(&sv, v, v);
    const struct shape sv64 = {"causal T=16384 H=32 D=64", 16384, 16384, 32, 32, 64, 1};
    for (int v = 0; v < 5; v++) bench(&sv64, v, v);

    printf("-- grid order at 32K (variant 4: query/key tiles fastest instead of heads)\n");
    const struct shape so[] = {
        {"causal T=32768 H=32 D=128", 32768, 32768, 32, 32, 128, 1},
        {"ring 2C x C  H=32 Hkv=8", 32768, 16384, 32, 8, 128, 0},
    };
    for (int i = 0; i < 2; i++) {
        bench(&so[i], 0, 0);
        bench(&so[i], 4, 4);
    }
    printf("-- causal hd128 H=32 (MHA), default variants\n");
    for (int T = 8192; T <= max_T; T *= 4) {
        char name[64];
        snprintf(name, sizeof name, "causal T=%d H=32 D=128", T);
        struct shape s = {name, T, T, 32, 32, 128, 1};
        bench(&s, -1, -1);
    }
    printf("-- zigzag ring blocks of a 32K shard (C = 16K), hd128, default variants\n");
    const struct shape ring[] = {
        {"ring 2C x C  H=32 Hkv=32", 32768, 16384, 32, 32, 128, 0},
        {"ring C x 2C  H=32 Hkv=32", 16384, 32768, 32, 32, 128, 0},
        {"ring 2C x C  H=32 Hkv=8", 32768, 16384, 32, 8, 128, 0},
        {"ring C x 2C  H=32 Hkv=8", 16384, 32768, 32, 8, 128, 0},
        {"causal 2C=32768 H=32 Hkv=8", 32768, 32768, 32, 8, 128, 1},
    };
    for (size_t i = 0; i < sizeof ring / sizeof ring[0]; i++) bench(&ring[i], -1, -1);
    CUDA_CHECK(cudaFree(g_pattern));
    return 0;
}
