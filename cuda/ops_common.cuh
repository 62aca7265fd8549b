/* ops_common: the device helpers shared by the non-attention ops (norm.cu, rope.cu, mlp.cu,
 * embed.cu, xent.cu, adamw.cu, vec.cu, blas.cu): bf16 <-> fp32 conversion, 8-wide loads and
 * stores (16 bytes of bf16, 32 of fp32), alignment tests, the grid size of grid-stride
 * loops, and block-wide reductions. C++ only (included by .cu files). */
#ifndef RT_OPS_COMMON_CUH
#define RT_OPS_COMMON_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include "cuda_check.h"
#include "cuda_ops.h"

namespace ops {

typedef __nv_bfloat16 bf16;

constexpr int kThreads = 256; /* threads per block of the elementwise kernels */

__device__ __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 f2bf(float x) { return __float2bfloat16_rn(x); }

/* 8 consecutive values; the pointer must be 16-byte aligned. */
__device__ __forceinline__ void load8(const bf16 *p, float f[8]) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ void store8(bf16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

__device__ __forceinline__ void load8(const float *p, float f[8]) {
    float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

__device__ __forceinline__ void store8(float *p, const float f[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

__device__ __forceinline__ int64_t gtid() {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t gstride() { return (int64_t)gridDim.x * blockDim.x; }

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill
 * the device (32 blocks per multiprocessor at most), never more than the work needs. */
static inline unsigned grid_for(int64_t work, int threads) {
    int dev = 0, sms = 132;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    int64_t need = (work + threads - 1) / threads, cap = (int64_t)sms * 32;
    if (need < 1) need = 1;
    return (unsigned)(need < cap ? need : cap);
}

/* Sum over the warp (xor-shuffle tree, fixed order); every lane gets the result. */
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
 * The order is fixed (shuffle tree, then the warp sums in warp order): deterministic.
 * sh holds 32 values of T; the function synchronizes, so it can be called repeatedly. */
template <typename T>
__device__ __forceinline__ T block_sum(T v, T *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (T)0;
    return warp_sum(v);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The one GEMM of blas.cu, in cuBLAS's column-major terms: D (m, n) = op(A) op(B) + beta D,
 * op(X) = X^T when tX; A, B bf16 with leading dimensions lda, ldb; D fp32 (d_f32) or bf16
 * with leading dimension ldd; fp32 accumulation and scalars. Row-major callers swap the
 * operands (C^T = B^T A^T). */
void gemm(struct cuda_blas *b, bool ta, bool tb, int m, int n, int k, const bf16 *A, int lda,
          const bf16 *B, int ldb, float beta, void *D, bool d_f32, int ldd, cudaStream_t s);

} // namespace ops

#endif
