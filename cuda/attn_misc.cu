/* attn_misc: the two memory-bound attention helpers on the GPU.
 * cuda_attn_delta: delta (H, ld) = rowsum(dout * out) per (row t, head h); dout (T, H, D) bf16,
 *   out (T, H, D) bf16 (the final output as the model keeps it).
 * cuda_attn_merge: merge a block result (out_b (Tq, H, D), lse_b (H, ld_b)) into the running
 *   (out (Tq, H, D), lse (H, ld)) in place, fp32, the formula and the special functions of
 *   cpu_attn_merge (expf, log1pf).
 * One warp per (row, head): lanes stride over D, so a row is read with consecutive addresses. */
#include "attn_mma.cuh"
#include "cuda_attn.h"

namespace attn {

constexpr int kRowWarps = 8; /* warps (rows) per block */

__global__ void __launch_bounds__(32 * kRowWarps)
    attn_delta_kernel(float *delta, int ld, const bf16 *dout, const bf16 *out, int T, int H, int D) {
    const long long w = (long long)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (w >= (long long)T * H) return;
    const int t = (int)(w / H), h = (int)(w % H);
    const size_t row = ((size_t)t * H + h) * D;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s = fmaf(__bfloat162float(dout[row + d]), __bfloat162float(out[row + d]), s);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) delta[(size_t)h * ld + t] = s;
}

__device__ __forceinline__ float log_sigmoid(float x) {
    return x >= 0.0f ? -log1pf(expf(-x)) : x - log1pf(expf(x));
}

__device__ __forceinline__ float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

__global__ void __launch_bounds__(32 * kRowWarps)
    attn_merge_kernel(float *out, float *lse, int ld, const float *out_b, const float *lse_b,
                      int ld_b, int Tq, int H, int D) {
    const long long w = (long long)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (w >= (long long)Tq * H) return;
    const int t = (int)(w / H), h = (int)(w % H);
    const float la = lse[(size_t)h * ld + t], lb = lse_b[(size_t)h * ld_b + t];
    const float wb = sigmoid(lb - la); /* weight of the block's rows */
    const size_t row = ((size_t)t * H + h) * D;
    for (int d = lane; d < D; d += 32) {
        const float o = out[row + d];
        out[row + d] = o - wb * (o - out_b[row + d]);
    }
    if (lane == 0) lse[(size_t)h * ld + t] = la - log_sigmoid(la - lb);
}

static unsigned row_blocks(int T, int H) {
    return (unsigned)(((long long)T * H + kRowWarps - 1) / kRowWarps);
}

} // namespace attn

using namespace attn;

extern "C" void cuda_attn_delta(float *delta, int ld, const rt_bf16 *dout, const rt_bf16 *out, int T,
                                int H, int D, cudaStream_t s) {
    if (T < 0 || H <= 0 || D <= 0 || ld < T)
        rt_fatal(__FILE__, __LINE__, "cuda_attn_delta: bad shape T=%d H=%d D=%d ld=%d", T, H, D, ld);
    if (T == 0) return;
    attn_delta_kernel<<<row_blocks(T, H), 32 * kRowWarps, 0, s>>>(
        delta, ld, reinterpret_cast<const bf16 *>(dout), reinterpret_cast<const bf16 *>(out), T, H, D);
    CUDA_LAUNCH_CHECK("attn_delta_kernel");
}

extern "C" void cuda_attn_merge(float *out, float *lse, int ld, const float *out_b,
                                const float *lse_b, int ld_b, int Tq, int H, int D,
                                cudaStream_t s) {
    if (Tq < 0 || H <= 0 || D <= 0 || ld < Tq || ld_b < Tq)
        rt_fatal(__FILE__, __LINE__, "cuda_attn_merge: bad shape Tq=%d H=%d D=%d ld=%d ld_b=%d", Tq,
                 H, D, ld, ld_b);
    if (Tq == 0) return;
    attn_merge_kernel<<<row_blocks(Tq, H), 32 * kRowWarps, 0, s>>>(out, lse, ld, out_b, lse_b, ld_b,
                                                                   Tq, H, D);
    CUDA_LAUNCH_CHECK("attn_merge_kernel");
}
