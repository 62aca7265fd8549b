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
#include "gpu_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rt_bf16 *g_pattern; /* device, BENCH_PATTERN random bf16 values */

/* Times forward and backward of one shape; variant < 0 leaves the environment alone. */
static void bench(const struct attn_shape *s, int fvar, int bvar) {
    struct attn_bufs b;
    if (!attn_bufs_alloc(&b, s, 0, g_pattern)) {
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
    double f = attn_fwd_flops(s);
    int reps = f > 5e13 ? 3 : f > 5e12 ? 5 : 10, warm = f > 5e13 ? 1 : 2;
    float tf = attn_time_ms(attn_native_fwd, &b, s, warm, reps);
    attn_native_fwd(&b, s); /* out, lse of this shape for the backward */
    cuda_to_bf16(b.out16, b.out, (int64_t)s->Tq * s->H * s->D, 0);
    cuda_attn_delta(b.delta, s->Tq, b.dout, b.out16, s->Tq, s->H, s->D, 0);
    float tb = attn_time_ms(attn_native_bwd, &b, s, warm, reps);
    CUDA_CHECK(cudaDeviceSynchronize());
    printf("%-40s%s fwd %9.3f ms %6.1f TFLOP/s | bwd %9.3f ms %6.1f TFLOP/s | fwd+bwd %6.1f TFLOP/s\n",
           s->name, tag, tf, f / (tf * 1e9), tb, 2.5 * f / (tb * 1e9), 3.5 * f / ((tf + tb) * 1e9));
    fflush(stdout);
    unsetenv("RT_ATTN_FWD_VARIANT");
    unsetenv("RT_ATTN_BWD_VARIANT");
    attn_bufs_free(&b);
}

int main(int argc, char **argv) {
    const int once = argc > 2 && strcmp(argv[1], "--once") == 0;
    const int max_T = once ? atoi(argv[2]) : argc > 1 ? atoi(argv[1]) : 131072;
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("bench_attn on %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);

    g_pattern = bench_pattern();

    if (once) {
        const struct attn_shape s1 = {"once", max_T, max_T, 32, 32, 128, 1};
        struct attn_bufs b;
        if (!attn_bufs_alloc(&b, &s1, 0, g_pattern)) return 1;
        attn_native_fwd(&b, &s1);
        cuda_to_bf16(b.out16, b.out, (int64_t)s1.Tq * s1.H * s1.D, 0);
        cuda_attn_delta(b.delta, s1.Tq, b.dout, b.out16, s1.Tq, s1.H, s1.D, 0);
        attn_native_bwd(&b, &s1);
        CUDA_CHECK(cudaDeviceSynchronize());
        attn_bufs_free(&b);
        return 0;
    }
    printf("-- tile variants, causal hd128 H=32 T=16384\n");
    const struct attn_shape sv = {"causal T=16384 H=32 D=128", 16384, 16384, 32, 32, 128, 1};
    for (int v = 0; v < 5; v++) bench(&sv, v, v);
    const struct attn_shape sv64 = {"causal T=16384 H=32 D=64", 16384, 16384, 32, 32, 64, 1};
    for (int v = 0; v < 5; v++) bench(&sv64, v, v);

    printf("-- grid order at 32K (variant 4: query/key tiles fastest instead of heads)\n");
    const struct attn_shape so[] = {
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
        struct attn_shape s = {name, T, T, 32, 32, 128, 1};
        bench(&s, -1, -1);
    }
    printf("-- zigzag ring blocks of a 32K shard (C = 16K), hd128, default variants\n");
    const struct attn_shape ring[] = {
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
