/* vec: vector helpers of the CUDA backend over n values: fp32 -> bf16 (nearest even) and
 * bf16 -> fp32 conversions, y += x on bf16 (in fp32, rounded once), x *= a on fp32, and the
 * sum of squares of fp32 values in double (the twins of cpu_sumsq, cpu_scale, cpu_add).
 * Elementwise kernels: grid-stride loops over groups of 8 values (16-byte accesses when every
 * pointer is 16-byte aligned), then the tail one by one.
 * cuda_sumsq is deterministic: P = min(CUDA_SUMSQ_PARTS, groups / 256) blocks (a function of n
 * only) each sum a fixed set of groups of 8 values in a fixed order into scratch[P], in double;
 * one block then adds the P partial sums in a fixed tree. The order does not depend on the
 * pointer's alignment either (an unaligned group is read value by value, same order). */
#include "ops_common.cuh"

using namespace ops;

namespace {

template <bool V8>
__global__ void to_bf16_kernel(bf16 *dst, const float *src, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float f[8];
            load8(src + 8 * q, f);
            store8(dst + 8 * q, f);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) dst[i] = f2bf(src[i]);
}

template <bool V8>
__global__ void to_f32_kernel(float *dst, const bf16 *src, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float f[8];
            load8(src + 8 * q, f);
            store8(dst + 8 * q, f);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) dst[i] = bf2f(src[i]);
}

template <bool V8>
__global__ void add_bf16_kernel(bf16 *y, const bf16 *x, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float a[8], b[8];
            load8(y + 8 * q, a);
            load8(x + 8 * q, b);
#pragma unroll
            for (int j = 0; j < 8; j++) a[j] += b[j];
            store8(y + 8 * q, a);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) y[i] = f2bf(bf2f(y[i]) + bf2f(x[i]));
}

template <bool V8>
__global__ void scale_kernel(float *x, float a, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float f[8];
            load8(x + 8 * q, f);
#pragma unroll
            for (int j = 0; j < 8; j++) f[j] *= a;
            store8(x + 8 * q, f);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) x[i] *= a;
}

/* Block b of P: thread k sums groups q = b*256 + k, + P*256, ... of 8 values each. */
__global__ void sumsq_part_kernel(double *part, const float *x, int64_t n, bool v8) {
    __shared__ double sh[32];
    const int64_t ng = (n + 7) / 8;
    double acc = 0.0;
    for (int64_t q = gtid(); q < ng; q += gstride()) {
        if (v8 && 8 * q + 8 <= n) {
            float f[8];
            load8(x + 8 * q, f);
#pragma unroll
            for (int j = 0; j < 8; j++) acc += (double)f[j] * f[j];
        } else {
            for (int64_t i = 8 * q; i < 8 * q + 8 && i < n; i++) acc += (double)x[i] * x[i];
        }
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

__global__ void sumsq_final_kernel(double *out, const double *part, int P) {
    __shared__ double sh[32];
    double v = (int)threadIdx.x < P ? part[threadIdx.x] : 0.0;
    v = block_sum(v, sh);
    if (threadIdx.x == 0) *out = v;
}

void check_n(const char *fn, int64_t n) {
    if (n < 0) rt_fatal(__FILE__, __LINE__, "%s: bad size n=%lld", fn, (long long)n);
}

} // namespace

extern "C" void cuda_to_bf16(rt_bf16 *dst, const float *src, int64_t n, cudaStream_t s) {
    check_n("cuda_to_bf16", n);
    if (n == 0) return;
    const bool v8 = aligned16(dst) && aligned16(src);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) to_bf16_kernel<true><<<grid, kThreads, 0, s>>>((bf16 *)dst, src, n);
    else to_bf16_kernel<false><<<grid, kThreads, 0, s>>>((bf16 *)dst, src, n);
    CUDA_LAUNCH_CHECK("to_bf16_kernel");
}

extern "C" void cuda_to_f32(float *dst, const rt_bf16 *src, int64_t n, cudaStream_t s) {
    check_n("cuda_to_f32", n);
    if (n == 0) return;
    const bool v8 = aligned16(dst) && aligned16(src);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) to_f32_kernel<true><<<grid, kThreads, 0, s>>>(dst, (const bf16 *)src, n);
    else to_f32_kernel<false><<<grid, kThreads, 0, s>>>(dst, (const bf16 *)src, n);
    CUDA_LAUNCH_CHECK("to_f32_kernel");
}

extern "C" void cuda_add_bf16(rt_bf16 *y, const rt_bf16 *x, int64_t n, cudaStream_t s) {
    check_n("cuda_add_bf16", n);
    if (n == 0) return;
    const bool v8 = aligned16(y) && aligned16(x);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) add_bf16_kernel<true><<<grid, kThreads, 0, s>>>((bf16 *)y, (const bf16 *)x, n);
    else add_bf16_kernel<false><<<grid, kThreads, 0, s>>>((bf16 *)y, (const bf16 *)x, n);
    CUDA_LAUNCH_CHECK("add_bf16_kernel");
}

extern "C" void cuda_scale(float *x, float a, int64_t n, cudaStream_t s) {
    check_n("cuda_scale", n);
    if (n == 0) return;
    const bool v8 = aligned16(x);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) scale_kernel<true><<<grid, kThreads, 0, s>>>(x, a, n);
    else scale_kernel<false><<<grid, kThreads, 0, s>>>(x, a, n);
    CUDA_LAUNCH_CHECK("scale_kernel");
}

extern "C" void cuda_sumsq(double *out, const float *x, int64_t n, double *scratch,
                           cudaStream_t s) {
    check_n("cuda_sumsq", n);
    if (!scratch) rt_fatal(__FILE__, __LINE__, "cuda_sumsq: no scratch");
    const int64_t ng = (n + 7) / 8, need = (ng + kThreads - 1) / kThreads;
    const int P = (int)(need < 1 ? 1 : need < CUDA_SUMSQ_PARTS ? need : CUDA_SUMSQ_PARTS);
    sumsq_part_kernel<<<P, kThreads, 0, s>>>(scratch, x, n, aligned16(x));
    CUDA_LAUNCH_CHECK("sumsq_part_kernel");
    static_assert(CUDA_SUMSQ_PARTS <= 1024, "one block adds the parts");
    sumsq_final_kernel<<<1, CUDA_SUMSQ_PARTS, 0, s>>>(out, scratch, P);
    CUDA_LAUNCH_CHECK("sumsq_final_kernel");
}
