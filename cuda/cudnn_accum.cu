/* cudnn_accum: the accumulation kernels of the cuDNN attention path (cudnn_attn.c). cuDNN's
 * backward overwrites dQ, dK, dV (written to a workspace, fp32 or bf16); ringtrain's contract
 * accumulates them into fp32 buffers: dst (n) fp32 += src (n) fp32 or bf16, contiguous.
 * Grid-stride loops over groups of 8 values (16-byte accesses when both pointers are 16-byte
 * aligned), then the tail one by one. Bitwise deterministic (one add per element). */
#include "ops_common.cuh"
#include "cudnn_attn.h"

using namespace ops;

namespace {

template <bool V8, typename S>
__global__ void accum_kernel(float *dst, const S *src, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float a[8], b[8];
            load8(dst + 8 * q, a);
            load8(src + 8 * q, b);
#pragma unroll
            for (int j = 0; j < 8; j++) a[j] += b[j];
            store8(dst + 8 * q, a);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) {
        float b;
        if constexpr (sizeof(S) == 2) b = bf2f(src[i]);
        else b = src[i];
        dst[i] += b;
    }
}

template <typename S>
void accum(float *dst, const S *src, int64_t n, cudaStream_t s, const char *fn) {
    if (n < 0) rt_fatal(__FILE__, __LINE__, "%s: bad size n=%lld", fn, (long long)n);
    if (n == 0) return;
    const bool v8 = aligned16(dst) && aligned16(src);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) accum_kernel<true, S><<<grid, kThreads, 0, s>>>(dst, src, n);
    else accum_kernel<false, S><<<grid, kThreads, 0, s>>>(dst, src, n);
    CUDA_LAUNCH_CHECK(fn);
}

} // namespace

extern "C" void cudnn_accum_f32(float *dst, const float *src, int64_t n, cudaStream_t s) {
    accum(dst, src, n, s, "cudnn_accum_f32");
}

extern "C" void cudnn_accum_bf16(float *dst, const rt_bf16 *src, int64_t n, cudaStream_t s) {
    accum(dst, (const bf16 *)src, n, s, "cudnn_accum_bf16");
}
