/* cpu_ops: the CPU backend's operations, fp32, each a forward/backward pair. This is the
 * executable specification every CUDA kernel is tested against.
 * Shape letters: T tokens, d model dim, H query heads, Hkv key/value heads, D head dim,
 * F ffn dim, V vocab. Activations are token-major: x (T, d), q (T, H, D), k/v (T, Hkv, D).
 * lse and delta are (H, ld) with row stride ld >= T, so the two zigzag halves of a shard
 * are views (pointer offset, same ld). Gradients marked "+=" accumulate into the buffer. */
#ifndef RT_CPU_OPS_H
#define RT_CPU_OPS_H

#include <stdint.h>

/* Linear layer: out (T, n_out) = x (T, n_in) @ w^T, w (n_out, n_in) as in torch. */
void cpu_matmul_forward(float *out, const float *x, const float *w, int T, int n_in, int n_out);
/* dx (T, n_in) += dy @ w (skipped when dx is NULL); dw (n_out, n_in) += dy^T @ x. */
void cpu_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int T, int n_in, int n_out);

/* RMSNorm (HF LlamaRMSNorm): out = x * rstd * w, rstd (T) = 1/sqrt(mean(x^2) + eps), saved. */
void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int T, int d,
                         float eps);
/* dx (T, d) +=, dw (d) +=. */
void cpu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int T, int d);

/* RoPE in place on x (T, nh, D), HF rotate-half layout: for i < D/2, angle a = pos[t] * inv_freq[i]
 * (in double), c = scale cos a, s = scale sin a, x[i] <- x[i] c - x[i+D/2] s, x[i+D/2] <- x[i+D/2] c +
 * x[i] s. scale is the attention factor (rope.h; HF multiplies cos and sin by it). pos are global
 * positions. The backward (the transpose) rotates the gradient by -a with the same scale (in place). */
void cpu_rope_forward(float *x, const int64_t *pos, const double *inv_freq, double scale, int T, int nh,
                      int D);
void cpu_rope_backward(float *dx, const int64_t *pos, const double *inv_freq, double scale, int T, int nh,
                       int D);

/* SwiGLU: out (n) = silu(gate) * up. Backward overwrites dgate, dup (n). */
void cpu_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int64_t n);

/* Embedding: out (T, d) = wte[tokens]. Backward: dwte (V, d) += scatter of dout. */
void cpu_embedding_forward(float *out, const int32_t *tokens, const float *wte, int T, int d);
void cpu_embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int T, int d);

/* Block attention with log-sum-exp: q (Tq, H, D), k and v (Tk, Hkv, D); query head h reads
 * kv head h / (H / Hkv) (GQA, K/V never expanded). scale = 1/sqrt(D).
 * causal: Tq == Tk and query i sees keys j <= i; otherwise every query sees every key.
 * out (Tq, H, D) and lse rows [0, Tq) (natural log of the softmax denominator of the scaled
 * scores) are overwritten. */
void cpu_attn_forward(float *out, float *lse, int ld, const float *q, const float *k,
                      const float *v, int Tq, int Tk, int H, int Hkv, int D, int causal);
/* delta (H, ld) = rowsum(dout * out) per head, over the final (merged) out. */
void cpu_attn_delta(float *delta, int ld, const float *dout, const float *out, int T, int H, int D);
/* Backward of one block given the final lse and delta of the rows:
 * p = exp(s - lse), dp = dout v^T, ds = p (dp - delta); dq (Tq,H,D) += scale ds k,
 * dk (Tk,Hkv,D) += scale ds^T q (summed over the heads of a group), dv (Tk,Hkv,D) += p^T dout. */
void cpu_attn_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *lse, const float *delta, int ld,
                       int Tq, int Tk, int H, int Hkv, int D, int causal);
/* Merge a block result (out_b, lse_b) into the running (out, lse), in place, rows [0, Tq):
 * lse' = lse - logsigmoid(lse - lse_b); out' = out - sigmoid(lse_b - lse) * (out - out_b). */
void cpu_attn_merge(float *out, float *lse, int ld, const float *out_b, const float *lse_b,
                    int ld_b, int Tq, int H, int D);

/* lm_head + cross-entropy in chunks of `chunk` tokens (never a (T, V) buffer):
 * logits = x (T, d) @ w (V, d)^T; loss_t = logsumexp(logits_t) - logits_t[labels_t].
 * A label < 0 marks a token without loss (its dlogits row is zero).
 * Returns the sum of the T token losses (double). tok_loss (T), when not NULL: each token's
 * loss (0 for an ignored label); tok_pred (T), when not NULL: the index of each token's
 * largest logit (the first of equal ones), whatever its label. When dx != NULL (training):
 * dlogits = (softmax - onehot) * grad_scale, dx (T, d) += dlogits @ w, dw (V, d) += dlogits^T @ x.
 * scratch holds chunk * V floats. */
double cpu_xent_forward_backward(float *dx, float *dw, double *tok_loss, int32_t *tok_pred, const float *x,
                                 const float *w, const int32_t *labels, int T, int d, int V, float grad_scale,
                                 int chunk, float *scratch);

/* AdamW (torch semantics) on n values of the gradient g * gs (gs: the clipping coefficient
 * or 1; g is not written): p -= lr * wd * p; m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t computed by the caller. */
void cpu_adamw(float *p, const float *g, float gs, float *m, float *v, int64_t n, float lr, float b1,
               float b2, float eps, float wd, float bc1, float bc2);

/* Small vector helpers. */
double cpu_sumsq(const float *x, int64_t n);            /* sum of squares, in double */
void   cpu_add(float *y, const float *x, int64_t n);    /* y += x */

#endif
