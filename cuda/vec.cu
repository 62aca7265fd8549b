/* vec: vector helpers of the CUDA backend over n values: fp32 -> bf16 (nearest even) and
 * bf16 -> fp32 conversions, y += x on bf16 (in fp32, rounded once), fp32 y += fp32 or bf16 x
 * (the cuDNN attention path's accumulation), x *= a on fp32, and the
 * sum of squares of fp32 values in double (the twins of cpu_sumsq, cpu_add).
 * Elementwise kernels: grid-stride loops over groups of 8 values (16-byte accesses when every
 * pointer is 16-byte aligned), then the tail one by one.
 * cuda_sumsq is deterministic: P = min(CUDA_SUMSQ_PARTS, groups / 256) blocks (a function of n
 * only) each sum a fixed set of groups of 8 values in a fixed order into scratch[P], in double;
 * one block then adds the P partial sums in a fixed tree. The order does not depend on the
 * pointer's alignment either (an unaligned group is read value by value, same order). */
#include "ops_common.cuh"

using namespace ops;

namespace {

/* The elementwise loop of every kernel here: with V8, groups of 8 values (op.group(i) for
 * i = 8q, 16-byte accesses), then the rest one by one (op.one(i)). */
template <bool V8, class Op>
__global__ void elementwise_kernel(Op op, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) op.group(8 * q);
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) op.one(i);
}

/* One value converted on a store: fp32 -> bf16 (nearest even), bf16 -> fp32. */
__device__ __forceinline__ void put(bf16 *p, float v) { *p = f2bf(v); }
__device__ __forceinline__ void put(float *p, bf16 v) { *p = bf2f(v); }

/* dst = src converted (fp32 -> bf16 or bf16 -> fp32). */
template <class D, class S>
struct Convert {
    D *dst;
    const S *src;
    __device__ __forceinline__ void group(int64_t i) const {
        float f[8];
        load8(src + i, f);
        store8(dst + i, f);
    }
    __device__ __forceinline__ void one(int64_t i) const { put(dst + i, src[i]); }
};

struct AddBf16 {
    bf16 *y;
    const bf16 *x;
    __device__ __forceinline__ void group(int64_t i) const {
        float a[8], b[8];
        load8(y + i, a);
        load8(x + i, b);
#pragma unroll
        for (int j = 0; j < 8; j++) a[j] += b[j];
        store8(y + i, a);
    }
    __device__ __forceinline__ void one(int64_t i) const { y[i] = f2bf(bf2f(y[i]) + bf2f(x[i])); }
};

/* fp32 y += x, x fp32 or bf16 (one add per element: bitwise deterministic). */
template <class S>
struct AccumF32 {
    float *y;
    const S *x;
    __device__ __forceinline__ void group(int64_t i) const {
        float a[8], b[8];
        load8(y + i, a);
        load8(x + i, b);
#pragma unroll
        for (int j = 0; j < 8; j++) a[j] += b[j];
        store8(y + i, a);
    }
    __device__ __forceinline__ void one(int64_t i) const {
        if constexpr (sizeof(S) == 2) y[i] += bf2f(x[i]);
        else y[i] += x[i];
    }
};


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

/* The launcher of an elementwise op: checks n, nothing for n = 0, the 8-wide kernel when
 * every pointer is 16-byte aligned. */
template <class Op>
void launch_elementwise(const char *fn, const char *kernel, Op op, bool v8, int64_t n, cudaStream_t s) {
    check_n(fn, n);
    if (n == 0) return;
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) elementwise_kernel<true><<<grid, kThreads, 0, s>>>(op, n);
    else elementwise_kernel<false><<<grid, kThreads, 0, s>>>(op, n);
    CUDA_LAUNCH_CHECK(kernel);
}

} // namespace

extern "C" void cuda_to_bf16(rt_bf16 *dst, const float *src, int64_t n, cudaStream_t s) {
    launch_elementwise("cuda_to_bf16", "to_bf16_kernel", Convert<bf16, float>{(bf16 *)dst, src},
                       aligned16(dst) && aligned16(src), n, s);
}

extern "C" void cuda_to_f32(float *dst, const rt_bf16 *src, int64_t n, cudaStream_t s) {
    launch_elementwise("cuda_to_f32", "to_f32_kernel", Convert<float, bf16>{dst, (const bf16 *)src},
                       aligned16(dst) && aligned16(src), n, s);
}

extern "C" void cuda_add_bf16(rt_bf16 *y, const rt_bf16 *x, int64_t n, cudaStream_t s) {
    launch_elementwise("cuda_add_bf16", "add_bf16_kernel", AddBf16{(bf16 *)y, (const bf16 *)x},
                       aligned16(y) && aligned16(x), n, s);
}

extern "C" void cuda_accum_f32(float *y, const float *x, int64_t n, cudaStream_t s) {
    launch_elementwise("cuda_accum_f32", "accum_f32_kernel", AccumF32<float>{y, x}, aligned16(y) && aligned16(x), n, s);
}

extern "C" void cuda_accum_bf16(float *y, const rt_bf16 *x, int64_t n, cudaStream_t s) {
    launch_elementwise("cuda_accum_bf16", "accum_bf16_kernel", AccumF32<bf16>{y, (const bf16 *)x},
                       aligned16(y) && aligned16(x), n, s);
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
