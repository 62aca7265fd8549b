/* bench_cudnn_attn: speed of the cuDNN block attention (cuda/cudnn_attn.h) next to the native
 * kernels (cuda/cuda_attn.h), same shapes, same buffers; not a test. The structure of
 * bench_attn.c: CUDA events around each call after a warm-up, median of the repetitions, FLOPs
 * as the dense products (forward 4 Tq Tk H D, half when causal; backward 2.5x the forward).
 * The cuDNN times are those of the whole API call: besides cuDNN's kernels they hold the
 * wrapper's extra passes (backward: dq/dk/dv += the bf16 gradients cuDNN wrote; forward:
 * O bf16 -> fp32); the backward's extras are also timed alone (scratch buffers). The causal
 * shapes are also timed through the *_bf16 calls a ring of one rank makes (outputs written
 * by cuDNN in bf16, overwritten: no extra pass), column "direct".
 * Shapes (hd 128, H = 32): causal 8K, 32K, 128K (if it fits), the two non-causal zigzag ring
 * blocks of a 32K shard (2C x C, C x 2C; MHA and GQA Hkv = 8) and causal 32K GQA.
 * Usage: bench_cudnn_attn [max_T] [--no-native]   (default 131072) */
#include "cuda_attn.h"
#include "cudnn_attn.h"
#include "gpu_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rt_bf16 *g_pattern;
static struct cudnn_attn *g_ca;
static int g_native = 1;

static void cd_fwd(const struct attn_bufs *b, const struct attn_shape *s) {
    cudnn_attn_forward(g_ca, b->out, b->lse, s->Tq, b->q, b->k, b->v, s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, 0);
}
static void cd_bwd(const struct attn_bufs *b, const struct attn_shape *s) {
    cudnn_attn_backward(g_ca, b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out16, b->lse, b->delta, s->Tq,
                        s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, 0);
}

/* The direct calls: O into a bf16 scratch, dQ|dK|dV into g_d16 (both must succeed). */
static rt_bf16 *g_o16, *g_d16;
static void cd_fwd16(const struct attn_bufs *b, const struct attn_shape *s) {
    if (!cudnn_attn_forward_bf16(g_ca, g_o16, b->lse, s->Tq, b->q, b->k, b->v, s->Tq, s->Tk, s->H, s->Hkv, s->D,
                                 s->causal, 0))
        rt_fatal(__FILE__, __LINE__, "cudnn_attn_forward_bf16 declined: %s", cudnn_attn_last_path(g_ca));
}
static void cd_bwd16(const struct attn_bufs *b, const struct attn_shape *s) {
    size_t nq = (size_t)s->Tq * s->H * s->D, nk = (size_t)s->Tk * s->Hkv * s->D;
    if (!cudnn_attn_backward_bf16(g_ca, g_d16, g_d16 + nq, g_d16 + nq + nk, b->dout, b->q, b->k, b->v, b->out16,
                                  b->lse, s->Tq, s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, 0))
        rt_fatal(__FILE__, __LINE__, "cudnn_attn_backward_bf16 declined: %s", cudnn_attn_last_path(g_ca));
}

/* The wrapper's extra passes of a backward, alone (a scratch buffer of the same size). */
static rt_bf16 *g_x16;
static void extras(const struct attn_bufs *b, const struct attn_shape *s) {
    size_t nq = (size_t)s->Tq * s->H * s->D, nk = (size_t)s->Tk * s->Hkv * s->D;
    cuda_accum_bf16(b->dq, g_x16, (int64_t)nq, 0);
    cuda_accum_bf16(b->dk, g_x16, (int64_t)nk, 0);
    cuda_accum_bf16(b->dv, g_x16, (int64_t)nk, 0);
}

struct row {
    char name[48];
    double nf, nb, cf, cb; /* TFLOP/s: native fwd, bwd; cuDNN fwd, bwd */
    double nfb, cfb;       /* fwd+bwd */
    double df, db, dfb;    /* cuDNN direct (causal shapes): fwd, bwd, fwd+bwd */
};
static struct row g_rows[16];
static int g_nrows;

static void bench(const struct attn_shape *s) {
    size_t ws = cudnn_attn_prepare(g_ca, s->Tq, s->Tk, s->H, s->Hkv, s->D, s->causal, s->Tq, 0);
    struct attn_bufs b;
    if (!attn_bufs_alloc(&b, s, ws, g_pattern)) {
        printf("%-34s skipped: does not fit in GPU memory\n", s->name);
        return;
    }
    cudnn_attn_reserve(g_ca, ws);
    const double f = attn_fwd_flops(s);
    const int reps = f > 5e13 ? 3 : f > 5e12 ? 5 : 10, warm = f > 5e13 ? 1 : 2;
    struct row *r = &g_rows[g_nrows++];
    snprintf(r->name, sizeof r->name, "%s", s->name);
    float tnf = 0, tnb = 0;
    if (g_native) {
        tnf = attn_time_ms(attn_native_fwd, &b, s, warm, reps);
        attn_native_fwd(&b, s);
        cuda_to_bf16(b.out16, b.out, (int64_t)s->Tq * s->H * s->D, 0);
        cuda_attn_delta(b.delta, s->Tq, b.dout, b.out16, s->Tq, s->H, s->D, 0);
        tnb = attn_time_ms(attn_native_bwd, &b, s, warm, reps);
    }
    float tcf = attn_time_ms(cd_fwd, &b, s, warm, reps);
    char pf[320];
    snprintf(pf, sizeof pf, "%s", cudnn_attn_last_path(g_ca));
    cd_fwd(&b, s);
    cuda_to_bf16(b.out16, b.out, (int64_t)s->Tq * s->H * s->D, 0);
    cuda_attn_delta(b.delta, s->Tq, b.dout, b.out16, s->Tq, s->H, s->D, 0);
    float tcb = attn_time_ms(cd_bwd, &b, s, warm, reps);
    CUDA_CHECK(cudaDeviceSynchronize());
    size_t nq = (size_t)s->Tq * s->H * s->D, nk = (size_t)s->Tk * s->Hkv * s->D;
    float tdf = 0, tdb = 0;
    if (s->causal) {
        g_o16 = dmalloc(nq * 2);
        g_d16 = dmalloc((nq + 2 * nk) * 2);
        tdf = attn_time_ms(cd_fwd16, &b, s, warm, reps);
        tdb = attn_time_ms(cd_bwd16, &b, s, warm, reps);
        CUDA_CHECK(cudaFree(g_o16));
        CUDA_CHECK(cudaFree(g_d16));
    }
    g_x16 = dmalloc((nq > nk ? nq : nk) * 2);
    float tx = attn_time_ms(extras, &b, s, 1, 5);
    CUDA_CHECK(cudaFree(g_x16));
    r->nf = g_native ? f / (tnf * 1e9) : 0;
    r->nb = g_native ? 2.5 * f / (tnb * 1e9) : 0;
    r->nfb = g_native ? 3.5 * f / ((tnf + tnb) * 1e9) : 0;
    r->cf = f / (tcf * 1e9);
    r->cb = 2.5 * f / (tcb * 1e9);
    r->cfb = 3.5 * f / ((tcf + tcb) * 1e9);
    r->df = tdf > 0 ? f / (tdf * 1e9) : 0;
    r->db = tdb > 0 ? 2.5 * f / (tdb * 1e9) : 0;
    r->dfb = tdf > 0 ? 3.5 * f / ((tdf + tdb) * 1e9) : 0;
    printf("%-34s native fwd %8.2f ms %5.0f | bwd %8.2f ms %5.0f | f+b %5.0f TFLOP/s\n", s->name, tnf, r->nf, tnb,
           r->nb, r->nfb);
    printf("%-34s cudnn  fwd %8.2f ms %5.0f | bwd %8.2f ms %5.0f | f+b %5.0f TFLOP/s (extras %.2f ms, %.1f%% of bwd)\n",
           "", tcf, r->cf, tcb, r->cb, r->cfb, tx, 100.0 * tx / tcb);
    if (s->causal)
        printf("%-34s direct fwd %8.2f ms %5.0f | bwd %8.2f ms %5.0f | f+b %5.0f TFLOP/s (bf16 outputs, no extras)\n",
               "", tdf, r->df, tdb, r->db, r->dfb);
    printf("%-34s   %s\n%-34s   %s\n", "", pf, "", cudnn_attn_last_path(g_ca));
    fflush(stdout);
    attn_bufs_free(&b);
}

int main(int argc, char **argv) {
    int max_T = 131072;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-native") == 0) g_native = 0;
        else max_T = atoi(argv[i]);
    }
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("bench_cudnn_attn on %s (sm_%d%d, %d SMs), cuDNN %zu\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, cudnn_attn_version());
    g_ca = cudnn_attn_init(0);
    g_pattern = bench_pattern();

    for (int T = 8192; T <= max_T; T *= 4) {
        char name[64];
        snprintf(name, sizeof name, "causal T=%dK H=32", T / 1024);
        struct attn_shape s = {name, T, T, 32, 32, 128, 1};
        bench(&s);
    }
    const struct attn_shape ring[] = {
        {"ring 2C x C (32Kx16K) MHA", 32768, 16384, 32, 32, 128, 0},
        {"ring C x 2C (16Kx32K) MHA", 16384, 32768, 32, 32, 128, 0},
        {"ring 2C x C (32Kx16K) GQA 32/8", 32768, 16384, 32, 8, 128, 0},
        {"ring C x 2C (16Kx32K) GQA 32/8", 16384, 32768, 32, 8, 128, 0},
        {"causal T=32K GQA 32/8", 32768, 32768, 32, 8, 128, 1},
    };
    for (size_t i = 0; i < sizeof ring / sizeof ring[0]; i++)
        if (ring[i].Tq <= max_T && ring[i].Tk <= max_T) bench(&ring[i]);

    printf("\nTFLOP/s (hd 128, bf16)            |  native fwd   bwd  f+b |  cuDNN fwd   bwd  f+b | direct fwd   bwd  f+b\n");
    for (int i = 0; i < g_nrows; i++)
        printf("%-34s | %9.0f %5.0f %4.0f | %9.0f %5.0f %4.0f | %10.0f %5.0f %4.0f\n", g_rows[i].name, g_rows[i].nf,
               g_rows[i].nb, g_rows[i].nfb, g_rows[i].cf, g_rows[i].cb, g_rows[i].cfb, g_rows[i].df, g_rows[i].db,
               g_rows[i].dfb);
    CUDA_CHECK(cudaFree(g_pattern));
    cudnn_attn_free(g_ca);
    return 0;
}
