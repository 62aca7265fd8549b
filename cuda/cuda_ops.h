/* cuda_ops: every non-attention op of the CUDA backend, the GPU twins of src/cpu/cpu_ops.h
 * (same layouts and semantics; the CPU functions are the specification). Plain C (no C++
 * here); kernels in blas.cu (cuBLASLt GEMMs), norm.cu, rope.cu, mlp.cu, embed.cu, xent.cu,
 * adamw.cu, vec.cu. Error bounds against the CPU and GEMM speed: docs/cuda_ops.md.
 *
 * Shape letters: T tokens, d model dim, nh heads, D head dim, V vocab, n elements.
 * Buffer types: rt_bf16 = bfloat16 bits (activations, their gradients, working weights);
 * float = fp32 (master weights, weight gradients, moments, rstd). Arithmetic is fp32 inside
 * (RoPE angles in double, as the CPU), rounded once to bf16 (nearest even) on output.
 * "+=" marks an output that accumulates: bf16 accumulators are read, added in fp32 and
 * rounded once.
 *
 * Every call is asynchronous on the stream s, allocates nothing (scratch is passed in; see
 * the *_scratch functions) and checks its launches; a bad argument aborts the job through
 * rt_fatal. All pointers are device memory unless marked otherwise. Elementwise sizes are
 * int64 (grid-stride loops); 16-byte aligned pointers take vectorized paths, any alignment
 * of the element type is accepted. */
#ifndef RT_CUDA_OPS_H
#define RT_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t rt_bf16; /* bfloat16 bits (the device code reads them as __nv_bfloat16) */

/* ---- GEMMs (blas.cu) ----
 * struct cuda_blas: a cuBLASLt handle, a workspace allocated once at init, and a cache of
 * matmul descriptors and heuristic choices per shape. One cuda_blas serves one stream at a
 * time (the workspace is shared by its calls): give each concurrently used stream its own.
 * Not thread-safe. workspace_bytes 0 selects CUDA_BLAS_WORKSPACE_DEFAULT. */
#define CUDA_BLAS_WORKSPACE_DEFAULT ((size_t)32 << 20)
struct cuda_blas;
struct cuda_blas *cuda_blas_init(size_t workspace_bytes);
void cuda_blas_free(struct cuda_blas *b);

/* out (T, n_out) bf16 = x (T, n_in) @ w (n_out, n_in)^T, fp32 accumulation (out = 0 when
 * n_in = 0). */
void cuda_matmul_forward(struct cuda_blas *b, rt_bf16 *out, const rt_bf16 *x, const rt_bf16 *w,
                         int T, int n_in, int n_out, cudaStream_t s);
/* dx (T, n_in) bf16 += dy (T, n_out) @ w (skipped when dx is NULL);
 * dw (n_out, n_in) fp32 += dy^T @ x (skipped when dw is NULL). */
void cuda_matmul_backward(struct cuda_blas *b, rt_bf16 *dx, float *dw, const rt_bf16 *dy,
                          const rt_bf16 *x, const rt_bf16 *w, int T, int n_in, int n_out,
                          cudaStream_t s);

/* ---- RMSNorm (norm.cu), HF LlamaRMSNorm ----
 * out (T, d) = w * (x * rstd), rstd (T) fp32 = 1/sqrt(mean(x^2) + eps), saved. */
void cuda_rmsnorm_forward(rt_bf16 *out, float *rstd, const rt_bf16 *x, const rt_bf16 *w, int T,
                          int d, float eps, cudaStream_t s);
/* dx (T, d) bf16 +=, dw (d) fp32 +=. dw is a deterministic sum: per-part column sums into
 * scratch (cuda_rmsnorm_scratch(T, d) bytes; NULL allowed when that is 0), then the parts
 * added in a fixed order. */
size_t cuda_rmsnorm_scratch(int T, int d);
void cuda_rmsnorm_backward(rt_bf16 *dx, float *dw, const rt_bf16 *dout, const rt_bf16 *x,
                           const rt_bf16 *w, const float *rstd, int T, int d, float *scratch,
                           cudaStream_t s);

/* ---- RoPE (rope.cu), HF rotate-half, in place on x (T, nh, D) ----
 * for i < D/2, a = pos[t] * inv_freq[i] (double; inv_freq (D/2) double in device memory,
 * pos (T) int64 global positions), c = scale cos a, s = scale sin a (scale: the attention
 * factor, rope.h): x[i] <- x[i] c - x[i+D/2] s, x[i+D/2] <- x[i+D/2] c + x[i] s. The
 * backward (the transpose) rotates by -a with the same scale. */
void cuda_rope_forward(rt_bf16 *x, const int64_t *pos, const double *inv_freq, double scale, int T,
                       int nh, int D, cudaStream_t s);
void cuda_rope_backward(rt_bf16 *dx, const int64_t *pos, const double *inv_freq, double scale, int T,
                        int nh, int D, cudaStream_t s);

/* ---- SwiGLU (mlp.cu): out (n) = silu(gate) * up; the backward overwrites dgate, dup. ---- */
void cuda_swiglu_forward(rt_bf16 *out, const rt_bf16 *gate, const rt_bf16 *up, int64_t n,
                         cudaStream_t s);
void cuda_swiglu_backward(rt_bf16 *dgate, rt_bf16 *dup, const rt_bf16 *dout, const rt_bf16 *gate,
                          const rt_bf16 *up, int64_t n, cudaStream_t s);

/* ---- Embedding (embed.cu) ----
 * out (T, d) = wte (V, d)[tokens (T)], tokens in [0, V) (not checked: V is not passed).
 * Backward: dwte (V, d) fp32 += scatter of dout, with fp32 atomicAdd: a token that occurs
 * several times gets its rows summed in an unspecified order (last bits may vary run to
 * run). */
void cuda_embedding_forward(rt_bf16 *out, const int32_t *tokens, const rt_bf16 *wte, int T, int d,
                            cudaStream_t s);
void cuda_embedding_backward(float *dwte, const rt_bf16 *dout, const int32_t *tokens, int T, int d,
                             cudaStream_t s);

/* ---- lm_head + cross-entropy (xent.cu), chunked over tokens ----
 * Per chunk of c <= chunk tokens: logits (c, V) fp32 = x_chunk (c, d) @ w (V, d)^T into
 * scratch (never a (T, V) buffer); loss_t = logsumexp(logits_t) - logits_t[labels_t];
 * labels < 0 are ignored (no loss, zero dlogits row); labels >= V trap on the device.
 * Adds the sum of the token losses to *loss (one double in device memory; the sum is
 * deterministic). When dx != NULL: dlogits = (softmax - onehot) * grad_scale, rounded to
 * bf16 in scratch, dx (T, d) bf16 += dlogits @ w, dw (V, d) fp32 += dlogits^T @ x (dw may
 * be NULL). chunk <= 0 or > T means T. scratch: cuda_xent_scratch(chunk, V) bytes.
 * tok_loss (T doubles), tok_pred (T), device, each may be NULL: every token's loss (0 for an
 * ignored label) and the index of its largest fp32 logit (the first of equal ones). */
size_t cuda_xent_scratch(int chunk, int V);
void cuda_xent(struct cuda_blas *b, double *loss, double *tok_loss, int32_t *tok_pred, rt_bf16 *dx, float *dw,
               const rt_bf16 *x,
               const rt_bf16 *w, const int32_t *labels, int T, int d, int V, float grad_scale,
               int chunk, void *scratch, cudaStream_t s);

/* ---- AdamW (adamw.cu), exactly cpu_adamw on fp32 p, g, m, v (n) ----
 * p -= lr wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), the same fp32 operations in the same
 * order (no contraction to FMA), so the result is bitwise the CPU's. Then
 * p_bf16 (n) = bf16(p) when p_bf16 != NULL. */
void cuda_adamw(float *p, rt_bf16 *p_bf16, const float *g, float gs, float *m, float *v, int64_t n, float lr,
                float b1, float b2, float eps, float wd, float bc1, float bc2, cudaStream_t s);

/* ---- vector helpers (vec.cu) ---- */
void cuda_to_bf16(rt_bf16 *dst, const float *src, int64_t n, cudaStream_t s); /* nearest even */
void cuda_to_f32(float *dst, const rt_bf16 *src, int64_t n, cudaStream_t s);  /* exact */
void cuda_add_bf16(rt_bf16 *y, const rt_bf16 *x, int64_t n, cudaStream_t s);  /* y += x */
void cuda_accum_f32(float *y, const float *x, int64_t n, cudaStream_t s);     /* y += x */
void cuda_accum_bf16(float *y, const rt_bf16 *x, int64_t n, cudaStream_t s);  /* y += x, in fp32 */
/* *out (one double, overwritten) = sum of x^2 in double, deterministic: CUDA_SUMSQ_PARTS
 * fixed partial sums (a function of n only) into scratch (CUDA_SUMSQ_PARTS doubles), then
 * one block adds them in a fixed tree. Asynchronous like every op: read *out after a sync. */
#define CUDA_SUMSQ_PARTS 1024
void cuda_sumsq(double *out, const float *x, int64_t n, double *scratch, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
