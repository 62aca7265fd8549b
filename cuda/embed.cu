/* embed: the token embedding on the GPU, the twin of cpu_embed.c. Forward: out (T, d) bf16 =
 * wte (V, d) bf16 [tokens (T) int32], a row gather (16-byte copies when d % 8 == 0 and the
 * bases are 16-byte aligned). Backward: dwte (V, d) fp32 += the rows of dout (T, d) bf16,
 * scattered with fp32 atomicAdd (one thread per 8 or 1 values of a row): the rows of a
 * token that occurs several times are summed in an unspecified order, so the last bits of
 * those dwte rows may differ between runs (the CPU sums them in token order). */
#include "ops_common.cuh"

using namespace ops;

namespace {

template <bool V8>
__global__ void embed_fwd_kernel(bf16 *out, const int32_t *tokens, const bf16 *wte, int T, int d) {
    const int per_row = V8 ? d / 8 : d;
    const int64_t n = (int64_t)T * per_row;
    for (int64_t k = gtid(); k < n; k += gstride()) {
        const int64_t t = k / per_row;
        const int64_t c = (k - t * per_row) * (V8 ? 8 : 1);
        const bf16 *src = wte + (int64_t)tokens[t] * d + c;
        bf16 *dst = out + t * d + c;
        if (V8) *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
        else *dst = *src;
    }
}

template <bool V8>
__global__ void embed_bwd_kernel(float *dwte, const bf16 *dout, const int32_t *tokens, int T, int d) {
    const int per_row = V8 ? d / 8 : d;
    const int64_t n = (int64_t)T * per_row;
    for (int64_t k = gtid(); k < n; k += gstride()) {
        const int64_t t = k / per_row;
        const int64_t c = (k - t * per_row) * (V8 ? 8 : 1);
        float *dst = dwte + (int64_t)tokens[t] * d + c;
        if (V8) {
            float g[8];
            load8(dout + t * d + c, g);
#pragma unroll
            for (int j = 0; j < 8; j++) atomicAdd(dst + j, g[j]);
        } else {
            atomicAdd(dst, bf2f(dout[t * d + c]));
        }
    }
}

} // namespace

extern "C" void cuda_embedding_forward(rt_bf16 *out, const int32_t *tokens, const rt_bf16 *wte,
                                       int T, int d, cudaStream_t s) {
    if (T < 0 || d <= 0)
        rt_fatal(__FILE__, __LINE__, "cuda_embedding_forward: bad shape T=%d d=%d", T, d);
    if (T == 0) return;
    const bool v8 = d % 8 == 0 && aligned16(out) && aligned16(wte);
    const int64_t work = (int64_t)T * (v8 ? d / 8 : d);
    if (v8) embed_fwd_kernel<true><<<grid_for(work, kThreads), kThreads, 0, s>>>((bf16 *)out, tokens, (const bf16 *)wte, T, d);
    else embed_fwd_kernel<false><<<grid_for(work, kThreads), kThreads, 0, s>>>((bf16 *)out, tokens, (const bf16 *)wte, T, d);
    CUDA_LAUNCH_CHECK("embed_fwd_kernel");
}

extern "C" void cuda_embedding_backward(float *dwte, const rt_bf16 *dout, const int32_t *tokens,
                                        int T, int d, cudaStream_t s) {
    if (T < 0 || d <= 0)
        rt_fatal(__FILE__, __LINE__, "cuda_embedding_backward: bad shape T=%d d=%d", T, d);
    if (T == 0) return;
    const bool v8 = d % 8 == 0 && aligned16(dout);
    const int64_t work = (int64_t)T * (v8 ? d / 8 : d);
    if (v8) embed_bwd_kernel<true><<<grid_for(work, kThreads), kThreads, 0, s>>>(dwte, (const bf16 *)dout, tokens, T, d);
    else embed_bwd_kernel<false><<<grid_for(work, kThreads), kThreads, 0, s>>>(dwte, (const bf16 *)dout, tokens, T, d);
    CUDA_LAUNCH_CHECK("embed_bwd_kernel");
}
