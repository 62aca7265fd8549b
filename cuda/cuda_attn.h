/* cuda_attn: block attention on the GPU, the CUDA twins of cpu_attn_* (src/cpu/cpu_ops.h),
 * with the same layouts and semantics. Plain C (no C++ here); the kernels are in
 * attn_fwd.cu, attn_bwd.cu and attn_misc.cu. Design, error bounds and speed:
 * docs/cuda_attention.md.
 * Shapes: q, dout (Tq, H, D) bf16 and out, dq (Tq, H, D) fp32, row stride H*D; k, v (Tk, Hkv, D)
 * bf16 and dk, dv (Tk, Hkv, D) fp32, row stride Hkv*D; lse, delta (H, ld) fp32, rows [0, T)
 * used, ld >= T, so the second zigzag half is a view (pointer + C, same ld). Query head h
 * reads kv head h / (H / Hkv) (GQA, K/V never expanded). scale = 1/sqrt(D).
 * causal: Tq == Tk and query i sees keys j <= i; otherwise every query sees every key.
 * Every call is asynchronous on stream s and allocates nothing. D = 64 and 128 (with 16-byte
 * aligned bf16 rows) take the tensor-core kernels; any other D <= 256 a plain SIMT kernel.
 * A bad shape aborts the job through rt_fatal. */
#ifndef RT_CUDA_ATTN_H
#define RT_CUDA_ATTN_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t rt_bf16; /* bfloat16 bits (the device code reads them as __nv_bfloat16) */

/* out (Tq, H, D) fp32 overwritten (normalized); lse (H, ld) rows [0, Tq) overwritten with the
 * natural log of the softmax denominator of the scaled scores (-inf and out = 0 when Tk = 0).
 * Deterministic (bitwise the same on every run). */
void cuda_attn_forward(float *out, float *lse, int ld, const rt_bf16 *q, const rt_bf16 *k,
                       const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D, int causal,
                       cudaStream_t s);

/* delta (H, ld) rows [0, T) = rowsum(dout * out) per head, in fp32; dout and out (the final
 * output, as the model saves it) bf16. */
void cuda_attn_delta(float *delta, int ld, const rt_bf16 *dout, const rt_bf16 *out, int T, int H,
                     int D, cudaStream_t s);

/* Backward of one block given the final lse and delta of the rows (H, ld):
 * p = exp(scale q.k - lse), dp = dout.v, ds = p (dp - delta);
 * dq (Tq,H,D) += scale ds k; dk (Tk,Hkv,D) += scale ds^T q and dv += p^T dout, summed over
 * the heads of a group. All three ACCUMULATE. dk, dv are bitwise deterministic; dq is summed
 * with fp32 atomics on the tensor-core path (D = 64, 128), so its last bits depend on the
 * order the blocks finish in (the SIMT path is deterministic). */
void cuda_attn_backward(float *dq, float *dk, float *dv, const rt_bf16 *dout, const rt_bf16 *q,
                        const rt_bf16 *k, const rt_bf16 *v, const float *lse, const float *delta,
                        int ld, int Tq, int Tk, int H, int Hkv, int D, int causal,
                        cudaStream_t s);

/* Merge a block result (out_b (Tq, H, D), lse_b (H, ld_b)) into the running (out, lse (H, ld)),
 * in place, rows [0, Tq), in fp32, the formula of cpu_attn_merge:
 * lse' = lse - logsigmoid(lse - lse_b); out' = out - sigmoid(lse_b - lse) * (out - out_b). */
void cuda_attn_merge(float *out, float *lse, int ld, const float *out_b, const float *lse_b,
                     int ld_b, int Tq, int H, int D, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
