/* cudnn_attn: block attention through cuDNN's fused flash-attention engine (the cuDNN graph
 * backend API, plain C), with the layouts and semantics of cuda_attn.h (cuda_attn_forward /
 * cuda_attn_backward), so the ring can call either. Sources: cudnn_attn.c (graphs, plans,
 * execution); the widening and accumulation passes are vec.cu's (cuda_ops.h). Design, the
 * exact graphs, errors and speed: docs/cudnn_attention.md.
 * Shapes (as in cuda_attn.h): q, dout (Tq, H, D) bf16; out, dq (Tq, H, D) fp32, row stride
 * H*D; k, v (Tk, Hkv, D) bf16 and dk, dv (Tk, Hkv, D) fp32, row stride Hkv*D; lse, delta
 * (H, ld) fp32, rows [0, T) used (so the second zigzag half is the view lse + C, same ld).
 * Query head h reads kv head h / (H / Hkv); scale = 1/sqrt(D); causal: Tq == Tk, query i sees
 * keys j <= i (top-left diagonal).
 * Without cuDNN at build time (RT_HAVE_CUDNN undefined) the calls still link: supported()
 * says 0, init() returns NULL and forward/backward run the native kernels (cuda_attn_*).
 * Shapes cuDNN does not take (cudnn_attn_supported() == 0, a plan that cannot be built,
 * pointers that are not 16-byte aligned) also run the native kernels, with the same results
 * up to rounding; cudnn_attn_last_path() says which path the last call took.
 * Precision: cuDNN writes O, dQ, dK, dV in bf16 (its fp32 outputs are wrong in 9.19, see the
 * doc); they are widened to fp32 / added to the fp32 accumulators here, so out and the
 * gradient increments carry one bf16 rounding more than the native kernel's. */
#ifndef RT_CUDNN_ATTN_H
#define RT_CUDNN_ATTN_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#include "cuda_attn.h" /* rt_bf16 */

#ifdef __cplusplus
extern "C" {
#endif

struct cudnn_attn; /* cuDNN handle, plan cache (one entry per shape), one device workspace */

/* Creates the cuDNN handle on the current device and allocates `workspace_bytes` of device
 * workspace (0 allowed; grow it with cudnn_attn_reserve at startup). Returns NULL when built
 * without cuDNN. Aborts (rt_fatal) if cuDNN fails to start. */
struct cudnn_attn *cudnn_attn_init(size_t workspace_bytes);
void cudnn_attn_free(struct cudnn_attn *ca);

/* 1 when cuDNN is built in, loaded, new enough, and the shape is one the fused engine takes:
 * D a multiple of 8 and <= 128, H % Hkv == 0, Tq, Tk >= 1 (not both 1), causal only with
 * Tq == Tk, device sm_80 or newer. A plan may still fail to build (then the native path runs). */
int cudnn_attn_supported(int Tq, int Tk, int H, int Hkv, int D, int causal);
/* The same without the device check (no CUDA call): what a memory plan made without a GPU
 * assumes, the device being sm_80 or newer. */
int cudnn_attn_takes_shape(int Tq, int Tk, int H, int Hkv, int D, int causal);
/* What cudnn_attn_prepare would return for this shape (lse direct when ld % 4 == 0, else
 * staged; the default output types), cuDNN's own workspace taken as `cudnn_own` bytes (only a built
 * plan knows it): the same formulas, with no cuDNN plan and no CUDA call. 0 without cuDNN. */
size_t cudnn_attn_workspace_estimate(int Tq, int Tk, int H, int Hkv, int D, int causal, int ld, int direct,
                                     size_t cudnn_own);

/* Builds (or finds in the cache) the forward and backward plans of a shape now, with lse /
 * delta views of row stride ld, and returns the device workspace bytes its calls need (cuDNN's
 * own plus the staging buffers; with direct, only what the *_bf16 calls need); 0 when the
 * shape runs natively. Call it at startup for every shape of the step, then
 * cudnn_attn_reserve(max): no allocation happens inside the step. */
size_t cudnn_attn_prepare(struct cudnn_attn *ca, int Tq, int Tk, int H, int Hkv, int D, int causal,
                          int ld, int direct);
/* Grows the workspace to at least `bytes` (synchronizes the device; startup only). */
void cudnn_attn_reserve(struct cudnn_attn *ca, size_t bytes);
size_t cudnn_attn_workspace_bytes(const struct cudnn_attn *ca);
/* What the last forward/backward call ran, e.g. "cudnn bwd [dQ bf16, dK/dV bf16, lse direct,
 * engine 6 (heuristics mode A, config 0 of 2)] ws 1.61 GB" or "native fwd (D=12 not taken by
 * cuDNN)". Storage inside ca. */
const char *cudnn_attn_last_path(const struct cudnn_attn *ca);
/* Fills the workspace with NaN bits (synchronously): tests call it before each call to show
 * that nothing in it (staging, cuDNN's dQ_accum) is read before it is written. */
void cudnn_attn_poison_workspace(struct cudnn_attn *ca);
/* cudnnGetVersion() of the loaded library (0 without cuDNN). */
size_t cudnn_attn_version(void);

/* As cuda_attn_forward: out (Tq, H, D) fp32 overwritten (normalized), lse (H, ld) rows
 * [0, Tq) overwritten with the natural log of the softmax denominator of the scaled scores.
 * Asynchronous on s. A shape not prepared is planned here (host work, no device allocation);
 * a workspace too small for its plan makes the call run natively, with one warning on stderr.
 * prepare() assumes 16-byte aligned lse views; a misaligned one (lse + off, off % 4 != 0)
 * takes a plan with the lse staged through the workspace (H*Tq*4 bytes more). */
void cudnn_attn_forward(struct cudnn_attn *ca, float *out, float *lse, int ld, const rt_bf16 *q,
                        const rt_bf16 *k, const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D,
                        int causal, cudaStream_t s);

/* As cuda_attn_backward: dq (Tq, H, D) += scale ds k; dk, dv (Tk, Hkv, D) += scale ds^T q and
 * p^T dout, all three ACCUMULATED in fp32, with p = exp(scale q.k - lse) from the final lse of
 * the rows. One argument more than the native call: `out`, the final output of the rows
 * (Tq, H, D) bf16: cuDNN computes delta = rowsum(dout * out) itself. `delta` (H, ld) is used
 * only when the call falls back to the native kernel; it may be NULL (the fallback then
 * computes it from out into the workspace). */
void cudnn_attn_backward(struct cudnn_attn *ca, float *dq, float *dk, float *dv, const rt_bf16 *dout,
                         const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out,
                         const float *lse, const float *delta, int ld, int Tq, int Tk, int H,
                         int Hkv, int D, int causal, cudaStream_t s);

/* The same two calls with bf16 outputs written directly (OVERWRITTEN, not accumulated): what a
 * ring of one rank needs, with no widening or accumulation pass. They return 0, doing nothing,
 * when cuDNN cannot take the call (shape, alignment, workspace, a plan with fp32 outputs);
 * the caller then runs the native kernel. */
int cudnn_attn_forward_bf16(struct cudnn_attn *ca, rt_bf16 *out, float *lse, int ld, const rt_bf16 *q,
                            const rt_bf16 *k, const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D,
                            int causal, cudaStream_t s);
int cudnn_attn_backward_bf16(struct cudnn_attn *ca, rt_bf16 *dq, rt_bf16 *dk, rt_bf16 *dv,
                             const rt_bf16 *dout, const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v,
                             const rt_bf16 *out, const float *lse, int ld, int Tq, int Tk, int H,
                             int Hkv, int D, int causal, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
